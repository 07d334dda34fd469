#!/bin/bash
# adversarial: real programs under `optd run --placement=adversarial`, which
# puts optd's pages where the program is about to ask for address space, so
# that its own requests collide with them and the guard moves them (README,
# "The guard"; daemon/placement.h).
#
# Each program runs natively and under optd; output and exit status must be
# the same, and the statistics must show the collisions that the placement
# provokes in that program (collisions.<kind>, region.moves), more than one
# where the program keeps growing: after each collision the region goes
# where the request shows the program is heading.
#
#   --relocate=all (copies within rel32 reach of the executable, so the
#   region goes above the program break and the heap's growth collides):
#	python3 on a workload, and some of CPython's own tests;
#	gcc -O2 -c duktape.c (driver, cc1 and as, each image placed at its
#	entry point): the object file is byte for byte the native one;
#	sqlite3 on a script;
#	perl, whose interpreter keeps its place with sigsetjmp (JMPENV): the
#	functions that call it are not relocated (calls_setjmp), or the
#	longjmp at its exit would return into a place the region has left;
#	gron, a Go program with cgo: its C allocator's heap collides; the Go
#	runtime's arena hint 0xc000000000 is out of reach of its copies;
#	the project's cxxthrow (exceptions through copies after the heap grew
#	into the region), threads and forker.
#   --relocate=none (no copies, no reach to keep):
#	gron: the region sits at the Go runtime's first arena hint; the
#	runtime's hint and then its next arena collide;
#	python3 recursing deep in C: the region sits in the main stack's
#	growth area, and the stack grows into it, again and again;
#	collide stack: the region sits in the main stack's growth area; the
#	stack's growth collides again and again, further down each time;
#	collide stack_touch: a first write far below the stack pointer, inside
#	the region and below it, is stack growth too.
# The python3 workload also runs with the default placement (near), where
# nothing collides: the collisions are the policy's doing.
#
# The times, native and under optd, are logged with each result.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets collide cxxthrow threads forker
need_optd

PYTHON=/usr/bin/python3
SQLITE=/usr/bin/sqlite3
GRON=/usr/bin/gron
DUKTAPE=/usr/share/duktape/duktape.c
for f in "$PYTHON" "$SQLITE" "$GRON"; do
	[[ -x $f ]] || fail "$f is not installed (scripts/install-deps.sh)"
done
[[ -r $DUKTAPE ]] || fail "$DUKTAPE is missing (scripts/install-deps.sh installs duktape-dev)"
command -v gcc >/dev/null || fail "gcc is not installed (scripts/install-deps.sh)"

# Relocated processes leave /tmp/perf-PID.map behind; remove this test's.
remove_new_perf_maps_at_exit

# timed NAME CMD...: `run NAME CMD...`; US[NAME] gets its run time in µs.
declare -A US=()
timed() {
	local name=$1 t0
	t0=${EPOCHREALTIME/./}
	run "$@"
	US[$name]=$((${EPOCHREALTIME/./} - t0))
}

# times NATIVE OPTD: "native X s, optd Y s".
times() {
	printf 'native %d.%02d s, optd %d.%02d s' $((US[$1] / 1000000)) $((US[$1] % 1000000 / 10000)) \
		$((US[$2] / 1000000)) $((US[$2] % 1000000 / 10000))
}

# adv NAME RELOCATE CMD...: CMD natively as native_NAME, then as NAME under
# `optd run --relocate=RELOCATE --placement=adversarial`, its statistics in
# $T/NAME.json. Sets TIMES.
adv() {
	local name=$1 rel=$2
	shift 2
	timed "native_$name" "$@"
	timed "$name" "$OPTD" run --relocate="$rel" --placement=adversarial \
		--stats="$T/$name.json" -- "$@"
	[[ -s $T/$name.json ]] || fail "$name: optd wrote no statistics"
	TIMES=$(times "native_$name" "$name")
}

# said NAME: the collisions and moves in NAME's statistics.
said() {
	local f=$T/$1.json k v out="collisions"
	for k in brk mmap mremap stack; do
		v=$(json_get "$f" "collisions.$k")
		[[ $v == 0 ]] || out+=" $k $v"
	done
	printf '%s (total %s), moves %s' "$out" "$(json_get "$f" collisions.total)" \
		"$(json_get "$f" region.moves)"
}

# python3: a workload whose heap keeps growing (lists, dicts, bytes).
cat >"$T/work.py" <<'PYEOF'
import hashlib, json, re, zlib
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
d = {str(i): [i * i, {"k": i, "f": i / 7}] for i in range(60000)}
s = json.dumps(d, sort_keys=True)
print(len(s), hashlib.sha256(s.encode()).hexdigest(), zlib.crc32(zlib.compress(s.encode())))
print(fib(22), sorted(set(re.findall(r"\d+7\b", s)))[:5])
rows = [[(i * 7919 + j) % 1009 for j in range(40)] for i in range(20000)]
print(sum(map(sum, rows)), sorted(rows)[100][:5])
blobs = [bytes(range(256)) * (i % 64 + 1) for i in range(4000)]
print(sum(map(len, blobs)), zlib.crc32(b"".join(blobs[::97])))
PYEOF
adv python3 all "$PYTHON" "$T/work.py"
same_result native_python3 python3
at_least "$T/python3.json" functions.relocated 5000
at_least "$T/python3.json" collisions.brk 2
at_least "$T/python3.json" region.moves 2
ok "python3 workload: same output; $(said python3); $TIMES"

