#!/bin/bash
# relocate: `optd run --relocate=all` and `--relocate=FUNC[,FUNC]` on the
# project's targets and on real Debian programs (python3, sqlite3).
#
# Each run under optd prints exactly what the native run prints and ends
# with the same status, while --stats says the functions were copied and
# patched: hundreds to thousands of them (python3.11's executable holds over
# ten thousand). The perf map written for perf(1) names the copies, and a
# named function is relocated alone. A C++ program that throws through its
# frames and cancels threads is relocated with unwind information for the
# copies, and prints what it prints natively. Calls through a library's PLT
# become direct calls only when its GOT is read-only (immediate binding).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets single threads forker cxxthrow busy find-region pltcall-now pltcall-lazy
command -v gcc >/dev/null || fail "gcc is not installed (scripts/install-deps.sh)"
need_optd

# Every relocated process leaves /tmp/perf-PID.map for perf report (the JIT
# convention); remove the ones this test causes.
remove_new_perf_maps_at_exit

PYTHON=/usr/bin/python3
SQLITE=/usr/bin/sqlite3
[[ -x $PYTHON ]] || fail "$PYTHON is not installed (scripts/install-deps.sh)"
[[ -x $SQLITE ]] || fail "$SQLITE is not installed (scripts/install-deps.sh)"

# check NAME MIN OPTION CMD...: CMD natively and under `optd run OPTION`;
# same output and status, and at least MIN functions relocated.
check() {
	local name=$1 min=$2 opt=$3
	shift 3
	run "native_$name" "$@"
	run "$name" "$OPTD" run --stats="$T/$name.json" "$opt" -- "$@"
	same_result "native_$name" "$name"
	at_least "$T/$name.json" functions.relocated "$min"
	ok "$name: $(json_get "$T/$name.json" functions.relocated) of" \
		"$(json_get "$T/$name.json" functions.found) functions relocated; same output and status"
}

check single 10 --relocate=all "$TGT_DIR/single" --exit=3
check threads 10 --relocate=all "$TGT_DIR/threads" 64 20
check forker 10 --relocate=all "$TGT_DIR/forker"

cat >"$T/work.py" <<'PYEOF'
import hashlib, json, re, threading, zlib
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
d = {str(i): [i * i, {"k": i, "f": i / 7}] for i in range(20000)}
s = json.dumps(d, sort_keys=True)
print(len(s), hashlib.sha256(s.encode()).hexdigest(), zlib.crc32(zlib.compress(s.encode())))
print(fib(23), sorted(set(re.findall(r"\d+7\b", s)))[:5], sum(x for x in range(10**6) if x % 7 == 3))
class A:
    def __init__(self, x): self.x = x
    def __lt__(self, o): return self.x < o.x
print([a.x for a in sorted(A((i * 7919) % 1000) for i in range(3000))][::300])
try:
    {}["missing"]
except KeyError as e:
    print("KeyError", e)
out = []
ts = [threading.Thread(target=lambda i=i: out.append(sum(range(i * 20000)))) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out))
print("%.6f" % sum(1 / (k * k) for k in range(1, 200000)))
PYEOF
check python3 5000 --relocate=all "$PYTHON" "$T/work.py"

# Some of CPython's own tests (package libpython3.11-testsuite): they pass
# natively and under --relocate=all, every python they start relocated too.
# Their output holds timings, so the verdict and the status are compared.
CPYTESTS=(test_json test_re test_zlib test_struct test_unicode test_long test_float test_dict
	test_set test_itertools test_functools)
run native_cpytest "$PYTHON" -m test -q "${CPYTESTS[@]}"
run cpytest "$OPTD" run --stats="$T/cpytest.json" --relocate=all -- "$PYTHON" -m test -q "${CPYTESTS[@]}"
expect_eq "cpython tests: exit status" "${STATUS_OF[cpytest]}" "${STATUS_OF[native_cpytest]}"
expect_eq "cpython tests: native exit status" "${STATUS_OF[native_cpytest]}" 0
grep -q "^Tests result: SUCCESS" "$T/cpytest.out" || fail "cpython tests under optd: $(tail -n 3 "$T/cpytest.out")"
at_least "$T/cpytest.json" functions.relocated 5000
ok "CPython's ${#CPYTESTS[@]} test modules pass with $(json_get "$T/cpytest.json" functions.relocated) functions relocated"
rm -f "/tmp/perf-$(json_get "$T/cpytest.json" pid).map"

