#!/bin/bash
# bad_input: every way optd refuses, with its own exit status and exactly
# one stderr line starting "optd: ".
#
#   64  options that do not parse
#   69  no such process (a pid above pid_max, a reaped child)
#   77  not permitted: kernel thread (kthreadd), zombie, optd's own parent,
#       optd itself, a process already traced (by strace, by another optd;
#       the line names the tracer's pid and comm)
#   126 a command that is not executable (a plain file, a folder)
#   127 a command that does not exist (a path, a name looked up in PATH)
# and a target killed with SIGKILL while optd is attached (`optd --pid`:
# optd exits 0; `optd run`: optd exits 137), with optd writing its stats.
# A refused target is left as it was: still running, traced by no one (or
# by its own tracer).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets busy zombie single exitcode
need_optd

# refused STATUS WHAT OPTD-ARGS...: optd, run in the foreground (bounded by
# timeout), exits STATUS with one "optd: " line on stderr. Sets MSG.
n_case=0
refused() {
	local want=$1 what=$2 st
	shift 2
	n_case=$((n_case + 1))
	timeout -k 5 60 "$OPTD" "$@" </dev/null >"$T/case$n_case.out" 2>"$T/case$n_case.err"
	st=$?
	expect_eq "$what: optd's exit status" "$st" "$want"
	expect_one_optd_line "$T/case$n_case.err" "$what"
	[[ ! -s $T/case$n_case.out ]] || fail "$what: optd wrote to stdout"
	MSG=$(cat "$T/case$n_case.err")
	ok "$what: $want, $MSG"
}

start victim "$TGT_DIR/busy" --checkpoint=3
expect_event victim '^ready ([0-9]+)$'
V=${PID[victim]}

# 64: options that do not parse (none of these may touch the victim)
refused 64 "no arguments"
refused 64 "an unknown option" --bogus-option --pid "$V"
refused 64 "--pid without a pid" --pid
refused 64 "--pid with junk" --pid 12abc
refused 64 "--pid negative" --pid -5
refused 64 "--region-size junk" --pid "$V" --region-size=lots
refused 64 "--arena-at junk" --pid "$V" --arena-at=0xnothex
refused 64 "--stats without a file" --pid "$V" --stats=
refused 64 "--placement unknown" --pid "$V" --placement=far
refused 64 "--placement empty" --pid "$V" --placement=
refused 64 "--placement without a value" run --placement
refused 64 "run without a command" run
refused 64 "run with -- and no command" run --
refused 64 "run with an unknown option" run --bogus-option -- "$TGT_DIR/exitcode" 0
expect_eq "tracer of the victim after the option errors" "$(tracer_of "$V")" 0

# 69: no such process
pid_max=$(cat /proc/sys/kernel/pid_max)
refused 69 "a pid above pid_max" --pid $((pid_max + 1))
"$TGT_DIR/exitcode" 0 &
reaped=$!
wait "$reaped"
if [[ -e /proc/$reaped ]]; then
	log "pid $reaped was reused at once: not a test of a reaped pid"
else
	refused 69 "a reaped child's pid" --pid "$reaped"
fi

# 77: kernel thread
flags=$(awk '{ sub(/^.*\) /, ""); print $7 }' /proc/2/stat 2>/dev/null)
if [[ -n $flags ]] && ((flags & 0x00200000)); then
	refused 77 "pid 2 ($(cat /proc/2/comm), a kernel thread)" --pid 2
else
	log "pid 2 is not a kernel thread here (a pid namespace?): case skipped"
fi

# 77: zombie
start zombie "$TGT_DIR/zombie" --checkpoint=3
expect_event zombie '^zombie ([0-9]+)$'
Z=${BASH_REMATCH[1]}
expect_eq "state of the zombie" "$(state_of "$Z")" Z
refused 77 "a zombie" --pid "$Z"
finish zombie
expect_eq "zombie's exit status" "$STATUS" 0

