#!/bin/bash
# threads256: 256 threads that keep starting and ending, under optd.
#
# `optd run`: at a checkpoint the region is there and every thread is traced
# by optd; output and exit status equal the native run's (each thread's
# result is checked, so a disturbed thread shows as a mismatch).
# `optd --pid`, five times in a row on one target in the middle of the
# churn: the attached line names the region find-region sees, every thread
# is traced; after SIGINT optd exits 0, the region is gone and no thread is
# traced; the target's output and status then equal the native run's.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets threads find-region

run native "$TGT_DIR/threads" 256 20 --checkpoint=3
run native_churn "$TGT_DIR/threads" 256 10 --until-eof --checkpoint=3
need_optd

start opt "$OPTD" run --stats="$T/opt.json" -- "$TGT_DIR/threads" 256 20 --checkpoint=3
expect_event opt '^checkpoint mid ([0-9]+)$'
tpid=${BASH_REMATCH[1]}
expect_region "$tpid" "optd run: at the checkpoint"
expect_tracer_of_all "$tpid" "${PID[opt]}" "optd run: at the checkpoint"
release opt
wait_exit opt
same_result native opt
expect_json "$T/opt.json" pid "$tpid"
expect_json "$T/opt.json" exit_status 0
expect_json_number "$T/opt.json" threads
ok "optd run: 256 threads churning"

start tgt "$TGT_DIR/threads" 256 10 --until-eof --checkpoint=3
expect_event tgt '^churning ([0-9]+)$'
P=${PID[tgt]}
for i in 1 2 3 4 5; do
	expect_alive tgt "before att$i"
	optd_attach "att$i" "$P" --stats="$T/att$i.json"
	expect_region "$P" "att$i: while attached"
	expect_eq "att$i: region start (maps against optd's line)" "$REGION_START" "$ATT_START"
	expect_tracer_of_all "$P" "${PID[att$i]}" "att$i: while attached"
	optd_detach "att$i"
	expect_alive tgt "after att$i detached"
	expect_no_region "$P" "att$i: after detach"
	expect_tracer_of_all "$P" 0 "att$i: after detach"
	expect_json "$T/att$i.json" pid "$P"
	expect_json "$T/att$i.json" exit_status null
	expect_stats_region "$T/att$i.json" "$REGION_START" "$REGION_END"
	expect_json_number "$T/att$i.json" attach_pause_us
	expect_json_number "$T/att$i.json" detach_pause_us
	threads=$(json_get "$T/att$i.json" threads)
	((threads >= 2 && threads <= 258)) || fail "att$i: stats threads is $threads"
	ok "att$i: attached and detached during the churn ($threads threads)"
done
expect_alive tgt "after five attaches"
finish tgt
same_result native_churn tgt
ok "the target after five attaches prints and exits as natively"
