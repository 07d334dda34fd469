#!/bin/bash
# detach: what stays of optd in a target once optd is gone (DESIGN.md,
# "After optd is gone").
#
# `optd --pid`: collide waits at its "start" checkpoint while optd attaches
# with its region at ADDR (--arena-at) and detaches. The maps are then as
# before but for the guard's reservations, which cover ADDR. Then collide
# runs `detached`: every request aimed at ADDR (lines "window: ") fails with
# ENOSYS, where the native run's succeed: the filter that stays traps them
# and no tracer answers. The target sees the reservation there as a
# PROT_NONE anonymous mapping where the native run sees nothing. Everything
# else (the same requests at ADDR+64M, mmap without an address, the heap,
# malloc, a thread) prints exactly what the native run prints, and the
# target exits as natively.
#
# `optd run`: optd killed with SIGKILL at the target's checkpoint takes the
# target with it (PTRACE_O_EXITKILL): its events end without the driver
# letting the checkpoint go, and it prints nothing more.
#
# Runs under `setarch -R` (no address-space randomisation): ADDR is the
# executable's start + 1 GiB, rounded up to 2 MiB, as in guard.sh.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets collide single find-region
command -v setarch >/dev/null || skip "setarch is not installed (util-linux)"
setarch -R true 2>/dev/null || skip "setarch -R fails here: cannot turn address-space randomisation off"
need_optd

COLLIDE=$TGT_DIR/collide
MIB=$((1 << 20))
run layout setarch -R "$COLLIDE" layout
expect_eq "collide layout: exit status" "$STATUS" 0
exe=$(awk '$1 == "exe" { print $2 }' "$T/layout.out")
[[ -n $exe ]] || fail "collide layout printed no exe: $(cat "$T/layout.out")"
printf -v ADDR '%x' $(((exe + 1024 * MIB + 2 * MIB - 1) & ~(2 * MIB - 1)))
CMD=(setarch -R "$COLLIDE" --checkpoint=3 detached "$ADDR" 1M)

run native "${CMD[@]}"
expect_eq "native: exit status" "$STATUS" 0
grep -q '^window: mmap(+0x0, 0x1000, rw-, PRIVATE|FIXED_NOREPLACE|ANON) = +0x0$' "$T/native.out" ||
	fail "natively the range at 0x$ADDR is not free: $(head -n 3 "$T/native.out")"

start tgt "${CMD[@]}"
expect_event tgt '^checkpoint start ([0-9]+)$'
P=${BASH_REMATCH[1]}
cat /proc/"$P"/maps >"$T/maps.before"
optd_attach att "$P" --arena-at="$ADDR" --region-size=1M --relocate=all --stats="$T/att.json"
expect_eq "att: region start" "$ATT_START" "$ADDR"
optd_detach att
expect_no_region "$P" "after detach"
expect_tracer_of_all "$P" 0 "after detach"
cat /proc/"$P"/maps >"$T/maps.after"
expect_maps_reserved "/proc/$P/maps after detach" "$T/maps.before" "$T/maps.after" "$T/att.json"
ok "detached: the guard's windows $(json_get "$T/att.json" guard.windows) are reserved PROT_NONE"

finish tgt
expect_eq "after detach: exit status" "$STATUS" "${STATUS_OF[native]}"
[[ ! -s $T/tgt.err ]] || fail "after detach: collide said on stderr: $(head -c 600 "$T/tgt.err")"

# The requests aimed at the reserved window: natively they succeed, after
# detach each fails with ENOSYS, and the reservation is what is there.
grep '^window: ' "$T/native.out" >"$T/native.window"
grep '^window: ' "$T/tgt.out" >"$T/tgt.window"
n=0
while IFS= read -r line; do
	case $line in
	'window:   maps +0x0..+0x1000 ---p anon') ;;
	'window:   '*) fail "after detach: '$line' (a request into the window succeeded)" ;;
	*' = -1 ENOSYS') n=$((n + 1)) ;;
	*) fail "after detach: '$line' (not ENOSYS)" ;;
	esac
done <"$T/tgt.window"
expect_eq "requests into the window after detach" "$n" 8
grep -q '^window:   maps +0x0..+0x1000 ---p anon$' "$T/tgt.window" ||
	fail "after detach the target does not see the reservation at 0x$ADDR: $(cat "$T/tgt.window")"
grep -q 'ENOSYS' "$T/native.window" && fail "natively a request into the window failed with ENOSYS"
ok "after detach the requests into the window fail with ENOSYS (natively: $(grep -c ' = ' "$T/native.window") succeed)"

# Everything else: exactly as natively.
grep -v '^window: ' "$T/native.out" >"$T/native.rest"
grep -v '^window: ' "$T/tgt.out" >"$T/tgt.rest"
if ! cmp -s "$T/native.rest" "$T/tgt.rest"; then
	diff -u "$T/native.rest" "$T/tgt.rest" >&2
	fail "after detach: the requests outside the window differ from the native run's"
fi
grep -q '^elsewhere: mmap(+0x4000000, 0x1000, rw-, PRIVATE|FIXED_NOREPLACE|ANON) = +0x4000000$' \
	"$T/tgt.rest" || fail "after detach: the request at ADDR+64M did not succeed"
ok "after detach: $(wc -l <"$T/tgt.rest") lines of requests elsewhere, the heap and a thread as natively"

# optd run: the target dies with optd.
run native_single "$TGT_DIR/single" --checkpoint=3
grep -q 'rounds done$' "$T/native_single.out" || fail "single natively: $(tail -n 1 "$T/native_single.out")"
start killed "$OPTD" run -- "$TGT_DIR/single" --checkpoint=3
expect_event killed '^checkpoint mid ([0-9]+)$'
tpid=${BASH_REMATCH[1]}
expect_region "$tpid" "optd run: at the checkpoint"
kill -KILL "${PID[killed]}"
# The target holds the events FIFO, and the checkpoint is never let go: its
# end is the target's death.
wait_exit killed
expect_eq "optd run killed: optd's status" "$STATUS" 137
grep -q 'rounds done$' "$T/killed.out" && fail "the target of a killed optd run went on: $(tail -n 1 "$T/killed.out")"
ok "optd run: SIGKILL to optd killed its target $tpid at its checkpoint"