run near_python3 "$OPTD" run --relocate=all --stats="$T/near_python3.json" -- "$PYTHON" "$T/work.py"
same_result native_python3 near_python3
expect_json "$T/near_python3.json" collisions.total 0
ok "python3 workload, default placement: no collision"

# Some of CPython's own tests (package libpython3.11-testsuite); every
# python they start is placed adversarially too. Their output holds
# timings: the verdict and the status are compared.
CPYTESTS=(test_list test_dict test_re test_json test_set test_struct test_long)
adv cpytest all "$PYTHON" -m test -q "${CPYTESTS[@]}"
expect_eq "cpython tests: native exit status" "${STATUS_OF[native_cpytest]}" 0
expect_eq "cpython tests: exit status under optd" "${STATUS_OF[cpytest]}" 0
grep -q "^Tests result: SUCCESS" "$T/cpytest.out" ||
	fail "cpython tests under optd: $(tail -n 3 "$T/cpytest.out")"
at_least "$T/cpytest.json" collisions.brk 2
ok "CPython's ${CPYTESTS[*]}: pass; $(said cpytest); $TIMES"

# gcc: the driver, cc1 and as each get a region above their break at their
# entry point, and each grows its heap into it.
timed native_gcc gcc -O2 -c "$DUKTAPE" -o "$T/native.o"
timed gcc "$OPTD" run --relocate=all --placement=adversarial --stats="$T/gcc.json" -- \
	gcc -O2 -c "$DUKTAPE" -o "$T/optd.o"
TIMES=$(times native_gcc gcc)
expect_eq "gcc: exit status" "${STATUS_OF[gcc]}" "${STATUS_OF[native_gcc]}"
cmp -s "$T/native.o" "$T/optd.o" || fail "gcc: the object file differs from the native one"
at_least "$T/gcc.json" exec_injections 2
at_least "$T/gcc.json" collisions.brk 3
ok "gcc -O2 -c duktape.c: identical object file; $(said gcc); $TIMES"

cat >"$T/script.sql" <<'SQLEOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('row-%06d-%08x', i, (i * 2654435761) % 4294967296) FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b);
SELECT a, count(*), sum(id), min(b), max(b) FROM t GROUP BY a ORDER BY a LIMIT 5;
SELECT count(*) FROM t x JOIN t y ON x.a = y.id WHERE y.a < 10;
SELECT group_concat(b, ',') FROM (SELECT b FROM t WHERE a = 42 ORDER BY b DESC LIMIT 4);
SELECT sum(length(b)), avg(a), total(id * 1.5) FROM t;
SELECT b FROM t ORDER BY b DESC LIMIT 3;
SQLEOF
adv sqlite3 all "$SQLITE" -batch :memory: ".read $T/script.sql"
same_result native_sqlite3 sqlite3
at_least "$T/sqlite3.json" functions.relocated 100
at_least "$T/sqlite3.json" collisions.brk 2
ok "sqlite3: same output; $(said sqlite3); $TIMES"

PERL=/usr/bin/perl
[[ -x $PERL ]] || fail "$PERL is not installed (package perl-base)"
adv perl all "$PERL" -e 'my %h; $h{$_} = $_ * 2 for 1 .. 200000;
	my @k = sort { $a <=> $b } keys %h; my $s = 0; $s += $h{$_} for @k;
	eval { die "caught\n" }; print scalar(@k), " $s $@"; exit 3'
same_result native_perl perl
expect_eq "perl: exit status" "${STATUS_OF[perl]}" 3
at_least "$T/perl.json" functions.relocated 1000
at_least "$T/perl.json" functions.refused.calls_setjmp 1
at_least "$T/perl.json" collisions.brk 2
ok "perl: same output and status; $(json_get "$T/perl.json" functions.refused.calls_setjmp) functions not relocated (calls_setjmp); $(said perl); $TIMES"

# gron: Go with cgo. Its C functions (FDEs near 0x400000) are relocated, so
# the region must stay within 2 GiB of them: 0xc000000000 is out of reach,
# and the region goes above the break, which cgo's malloc grows.
"$PYTHON" - "$T/in.json" <<'PYEOF'
import json, sys
d = {"k%d" % i: {"a": [i, i * 2, {"s": "x" * (i % 7)}], "b": i / 4} for i in range(40000)}
json.dump(d, open(sys.argv[1], "w"), sort_keys=True)
PYEOF
adv gron all "$GRON" "$T/in.json"
same_result native_gron gron
at_least "$T/gron.json" functions.relocated 5
at_least "$T/gron.json" collisions.brk 1
ok "gron --relocate=all: same output; $(said gron); $TIMES"