cat >"$T/script.sql" <<'SQLEOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('row-%06d', i) FROM n;
CREATE INDEX ta ON t(a);
SELECT a, count(*), sum(id), min(b), max(b) FROM t GROUP BY a ORDER BY a LIMIT 5;
SELECT count(*) FROM t x JOIN t y ON x.a = y.id WHERE y.a < 10;
SELECT group_concat(b, ',') FROM (SELECT b FROM t WHERE a = 42 ORDER BY b DESC LIMIT 4);
SELECT sum(length(b)), avg(a), total(id * 1.5) FROM t;
SQLEOF
check sqlite3 5 --relocate=all "$SQLITE" -batch :memory: ".read $T/script.sql"

# C++ exceptions, backtrace() and pthread_cancel through relocated frames:
# the copies' unwind information is registered with the target's libgcc_s,
# so each gives the native result (a copy without it would end in
# std::terminate, a short backtrace, or a cancel without its cleanups).
check cxxthrow 5 --relocate=all "$TGT_DIR/cxxthrow"
grep -q "^backtrace frames" "$T/cxxthrow.out" || fail "cxxthrow: no backtrace line"
if json_get "$T/cxxthrow.json" functions.blocked >/dev/null 2>&1; then
	fail "cxxthrow: relocation was blocked: $(json_get "$T/cxxthrow.json" functions.blocked)"
fi
# The named functions are the ones the exceptions, the backtrace and the
# cancellation unwind through.
run cxxthrow_named "$OPTD" run --stats="$T/cxxthrow_named.json" \
	--relocate=_Z4deepi,_Z6middlei,_Z9frames_ati,_Z9wait_deepi -- "$TGT_DIR/cxxthrow"
same_result native_cxxthrow cxxthrow_named
expect_json "$T/cxxthrow_named.json" functions.relocated 4
ok "cxxthrow: the exceptions, backtrace() and pthread_cancel unwind through 4 named copies"

# A real C++ program from Debian: cmake (libstdc++ and libgcc_s dynamically
# linked) running a script, and the same script ending in a fatal error.
command -v cmake >/dev/null || fail "cmake is not installed (scripts/install-deps.sh)"
cat >"$T/work.cmake" <<'CMEOF'
set(acc "")
foreach(i RANGE 1 3000)
  math(EXPR sq "${i} * ${i} % 977")
  string(APPEND acc "${sq},")
endforeach()
string(LENGTH "${acc}" len)
string(SHA256 h "${acc}")
string(REGEX MATCHALL "9[0-9]+," m "${acc}")
list(LENGTH m nm)
list(SORT m)
list(REMOVE_DUPLICATES m)
list(LENGTH m nu)
message(STATUS "len=${len} sha=${h} matches=${nm} unique=${nu}")
if(DEFINED FAIL)
  message(FATAL_ERROR "stopping as asked")
endif()
CMEOF
check cmake 5000 --relocate=all cmake -P "$T/work.cmake"
check cmake_fatal 5000 --relocate=all cmake -DFAIL=1 -P "$T/work.cmake"
expect_eq "cmake_fatal: exit status" "${STATUS_OF[cmake_fatal]}" 1

