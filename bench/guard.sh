#!/bin/bash
# guard.sh: what the guard costs (DESIGN.md, "The guard"), in two parts.
#
#   bench/guard.sh [--optd PATH] [--bench PATH] [--parts "collide syscalls"]
#                  [--sizes "64K 2M 32M"] [--threads "1 4 16"] [--iters K]
#                  [--warmup-ms MS] [--relocate MODE] [--idle sleep|block]
#                  [--syscall-iters K] [--rounds R]
#
# collide: for each region size and thread count, one
#	optd run --region-size=SIZE --stats=FILE [--relocate=MODE] -- \
#		guard_bench collide --threads=N --iters=K --warmup-ms=MS
# in which the target times, K times, a MAP_FIXED mmap over the start of
# optd's region (optd moves the region, then the request runs) and, in the
# same loop, a munmap of an unmapped page of the guarded window outside the
# region (a bare seccomp stop and resume); see bench/guard_bench.c. Both are
# timed by the target around the one syscall, so their ratio comes from one
# run. The table gives the target's medians and p99s, the ratio of the
# medians, and optd's own latency_us (from the colliding stop to the resume)
# from FILE. Checks, for every run: exit status 0 (every request got its
# native result), the region seen at a new place after every collision,
# optd counting K collisions or more, and every bare request trapped (the
# non-colliding traps are at least the bare requests plus the K munmaps of
# the collided page).
#
# syscalls: R rounds of, in this order, `guard_bench syscalls --iters=K`
#	native
#	optd -q run --relocate=none --stats=FILE -- ...
#	strace -f -qq -o /dev/null -e trace=mmap,munmap,mprotect,madvise,brk ...
#	strace -f -qq --seccomp-bpf -o /dev/null -e trace=<the same> ...
# Each run's wall time (of the whole command: optd's start and the
# injection included) and loop time (the target's own clock around its
# loop) is divided by the native run's of the same round; the table gives
# the median, minimum and maximum of those per-round ratios. Every run must
# print the native checksum; optd must trap none of the loop's requests.
#
# Defaults: build/daemon/optd, build/bench/guard_bench, both parts, sizes
# "64K 2M 32M", threads "1 4 16", 300 iterations after 1000 ms of warm-up,
# optd's default --relocate (hot), idle threads in nanosleep(1 ms), 40000
# syscall iterations, 7 rounds. About 5 minutes on 2 cores.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

BENCH=$ROOT/build/bench/guard_bench
PARTS="collide syscalls"
SIZES="64K 2M 32M"
THREADS="1 4 16"
ITERS=300
WARMUP_MS=1000
RELOCATE=
IDLE="sleep"
SYSCALL_ITERS=40000
ROUNDS=7
TRACED=mmap,munmap,mprotect,madvise,brk
usage="usage: $0 [--optd PATH] [--bench PATH] [--parts \"collide syscalls\"] [--sizes \"64K 2M 32M\"]"
usage+=" [--threads \"1 4 16\"] [--iters K] [--warmup-ms MS] [--relocate MODE] [--idle sleep|block]"
usage+=" [--syscall-iters K] [--rounds R]"
while (($# > 0)); do
	(($# >= 2)) || fail "$usage"
	case $1 in
	--optd) OPTD=$2 ;;
	--bench) BENCH=$2 ;;
	--parts) PARTS=$2 ;;
	--sizes) SIZES=$2 ;;
	--threads) THREADS=$2 ;;
	--iters) ITERS=$2 ;;
	--warmup-ms) WARMUP_MS=$2 ;;
	--relocate) RELOCATE=$2 ;;
	--idle) IDLE=$2 ;;
	--syscall-iters) SYSCALL_ITERS=$2 ;;
	--rounds) ROUNDS=$2 ;;
	*) fail "$usage" ;;
	esac
	shift 2
done
need_optd
[[ -x $BENCH ]] || fail "guard_bench is not built ($BENCH)"

echo "$("$OPTD" --version 2>&1 | head -n 1); $(uname -sr); $(nproc) CPUs:" \
	"$(grep -m 1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

# ---- collide ----

