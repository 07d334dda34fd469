#!/bin/bash
# pid_single: `optd --pid` on a single-threaded program, attached and
# detached at a checkpoint (the target is blocked in read(2) meanwhile).
#
# optd prints exactly one "attached" line that names the region find-region
# sees (r-x, header naming optd); every thread is traced while attached.
# SIGINT, and in a second round SIGTERM, detach: optd exits 0, the region is
# gone, /proc/PID/maps is what it was before the attach but for the guard's
# reservations (PROT_NONE anonymous mappings inside the windows optd
# reports, covering the region's former place), no one traces the target
# and it is not left stopped. The target then prints and exits exactly as a
# native run does. --stats: pid, exit_status null, the region, pauses, one
# thread, the guard's filter and what it reserved.
# Then a target that exits while optd is attached: optd exits 0 and its stats
# give the target's exit status.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets single find-region

run native "$TGT_DIR/single" --checkpoint=3
run native3 "$TGT_DIR/single" --checkpoint=3 --exit=3
need_optd

start tgt "$TGT_DIR/single" --checkpoint=3
expect_event tgt '^checkpoint mid ([0-9]+)$'
P=${PID[tgt]}
expect_eq "pid in the checkpoint line" "${BASH_REMATCH[1]}" "$P"
cat /proc/"$P"/maps >"$T/maps.before"
expect_no_region "$P" "before attach"

round=0
prev=before
for sig in INT TERM; do
	round=$((round + 1))
	att=att$round
	optd_attach "$att" "$P" --stats="$T/$att.json"
	expect_region "$P" "$att: while attached"
	expect_eq "$att: region start (maps against optd's line)" "$REGION_START" "$ATT_START"
	expect_eq "$att: region end (maps against optd's line)" "$REGION_END" "$ATT_END"
	expect_header "$P" "${PID[$att]}"
	expect_tracer_of_all "$P" "${PID[$att]}" "$att: while attached"

	optd_detach "$att" "$sig"
	expect_no_region "$P" "$att: after SIG$sig"
	cat /proc/"$P"/maps >"$T/maps.$att"
	expect_json "$T/$att.json" guard.mode '"seccomp"'
	expect_json "$T/$att.json" guard.filters 1
	expect_maps_reserved "$att: /proc/$P/maps after detach" "$T/maps.$prev" "$T/maps.$att" \
		"$T/$att.json"
	prev=$att
	expect_tracer_of_all "$P" 0 "$att: after detach"
	# S: back in its read; R: on its way there (not t or T: not left stopped)
	[[ $(state_of "$P") == [SR] ]] || fail "$att: state after detach is $(state_of "$P")"
	expect_eq "$att: attached lines on stderr" "$(grep -cE "$ATTACHED_RE" "$T/$att.err")" 1

	expect_json "$T/$att.json" pid "$P"
	expect_json "$T/$att.json" exit_status null
	expect_stats_region "$T/$att.json" "$REGION_START" "$REGION_END"
	expect_json_number "$T/$att.json" attach_pause_us
	expect_json_number "$T/$att.json" detach_pause_us
	expect_json "$T/$att.json" threads 1
	ok "$att: attached and detached by SIG$sig"
done

finish tgt
same_result native tgt
ok "the target after two attaches prints and exits as natively"

# The target exits while optd is attached.
start tgt3 "$TGT_DIR/single" --checkpoint=3 --exit=3
expect_event tgt3 '^checkpoint mid ([0-9]+)$'
optd_attach att3 "${PID[tgt3]}" --stats="$T/att3.json"
expect_region "${PID[tgt3]}" "att3: while attached"
finish tgt3
same_result native3 tgt3
wait_exit att3
expect_eq "optd's exit status when its target exited" "$STATUS" 0
expect_json "$T/att3.json" pid "${PID[tgt3]}"
expect_json "$T/att3.json" exit_status 3
ok "the target exited with 3 while attached; optd exited 0"
