#!/bin/bash
# run_exit_status: `optd run` exits as its command does.
#
# Exit codes 0, 3 and 255, and deaths by SIGKILL, SIGSEGV (a real fault,
# which optd sees first as a signal-delivery stop and must deliver) and
# SIGABRT: optd's exit status is the one a shell gives the same command
# run natively (N, or 128+N for signal N); --stats says the same; with -q
# optd writes nothing to stderr.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets exitcode

CASES=("0" "3" "255" "-s 9" "-s 11" "-s 6")
for c in "${CASES[@]}"; do
	n=${c// /}
	read -r -a args <<<"$c"
	run "native$n" "$TGT_DIR/exitcode" "${args[@]}"
done
expect_eq "native status of exitcode -s 11" "${STATUS_OF[native-s11]}" 139
need_optd

for c in "${CASES[@]}"; do
	n=${c// /}
	read -r -a args <<<"$c"
	run "optd$n" "$OPTD" run -q --stats="$T/optd$n.json" -- "$TGT_DIR/exitcode" "${args[@]}"
	expect_eq "optd run -- exitcode $c: exit status" "${STATUS_OF[optd$n]}" \
		"${STATUS_OF[native$n]}"
	expect_json "$T/optd$n.json" exit_status "${STATUS_OF[native$n]}"
	[[ ! -s $T/optd$n.err ]] ||
		fail "optd run -q -- exitcode $c wrote to stderr: $(head -c 600 "$T/optd$n.err")"
	ok "exitcode $c: status ${STATUS_OF[optd$n]}"
done