# collide_run SIZE N: one run; appends a table row to $T/rows and
# "SIZE N RATIO" to $T/ratios.
collide_run() {
	local size=$1 n=$2 name=c$1.$2 opts=(--region-size="$1" --stats="$T/c$1.$2.json")
	[[ -n $RELOCATE ]] && opts+=(--relocate="$RELOCATE")
	run "$name" "$OPTD" -q run "${opts[@]}" -- "$BENCH" collide --threads="$n" \
		--iters="$ITERS" --warmup-ms="$WARMUP_MS" --idle="$IDLE"
	if ((STATUS != 0)); then
		_explain "$name"
		fail "$name: exit status $(describe_status "$STATUS")"
	fi
	"$PY" - "$T/$name.out" "$T/$name.json" "$size" "$n" "$ITERS" "$T/ratios" >>"$T/rows" <<'PYEOF' ||
import json, sys
out, stats, size, n, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
r = {}
for line in open(out):
    k, v = line.split()
    r[k] = float(v)
keys = ("threads region_bytes warmup_rounds iters moves_seen bare_requests collide_median_us"
        " collide_p99_us bare_median_us bare_p99_us ratio_median").split()
missing = [k for k in keys if k not in r]
if missing:
    sys.exit("%s: no %s in its output" % (out, ", ".join(missing)))
s = json.load(open(stats))
lat, traps = s["latency_us"], s["traps"]
problems = []
if r["threads"] != n or r["iters"] != iters:
    problems.append("ran %d threads, %d iterations" % (r["threads"], r["iters"]))
if r["moves_seen"] != iters:
    problems.append("the region moved %d times in %d collisions" % (r["moves_seen"], iters))
if r["bare_requests"] < iters / 2:
    problems.append("only %d bare requests (no free page in the window?)" % r["bare_requests"])
if s["collisions"]["mmap"] < iters or lat["count"] < iters:
    problems.append("optd counted %d mmap collisions, %d latencies" % (s["collisions"]["mmap"], lat["count"]))
if traps["total"] - traps["colliding"] < r["bare_requests"] + iters:
    problems.append("%d traps that did not collide: the bare requests were not all trapped"
                    % (traps["total"] - traps["colliding"]))
if problems:
    sys.exit("%s: %s" % (out, "; ".join(problems)))
print("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %d |" % (
    size, n, iters, r["collide_median_us"], r["collide_p99_us"], r["bare_median_us"],
    r["bare_p99_us"], r["ratio_median"], lat["median"], lat["p99"],
    s["functions"]["relocated"]))
with open(sys.argv[6], "a") as f:
    print("%s %d %.2f" % (size, n, r["ratio_median"]), file=f)
PYEOF
		fail "$name: see above"
}

if [[ " $PARTS " == *" collide "* ]]; then
	: >"$T/rows"
	: >"$T/ratios"
	for size in $SIZES; do
		for n in $THREADS; do
			collide_run "$size" "$n"
		done
	done
	echo
	echo "Collision latency: as seen by the target, in µs (median and p99 of $ITERS), idle threads: $IDLE" \
		"relocate: ${RELOCATE:-hot}"
	echo
	echo "| region | threads | iters | collide median | p99 | bare median | p99 |" \
		"collide/bare (medians) | optd latency_us median | p99 | functions relocated |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	cat "$T/rows"
	read -r _ _ goal < <(grep '^2M 4 ' "$T/ratios")
	if [[ -n ${goal:-} ]]; then
		echo
		if awk -v r="$goal" 'BEGIN { exit !(r <= 5) }'; then
			echo "goal (2 MiB region, 4 threads: collide median <= 5x bare): met ($goal)"
		else
			echo "goal (2 MiB region, 4 threads: collide median <= 5x bare): not met ($goal)"
		fi
	fi
fi

# ---- syscalls ----