# gcc on a large C file (duktape.c, package duktape-dev): the driver runs
# cc1 and as, each relocated at its own entry point after its exec; the
# object file is byte for byte the native one. cc1 alone, on the
# preprocessed file, shows the count: tens of thousands of functions.
DUKTAPE=/usr/share/duktape/duktape.c
[[ -r $DUKTAPE ]] || fail "$DUKTAPE is missing (scripts/install-deps.sh installs duktape-dev)"
run native_gcc gcc -O2 -c "$DUKTAPE" -o "$T/native.o"
run gcc "$OPTD" run --stats="$T/gcc.json" --relocate=all -- gcc -O2 -c "$DUKTAPE" -o "$T/optd.o"
expect_eq "gcc: exit status" "${STATUS_OF[gcc]}" "${STATUS_OF[native_gcc]}"
cmp -s "$T/native.o" "$T/optd.o" || fail "gcc: the object file differs from the native one"
at_least "$T/gcc.json" exec_injections 2
ok "gcc -O2 -c duktape.c: identical object file, $(json_get "$T/gcc.json" exec_injections) images followed through exec"
CC1=$(gcc -print-prog-name=cc1)
gcc -E "$DUKTAPE" -o "$T/duktape.i" || fail "gcc -E duktape.c failed"
run native_cc1 "$CC1" -quiet -fpreprocessed -O2 "$T/duktape.i" -o "$T/native.s"
run cc1 "$OPTD" run --stats="$T/cc1.json" --relocate=all -- "$CC1" -quiet -fpreprocessed -O2 "$T/duktape.i" -o "$T/optd.s"
expect_eq "cc1: exit status" "${STATUS_OF[cc1]}" "${STATUS_OF[native_cc1]}"
cmp -s "$T/native.s" "$T/optd.s" || fail "cc1: the assembly differs from the native one"
at_least "$T/cc1.json" functions.relocated 20000
ok "cc1 on duktape.i: $(json_get "$T/cc1.json" functions.relocated) functions relocated, identical assembly"
rm -f "/tmp/perf-$(json_get "$T/cc1.json" pid).map" "/tmp/perf-$(json_get "$T/gcc.json" pid).map"

# optd --pid --relocate=all on a busy target whose 8 threads run in the
# copies; at detach the entries are restored, threads and return addresses
# that lead into copies are moved to the original code (stack walks), and
# the region is gone: the maps are as before but for the guard's PROT_NONE
# reservations, and the target goes on to print what it prints natively.
# pid_cycle NAME ATT [own] CMD...: CMD (a target that announces "ready PID"
# and a "tick N" per line of input) with optd --pid --relocate=all attached
# as ATT (none if empty) for three ticks; after detach the region is gone
# and the maps are as before but for the reservations (and, with "own", for
# what the target maps outside the guard's windows meanwhile).
pid_cycle() {
	local name=$1 att=$2 own= tick
	shift 2
	if [[ $1 == own ]]; then
		own=own
		shift
	fi
	start "$name" "$@"
	expect_event "$name" '^ready ([0-9]+)$'
	P=${PID[$name]}
	cat /proc/"$P"/maps >"$T/$name.maps.before"
	if [[ -n $att ]]; then
		optd_attach "$att" "$P" --relocate=all --stats="$T/$att.json"
		expect_region "$P" "$att: while attached"
	fi
	for tick in 1 2 3; do
		send_line "$name"
		expect_event "$name" "^tick $tick( |$)"
	done
	if [[ -n $att ]]; then
		optd_detach "$att"
		expect_no_region "$P" "$att: after detach"
		cat /proc/"$P"/maps >"$T/$name.maps.after"
		expect_maps_reserved "$att: /proc/$P/maps after detach" "$T/$name.maps.before" \
			"$T/$name.maps.after" "$T/$att.json" $own
		at_least "$T/$att.json" functions.relocated 5
	fi
	send_line "$name"
	expect_event "$name" "^tick 4( |$)"
	finish "$name"
}
pid_cycle native_busy "" "$TGT_DIR/busy" --threads=8 --checkpoint=3
pid_cycle busy attbusy "$TGT_DIR/busy" --threads=8 --checkpoint=3
same_result native_busy busy
ok "--pid --relocate=all: $(json_get "$T/attbusy.json" functions.relocated) functions relocated," \
	"region removed at detach, maps as before, output as native"

# The same with a C++ target whose threads throw without end, so that a
# thread is inside libgcc's unwinder at most stops: registering and
# withdrawing the copies' unwind information waits for a stop where none
# is (it takes libgcc's lock), and the exceptions keep working throughout.
# Its threads get malloc arenas of their own while it runs.
pid_cycle native_cxxbusy "" "$TGT_DIR/cxxthrow" --busy=3 --checkpoint=3
pid_cycle cxxbusy attcxx own "$TGT_DIR/cxxthrow" --busy=3 --checkpoint=3
same_result native_cxxbusy cxxbusy
ok "--pid --relocate=all on a C++ target throwing in 3 threads: $(json_get "$T/attcxx.json" functions.relocated)" \
	"functions relocated with unwind information, withdrawn at detach, maps as before"