# 77: optd's own parent (this shell), and optd itself
n_case=$((n_case + 1))
"$OPTD" --pid $$ </dev/null >"$T/case$n_case.out" 2>"$T/case$n_case.err"
st=$?
expect_eq "optd --pid of its parent: exit status" "$st" 77
expect_one_optd_line "$T/case$n_case.err" "optd --pid of its parent"
ok "optd's parent: 77, $(cat "$T/case$n_case.err")"
expect_eq "tracer of this shell" "$(tracer_of $$)" 0

n_case=$((n_case + 1))
bash -c 'exec "$0" --pid $$' "$OPTD" </dev/null >"$T/case$n_case.out" 2>"$T/case$n_case.err"
st=$?
expect_eq "optd --pid of itself: exit status" "$st" 77
expect_one_optd_line "$T/case$n_case.err" "optd --pid of itself"
ok "optd itself: 77, $(cat "$T/case$n_case.err")"

# 77: already traced by strace, then by another optd
if command -v strace >/dev/null; then
	start -E strace strace -p "$V" -o /dev/null
	expect_err strace "attached"
	S=${PID[strace]}
	expect_eq "tracer of the victim under strace" "$(tracer_of "$V")" "$S"
	refused 77 "a pid traced by strace" --pid "$V"
	[[ $MSG == *"$S"* && $MSG == *strace* ]] ||
		fail "the message does not name the tracer ($S, strace): $MSG"
	expect_eq "tracer of the victim after the refusal" "$(tracer_of "$V")" "$S"
	kill -TERM "$S"
	wait_exit strace
	expect_tracer_of_all "$V" 0 "the victim after strace detached"
else
	log "no strace: case skipped"
fi

optd_attach first "$V"
refused 77 "a pid traced by another optd" --pid "$V"
[[ $MSG == *"${PID[first]}"* && $MSG == *optd* ]] ||
	fail "the message does not name the tracer (${PID[first]}, optd): $MSG"
optd_detach first
expect_tracer_of_all "$V" 0 "the victim after both optds"

# the victim went through all of that and still answers
send_line victim
expect_event victim '^tick 1 '
finish victim
expect_eq "the victim's exit status" "$STATUS" 0

# 126, 127: as a shell says for the same command
printf '#!/bin/sh\necho should not run\n' >"$T/notexec"
chmod 644 "$T/notexec"
refused 126 "a command that is not executable" run -- "$T/notexec"
refused 126 "a folder as the command" run -- "$T"
refused 127 "a command that does not exist" run -- "$T/no-such-command"
refused 127 "a name not found in PATH" run -- optd-no-such-command-in-path
bash -c '"$0"' "$T/notexec" 2>/dev/null
expect_eq "(a shell's status for the plain file)" "$?" 126
bash -c '"$0"' "$T/no-such-command" 2>/dev/null
expect_eq "(a shell's status for the missing command)" "$?" 127

# a target killed while optd is attached
start killed "$TGT_DIR/busy" --checkpoint=3
expect_event killed '^ready ([0-9]+)$'
optd_attach att_killed "${PID[killed]}" --stats="$T/att_killed.json"
kill -KILL "${PID[killed]}"
wait_exit killed
expect_eq "the killed target's status" "$STATUS" 137
wait_exit att_killed
expect_eq "optd --pid when its target is killed: exit status" "$STATUS" 0
grep -q '^optd: .*\(internal\|assert\|BUG\)' "$T/att_killed.err" &&
	fail "optd --pid: $(cat "$T/att_killed.err")"
expect_json "$T/att_killed.json" pid "${PID[killed]}"
expect_json "$T/att_killed.json" exit_status 137
ok "target killed while attached: optd exited 0"

start run_killed "$OPTD" run --stats="$T/run_killed.json" -- "$TGT_DIR/single" --checkpoint=3
expect_event run_killed '^checkpoint mid ([0-9]+)$'
tpid=${BASH_REMATCH[1]}
kill -KILL "$tpid"
wait_exit run_killed
expect_eq "optd run when its target is killed: exit status" "$STATUS" 137
expect_json "$T/run_killed.json" exit_status 137
ok "target killed under optd run: optd exited 137"
