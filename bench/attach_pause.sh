#!/bin/bash
# attach_pause.sh: how long `optd --pid` stops a busy target to attach and
# inject, and to remove the region and detach.
#
#   bench/attach_pause.sh [--optd PATH] [--busy PATH] [--runs N]
#                         [--threads "1 16 256"]
#
# For each thread count N it starts tests/targets/busy with N threads
# spinning on the CPU, then RUNS times: `optd --pid PID --stats=FILE`, wait
# for its "attached" line, SIGINT, wait for it to exit 0; and reads
# attach_stop_us, attach_pause_us, detach_stop_us and detach_pause_us from
# FILE (optd measures them: "stop" from asking every thread to stop until
# all have; "pause" from then until every thread runs again). Between runs it checks the
# region is gone. Prints a markdown table of the median and maximum pauses,
# in microseconds. The busy target checks its own work and must end with
# "mismatches 0".
#
# Defaults: build/daemon/optd, build/tests/targets/busy, 20 runs, 1 16 256.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

RUNS=20
THREADS="1 16 256"
while (($# > 0)); do
	case $1 in
	--optd) OPTD=$2; shift 2 ;;
	--busy) TGT_DIR=$(dirname "$2"); shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	*) fail "usage: $0 [--optd PATH] [--busy PATH] [--runs N] [--threads \"1 16 256\"]" ;;
	esac
done
need_targets busy find-region
need_optd

rows=()
for n in $THREADS; do
	start "busy$n" "$TGT_DIR/busy" --threads="$n" --checkpoint=3
	expect_event "busy$n" '^ready ([0-9]+)$'
	P=${PID[busy$n]}
	for ((i = 1; i <= RUNS; i++)); do
		name=att$n.$i
		optd_attach "$name" "$P" --stats="$T/$name.json"
		optd_detach "$name"
		expect_no_region "$P" "$name: after detach"
	done
	finish "busy$n"
	expect_eq "busy --threads=$n: exit status" "$STATUS" 0
	grep -q "mismatches 0$" "$T/busy$n.out" || fail "busy$n: $(tail -n 1 "$T/busy$n.out")"
	rows+=("$("$PY" - "$n" "$T"/att"$n".*.json <<'PYEOF'
import json, statistics, sys
n, files = sys.argv[1], sys.argv[2:]
stats = [json.load(open(f)) for f in files]
def col(key):
    v = [float(s[key]) for s in stats]
    return "%.0f | %.0f" % (statistics.median(v), max(v))
print("| %s | %d | %s | %s | %s | %s |" % (n, len(stats), col("attach_stop_us"),
      col("attach_pause_us"), col("detach_stop_us"), col("detach_pause_us")))
PYEOF
)") || fail "cannot read the stats of busy --threads=$n"
done

echo "$("$OPTD" --version 2>&1 | head -n 1); $(uname -sr); $(nproc) CPUs:" \
	"$(grep -m 1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo
echo "| busy threads | runs | attach stop median | max | attach pause median | max |" \
	"detach stop median | max | detach pause median | max |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