# --relocate=hot (the default): sample the threads' instruction pointers
# with perf_event_open, then relocate the functions that cover the samples.
cat >"$T/long.py" <<'PYEOF'
import json, zlib
t = 0
for r in range(60):
    d = {str(i): [i * r, str(i)] for i in range(5000)}
    t += zlib.crc32(json.dumps(d).encode())
print(t)
PYEOF
check hot_python 1 --profile-ms=40 "$PYTHON" "$T/long.py"
at_least "$T/hot_python.json" functions.samples 5

# optd --pid (hot by default) on busy: relocation happens while attached,
# then detach removes everything.
start hbusy "$TGT_DIR/busy" --threads=4 --checkpoint=3
expect_event hbusy '^ready ([0-9]+)$'
P=${PID[hbusy]}
cat /proc/"$P"/maps >"$T/hbusy.maps.before"
optd_attach athot "$P" --profile-ms=100 --stats="$T/athot.json"
expect_err athot "hot functions relocated|^optd: "
[[ $LINE == *" hot functions relocated from "* ]] || fail "athot: optd said: $LINE"
send_line hbusy
expect_event hbusy '^tick 1 '
optd_detach athot
expect_no_region "$P" "athot: after detach"
cat /proc/"$P"/maps >"$T/hbusy.maps.after"
expect_maps_reserved "athot: /proc/$P/maps after detach" "$T/hbusy.maps.before" \
	"$T/hbusy.maps.after" "$T/athot.json"
at_least "$T/athot.json" functions.relocated 1
finish hbusy
expect_eq "hbusy: exit status" "${STATUS_OF[hbusy]}" 0
grep -q "mismatches 0$" "$T/hbusy.out" || fail "hbusy: $(tail -n 1 "$T/hbusy.out")"
ok "--pid hot: $(json_get "$T/athot.json" functions.relocated) functions from" \
	"$(json_get "$T/athot.json" functions.samples) samples; detached cleanly"

# A named function alone.
check named 1 --relocate=tgt_work,tgt_crc32 "$TGT_DIR/single"
expect_json "$T/named.json" functions.relocated 2

# The perf map names the copies and outlives the process for perf report.
tpid=$(json_get "$T/python3.json" pid)
map=/tmp/perf-$tpid.map
[[ -s $map ]] || fail "no perf map $map after the python3 run"
grep -q ' PyLong_FromLong$' "$map" || fail "$map does not name PyLong_FromLong"
rm -f "$map" "/tmp/perf-$(json_get "$T/single.json" pid).map" "/tmp/perf-$(json_get "$T/named.json" pid).map"
ok "perf map $map names the copies"

# Calls through the PLT. The region goes 1 GiB below the library (known
# beforehand: no address randomisation), so that rel32 reaches what the
# PLT entries lead to. With immediate binding and full RELRO the copies call
# snprintf, strlen and plt_inner (its copy) directly; with lazy binding the
# GOT stays writable and the copies keep calling through the PLT.
if setarch -R true 2>/dev/null; then
	for binding in now lazy; do
		where=$(setarch -R "$TGT_DIR/pltcall-$binding" --where) || fail "pltcall-$binding --where"
		arena=$(printf '%x' $(((where & ~0xfffff) - 0x40000000)))
		run "native_plt$binding" setarch -R "$TGT_DIR/pltcall-$binding"
		run "plt$binding" setarch -R "$OPTD" run --stats="$T/plt$binding.json" \
			--arena-at="$arena" --relocate=plt_outer,plt_inner -- "$TGT_DIR/pltcall-$binding"
		same_result "native_plt$binding" "plt$binding"
		expect_json "$T/plt$binding.json" functions.relocated 2
		rm -f "/tmp/perf-$(json_get "$T/plt$binding.json" pid).map"
	done
	at_least "$T/pltnow.json" functions.plt_calls_direct 2
	expect_json "$T/pltlazy.json" functions.plt_calls_direct 0
	ok "PLT calls made direct: $(json_get "$T/pltnow.json" functions.plt_calls_direct) with" \
		"immediate binding, none with lazy binding; same output"
else
	log "setarch -R does not work here: PLT calls not tested"
fi
