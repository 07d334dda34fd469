#!/bin/bash
# stopped: `optd --pid` on a process in group-stop (SIGSTOP from its parent).
#
# optd attaches, the region is there, optd detaches on SIGINT: the process
# is still stopped (state T, not t), traced by no one, its maps as before
# but for the guard's PROT_NONE reservations, and its parent sees what it sees natively: no extra wait report,
# then "continued" after SIGCONT, and a clean exit (the child checks its
# own work after it resumes).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets stopper find-region

run native "$TGT_DIR/stopper" --checkpoint=3
need_optd

start tgt "$TGT_DIR/stopper" --checkpoint=3
expect_event tgt '^stopped ([0-9]+)$'
C=${BASH_REMATCH[1]}
expect_eq "state before attach" "$(state_of "$C")" T
cat /proc/"$C"/maps >"$T/maps.before"

optd_attach att "$C" --stats="$T/att.json"
expect_region "$C" "while attached"
expect_tracer_of_all "$C" "${PID[att]}" "while attached"
optd_detach att
expect_no_region "$C" "after detach"
expect_eq "state after detach" "$(state_of "$C")" T
expect_tracer_of_all "$C" 0 "after detach"
cat /proc/"$C"/maps >"$T/maps.after"
expect_maps_reserved "/proc/$C/maps after detach" "$T/maps.before" "$T/maps.after" "$T/att.json"
expect_json "$T/att.json" pid "$C"
expect_json "$T/att.json" exit_status null
ok "attached to and detached from a stopped process: still stopped"

finish tgt
same_result native tgt
ok "its parent saw the same as natively"
