#!/bin/bash
# relocate_cc1.sh: what `optd run --relocate=all` costs on cc1, GCC's
# compiler proper: how many functions and bytes it copies, how long the
# program is stopped for it (attach_pause_us: discovery, copying, writing
# and patching, all with the world stopped), and the whole run's wall time
# against native, interleaved A B A B in one go.
#
#   bench/relocate_cc1.sh [--optd PATH] [--runs N] [--source FILE.c]
#
# Defaults: build/daemon/optd, 5 runs, /usr/share/duktape/duktape.c
# (package duktape-dev), compiled -O2 after preprocessing.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

RUNS=5
SOURCE=/usr/share/duktape/duktape.c
while (($# > 0)); do
	case $1 in
	--optd) OPTD=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--source) SOURCE=$2; shift 2 ;;
	*) fail "usage: $0 [--optd PATH] [--runs N] [--source FILE.c]" ;;
	esac
done
need_optd
CC1=$(gcc -print-prog-name=cc1)
gcc -E "$SOURCE" -o "$T/src.i" || fail "cannot preprocess $SOURCE"

secs() { # secs CMD...: wall time of CMD in ns; CMD must succeed
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || fail "failed: $*"
	t1=$(date +%s%N)
	echo $((t1 - t0))
}

native=() optd=()
for ((i = 1; i <= RUNS; i++)); do
	native+=("$(secs "$CC1" -quiet -fpreprocessed -O2 "$T/src.i" -o "$T/n.s")")
	optd+=("$(secs "$OPTD" -q run --stats="$T/r$i.json" --relocate=all -- \
		"$CC1" -quiet -fpreprocessed -O2 "$T/src.i" -o "$T/o.s")")
	cmp -s "$T/n.s" "$T/o.s" || fail "run $i: the assembly differs"
	rm -f "/tmp/perf-$(json_get "$T/r$i.json" pid).map"
done

"$PY" - "$T" "$RUNS" "${native[*]}" "${optd[*]}" <<'PYEOF'
import json, statistics, sys
t, runs = sys.argv[1], int(sys.argv[2])
native = [float(x) for x in sys.argv[3].split()]
optd = [float(x) for x in sys.argv[4].split()]
st = [json.load(open("%s/r%d.json" % (t, i))) for i in range(1, runs + 1)]
f = st[0]["functions"]
pause = [s["attach_pause_us"] / 1000 for s in st]
ratios = [o / n for o, n in zip(optd, native)]
print("| functions found | relocated | refused | code KiB | region KiB | pause median (ms) | pause max (ms) | wall optd/native median | min | max |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print("| %d | %d | %d | %d | %d | %.0f | %.0f | %.3f | %.3f | %.3f |" % (
    f["found"], f["relocated"], sum(f["refused"].values()),
    f["code_bytes"] // 1024, st[0]["region"]["bytes"] // 1024, statistics.median(pause), max(pause),
    statistics.median(ratios), min(ratios), max(ratios)))
print()
print("refused:", ", ".join("%s %d" % kv for kv in sorted(f["refused"].items())))
PYEOF
