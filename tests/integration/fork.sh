#!/bin/bash
# fork: `optd run` on a program that forks, vforks and execs.
#
# At the checkpoints in a child and in a grandchild, each is traced by optd
# and has the region at the same address as the parent (it is inherited).
# The children's deaths (exit 5 and 3, SIGKILL, a real SIGSEGV), a vfork of
# /bin/true and a vfork+exec of the program itself are all reported to their
# parents as natively: output and exit status equal the native run's.
# --stats describe the first process.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets forker find-region

run native "$TGT_DIR/forker" --checkpoint=3
need_optd

start opt "$OPTD" run --stats="$T/opt.json" -- "$TGT_DIR/forker" --checkpoint=3
parent=
for want in child grandchild exec-child; do
	expect_event opt "^checkpoint $want ([0-9]+)$"
	pid=${BASH_REMATCH[1]}
	if [[ $want == child ]]; then
		parent=$(ppid_of "$pid")
		expect_eq "forker is optd's child" "$(ppid_of "$parent")" "${PID[opt]}"
		expect_region "$parent" "the parent"
		parent_region=$REGION_START-$REGION_END
	fi
	if [[ $want == exec-child ]]; then
		# A new image: whether optd injects into it is up to optd.
		find_region "$pid"
		log "after exec: find-region status $RC${REGION_LINES:+: $REGION_LINES}," \
			"tracer $(tracer_of "$pid")"
	else
		expect_tracer_of_all "$pid" "${PID[opt]}" "$want"
		expect_region "$pid" "$want"
		expect_eq "$want: region (against the parent's)" \
			"$REGION_START-$REGION_END" "$parent_region"
		ok "$want $pid has the region"
	fi
	release opt
done
wait_exit opt
same_result native opt
expect_json "$T/opt.json" pid "$parent"
expect_json "$T/opt.json" exit_status 0
ok "forker under optd run"
