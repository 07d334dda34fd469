#!/bin/bash
# run_single: `optd run` on a single-threaded program.
#
# At the target's checkpoint the region is in its maps, r-x, with a header
# that describes it and names optd; every option that shapes the region
# (--region-size, --arena-at) is obeyed; the target's output (which includes
# its fds, signal masks and no-new-privs flag at start and end) and exit
# status equal the native run's; --stats tells the pid, the exit status and
# the region as it was; -q leaves stderr to the target.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets single find-region

CMD=("$TGT_DIR/single" --checkpoint=3 --exit=7)
run native "${CMD[@]}"
expect_eq "native exit status" "$STATUS" 7
need_optd

# check_run NAME SIZE ADDRESS OPTION...: optd run OPTION... on CMD; the
# region must be SIZE bytes, at ADDRESS (hex) unless that is empty.
check_run() {
	local name=$1 size=$2 address=$3 tpid
	shift 3
	start "$name" "$OPTD" run --stats="$T/$name.json" "$@" -- "${CMD[@]}"
	expect_event "$name" '^checkpoint mid ([0-9]+)$'
	tpid=${BASH_REMATCH[1]}
	expect_eq "$name: the target is optd's child" "$(ppid_of "$tpid")" "${PID[$name]}"
	expect_tracer_of_all "$tpid" "${PID[$name]}" "$name: at the checkpoint"
	expect_region "$tpid" "$name: at the checkpoint"
	expect_eq "$name: region size" "$((16#$REGION_END - 16#$REGION_START))" "$size"
	[[ -z $address ]] || expect_eq "$name: region address" "$REGION_START" "$address"
	expect_header "$tpid" "${PID[$name]}"
	release "$name"
	wait_exit "$name"
	same_result native "$name"
	expect_json "$T/$name.json" pid "$tpid"
	expect_json "$T/$name.json" exit_status 7
	expect_stats_region "$T/$name.json" "$REGION_START" "$REGION_END"
	expect_json "$T/$name.json" threads 1
	expect_json_number_or_null "$T/$name.json" attach_pause_us
	expect_json_number_or_null "$T/$name.json" detach_pause_us
	ok "$name: optd run $*"
}

check_run default $((1 << 20)) ""
check_run small $((64 << 10)) "" --region-size=64K
check_run big $((4 << 20)) "" --region-size=4M
check_run fixed $((1 << 20)) 200000000000 --arena-at=0x200000000000

check_run quiet $((1 << 20)) "" -q
[[ ! -s $T/quiet.err ]] || fail "optd run -q wrote to stderr: $(head -c 600 "$T/quiet.err")"
ok "-q: nothing on stderr"
