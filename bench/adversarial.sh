#!/bin/bash
# What --placement=adversarial costs a real program: cc1 (gcc's compiler
# proper) on the preprocessed duktape.c, natively and under
# `optd run --relocate=all --placement=adversarial`, in turn (A B A B ...),
# so that both see the same machine. optd puts its region just above the
# break, so every step of heap growth that reaches it collides and moves
# the pages it meets (the region ends up in pieces).
#
#   bench/adversarial.sh [--optd PATH] [--rounds N] [--source FILE]
#
# Prints, per round, the wall times and their ratio, and from optd's
# statistics: relocated functions, collisions, moves, pieces at the end and
# the trap-to-resume latency (median, p99, max). The object code must be the
# native one, or the run fails.
# Defaults: build/daemon/optd, 3 rounds, /usr/share/duktape/duktape.c.
set -euo pipefail

OPTD=build/daemon/optd
ROUNDS=3
SOURCE=/usr/share/duktape/duktape.c
while (($#)); do
	case $1 in
	--optd) OPTD=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--source) SOURCE=$2; shift 2 ;;
	*) echo "usage: $0 [--optd PATH] [--rounds N] [--source FILE]" >&2; exit 64 ;;
	esac
done
[[ -x $OPTD ]] || { echo "$0: no optd at $OPTD" >&2; exit 1; }
[[ -r $SOURCE ]] || { echo "$0: cannot read $SOURCE" >&2; exit 1; }
CC1=$(gcc -print-prog-name=cc1)
T=$(mktemp -d /tmp/optd-adv-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
gcc -E "$SOURCE" -o "$T/in.i"

# seconds CMD...: runs CMD, prints its wall time in seconds.
seconds() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>"$T/err" || { echo "$0: failed: $*" >&2; cat "$T/err" >&2; exit 1; }
	t1=$(date +%s.%N)
	python3 -c "print(f'{$t1 - $t0:.3f}')"
}

echo "cc1 -O2 on $(basename "$SOURCE") (preprocessed); $("$OPTD" --version 2>&1 | head -1); $(uname -sr); $(nproc) CPUs"
echo
echo "| round | native s | optd s | optd/native | relocated | collisions | moves | pieces | latency median µs | p99 | max |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for ((i = 1; i <= ROUNDS; i++)); do
	n=$(seconds "$CC1" -quiet -fpreprocessed -O2 "$T/in.i" -o "$T/native.s")
	o=$(seconds "$OPTD" run -q --relocate=all --placement=adversarial --stats="$T/s.json" -- \
		"$CC1" -quiet -fpreprocessed -O2 "$T/in.i" -o "$T/optd.s")
	cmp -s "$T/native.s" "$T/optd.s" || { echo "$0: round $i: the assembly differs" >&2; exit 1; }
	python3 - "$T/s.json" "$i" "$n" "$o" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
i, n, o = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
l = s["latency_us"]
print(f"| {i} | {n:.2f} | {o:.2f} | {o / n:.2f} | {s['functions']['relocated']} | "
      f"{s['collisions']['total']} | {s['region']['moves']} | {s['region']['pieces']} | "
      f"{l['median']:.0f} | {l['p99']:.0f} | {l['max']:.0f} |")
PY
done