# Without copies the region takes the Go runtime's first arena hint. The
# runtime's reservation there collides; the region goes past it, where the
# next arena (the heap passes 64 MiB) collides again.
adv gron_none none "$GRON" "$T/in.json"
same_result native_gron_none gron_none
at_least "$T/gron_none.json" collisions.mmap 2
addr=$(json_get "$T/gron_none.json" region.address)
((addr > 0xc000000000)) || fail "gron --relocate=none: the region ended at $(printf '%#x' "$addr"), not past the Go arena hint"
ok "gron --relocate=none: same output; $(said gron_none); region ends past the Go hint at $(printf '%#x' "$addr"); $TIMES"

# The project's targets, with copies: exceptions, backtrace() and
# pthread_cancel after the heap grew into the region; threads; forks.
adv cxxthrow all "$TGT_DIR/cxxthrow" --grow=4096
same_result native_cxxthrow cxxthrow
at_least "$T/cxxthrow.json" functions.relocated 5
at_least "$T/cxxthrow.json" collisions.brk 1
adv threads all "$TGT_DIR/threads" 64 20
same_result native_threads threads
at_least "$T/threads.json" collisions.total 1
adv forker all "$TGT_DIR/forker"
same_result native_forker forker
at_least "$T/forker.json" processes 2
at_least "$T/forker.json" collisions.total 1
ok "cxxthrow, threads, forker: same output; $(said cxxthrow); $(said threads); $(said forker)"

# The stack, without copies (the stack is far out of reach of any
# executable). python3 first: repr() of deeply nested lists recurses in C,
# megabytes deep.
ulimit -S -s 8192 2>/dev/null || log "cannot set the stack limit to 8 MiB; keeping $(ulimit -s) KiB"
cat >"$T/deep.py" <<'PYEOF'
import sys, zlib
sys.setrecursionlimit(100000)
def nest(n):
    l = []
    for _ in range(n):
        l = [l]
    return l
for depth in (1000, 10000, 30000):
    s = repr(nest(depth))
    print(depth, len(s), zlib.crc32(s.encode()))
PYEOF
adv deep none "$PYTHON" "$T/deep.py"
same_result native_deep deep
expect_eq "python3 deep recursion: exit status" "${STATUS_OF[deep]}" 0
at_least "$T/deep.json" collisions.stack 3
ok "python3 deep recursion, --relocate=none: same output; $(said deep); $TIMES"

# Without address-space randomisation the stack's place is known from a
# native run.
if ! setarch -R true 2>/dev/null; then
	log "setarch -R does not work here: collide's stack cases are not run"
	exit 0
fi
run layout setarch -R "$TGT_DIR/collide" layout
expect_eq "collide layout: exit status" "$STATUS" 0
declare -A L=()
while read -r key value; do
	L[$key]=$value
done <"$T/layout.out"
if [[ ${L[stack_rlimit]:-} != 0x* ]] || ((L[stack_rlimit] < 8 << 20)); then
	log "RLIMIT_STACK is ${L[stack_rlimit]:-unknown}: the stack cases need 8 MiB: not run"
	exit 0
fi
MIB=$((1 << 20))
# The recursion goes 6 MiB down from the stack's top, 64 KiB a frame.
printf -v ADDR '%x' $((L[stack_top] - 6 * MIB))
adv stack none setarch -R "$TGT_DIR/collide" stack "$ADDR" 1M
same_result native_stack stack
grep -q 'the deepest frame is below ADDR+LEN yes' "$T/native_stack.out" ||
	fail "collide stack did not reach 0x$ADDR natively: $(cat "$T/native_stack.out")"
at_least "$T/stack.json" collisions.stack 2
ok "collide stack: same output; $(said stack); $TIMES"

# A first write far below the stack pointer: inside where the region sits
# (1 MiB below [stack] and its 1 MiB guard gap), and 4 MiB below [stack].
for where in inside below; do
	if [[ $where == inside ]]; then
		a=$((L[stack_start] - 2 * MIB + MIB / 2))
	else
		a=$((L[stack_start] - 4 * MIB))
	fi
	printf -v ADDR '%x' "$a"
	adv "touch_$where" none setarch -R "$TGT_DIR/collide" stack_touch "$ADDR" 64K
	same_result "native_touch_$where" "touch_$where"
	grep -q 'reaches ADDR yes' "$T/native_touch_$where.out" ||
		fail "collide stack_touch at 0x$ADDR: $(cat "$T/native_touch_$where.out")"
	at_least "$T/touch_$where.json" collisions.stack 1
	ok "collide stack_touch $where the region: same output; $(said "touch_$where")"
done