# timed NAME CMD...: runs CMD with stdout in $T/NAME.out and stderr in
# $T/NAME.err; appends "NAME WALL_NS LOOP_NS CHECKSUM" to $T/times.
timed() {
	local name=$1 t0 t1 loop sum
	shift
	t0=${EPOCHREALTIME/./}
	"$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null || {
		_explain "$name"
		fail "$name: $* failed"
	}
	t1=${EPOCHREALTIME/./}
	loop=$(sed -n 's/^loop_ns \([0-9]*\)$/\1/p' "$T/$name.err")
	sum=$(sed -n 's/^checksum \([0-9a-f]*\)$/\1/p' "$T/$name.out")
	[[ -n $loop && -n $sum ]] || fail "$name: no loop_ns or checksum: $(head -c 300 "$T/$name.err")"
	echo "$name $(((t1 - t0) * 1000)) $loop $sum" >>"$T/times"
}

if [[ " $PARTS " == *" syscalls "* ]]; then
	command -v strace >/dev/null || skip "strace is not installed"
	SECCOMP_BPF=1
	strace -f -qq --seccomp-bpf -o /dev/null -e trace=$TRACED true 2>/dev/null || SECCOMP_BPF=0
	args=(syscalls --iters="$SYSCALL_ITERS" --time)
	: >"$T/times"
	for ((i = 1; i <= ROUNDS; i++)); do
		timed "native.$i" "$BENCH" "${args[@]}"
		timed "optd.$i" "$OPTD" -q run --relocate=none --stats="$T/s$i.json" -- "$BENCH" "${args[@]}"
		timed "strace.$i" strace -f -qq -o /dev/null -e trace=$TRACED "$BENCH" "${args[@]}"
		if ((SECCOMP_BPF)); then
			timed "strace-seccomp.$i" strace -f -qq --seccomp-bpf -o /dev/null \
				-e trace=$TRACED "$BENCH" "${args[@]}"
		fi
	done
	echo
	echo "Syscall-heavy target, no colliding request: $SYSCALL_ITERS iterations of 8 syscalls," \
		"$ROUNDS rounds interleaved; per-round ratio to native (median, min, max)"
	echo
	"$PY" - "$T" "$ROUNDS" "$SECCOMP_BPF" <<'PYEOF' || fail "syscalls: see above"
import json, statistics, sys
t, rounds, seccomp_bpf = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
runs = {}
for line in open(t + "/times"):
    name, wall, loop, csum = line.split()
    kind, i = name.rsplit(".", 1)
    runs[(kind, int(i))] = (int(wall), int(loop), csum)
kinds = ["optd", "strace"] + (["strace-seccomp"] if seccomp_bpf else [])
sums = {v[2] for v in runs.values()}
if len(sums) != 1:
    sys.exit("syscalls: the checksums differ: %s" % sorted((k, v[2]) for k, v in runs.items()))
traps = [json.load(open("%s/s%d.json" % (t, i)))["traps"]["total"] for i in range(1, rounds + 1)]
label = {"optd": "optd run --relocate=none", "strace": "strace -f",
         "strace-seccomp": "strace -f --seccomp-bpf"}
print("| command | wall / native median | min | max | loop / native median | min | max |")
print("|---|---:|---:|---:|---:|---:|---:|")
native = [runs[("native", i)] for i in range(1, rounds + 1)]
print("| native (wall %.3f s, loop %.3f s: medians) | 1 | | | 1 | | |" % (
    statistics.median(n[0] for n in native) / 1e9, statistics.median(n[1] for n in native) / 1e9))
med = {}
for k in kinds:
    row = []
    for col in (0, 1):
        r = [runs[(k, i)][col] / runs[("native", i)][col] for i in range(1, rounds + 1)]
        med[(k, col)] = statistics.median(r)
        row += [statistics.median(r), min(r), max(r)]
    print("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |" % ((label[k],) + tuple(row)))
print()
if not seccomp_bpf:
    print("strace --seccomp-bpf: not supported by this strace")
print("optd traps in the loop runs: %s (max %d)" % (
    "none" if max(traps) <= 1 else "some", max(traps)))
print("goal (optd <= 2%% over native, wall median of ratios): %s (%+.1f%%)" % (
    "met" if med[("optd", 0)] <= 1.02 else "not met", (med[("optd", 0)] - 1) * 100))
if max(traps) > 1:
    sys.exit("syscalls: optd trapped %d requests; the loop's requests must stay clear of the window"
             % max(traps))
PYEOF
fi
