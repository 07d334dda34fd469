#!/bin/bash
# guard.sh: what the guard costs (DESIGN.md, "The guard"), in two parts.
#
#   bench/guard.sh [--optd PATH] [--bench PATH] [--parts "collide syscalls"]
#                  [--sizes "64K 2M 32M"] [--threads "1 4 16"] [--iters K]
#                  [--warmup-ms MS] [--relocate MODE] [--idle sleep|block]
#                  [--syscall-iters K] [--rounds R] [--modes "native optd ..."]
#
# collide: for each region size and thread count, one
#	optd -q run --region-size=SIZE --relocate=MODE --stats=FILE -- \
#		guard_bench collide --threads=N --iters=K --warmup-ms=MS --idle=...
# in which the target times, K times, a MAP_FIXED mmap over the start of
# optd's region (optd moves the region, then the request runs) and, in the
# same loop, a munmap of an unmapped page of the guarded window outside the
# region (a bare seccomp stop and resume); see bench/guard_bench.c. Both are
# timed by the target around the one syscall, so their ratio comes from one
# run. The table gives the target's medians and p99s, the ratio of the
# medians, and optd's own latency_us (from the colliding stop to the resume,
# over every collision of the run, warm-up included) from FILE. Checks, for
# every run: exit status 0 (every request got its native result), the region
# seen at a new place after every collision, optd counting K collisions or
# more, and every bare request trapped (the non-colliding traps are at least
# the bare requests plus the K munmaps of the collided page).
#
# --relocate=all (the default here) copies every function of guard_bench
# into the region before main, so that every move walks the stacks and fixes
# the return addresses into the copies, the same way in every run; optd's
# own default (hot) relocates 0 to 2 functions from a handful of samples,
# which changes from run to run. --relocate=none moves an empty region.
#
# syscalls: R rounds of `guard_bench syscalls --iters=K --time`, each round
# running every mode of --modes in this order:
#	native		the program alone
#	optd		optd -q run --relocate=none --stats=FILE -- ...
#	strace		strace -f -qq -o /dev/null -e trace=mmap,munmap,mprotect,madvise,brk ...
#	strace-seccomp	strace -f -qq --seccomp-bpf -o /dev/null -e trace=<the same> ...
#	seccomp-allow	the program alone, with a one-instruction allow-all
#			seccomp filter of its own (--seccomp-allow): the floor
#			of what any filter costs
# Each run's wall time (of the whole command: optd's start and the
# injection included) and loop time (the target's own clock around its
# loop) is divided by the native run's of the same round; the table gives
# the median, minimum and maximum of those per-round ratios. Every run must
# print the native checksum; optd must trap none of the loop's requests.
#
# Defaults: build/daemon/optd, build/bench/guard_bench, both parts, sizes
# "64K 2M 32M", threads "1 4 16", 300 iterations after 200 ms of warm-up,
# --relocate=all, idle threads in nanosleep(1 ms), 20000 syscall
# iterations, 5 rounds of all five modes. A few minutes on 2 cores, most of
# it strace.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

BENCH=$ROOT/build/bench/guard_bench
PARTS="collide syscalls"
SIZES="64K 2M 32M"
THREADS="1 4 16"
ITERS=300
WARMUP_MS=200
RELOCATE=all
IDLE="sleep"
SYSCALL_ITERS=20000
ROUNDS=5
MODES="native optd strace strace-seccomp seccomp-allow"
TRACED=mmap,munmap,mprotect,madvise,brk
usage="usage: $0 [--optd PATH] [--bench PATH] [--parts \"collide syscalls\"] [--sizes \"64K 2M 32M\"]"
usage+=" [--threads \"1 4 16\"] [--iters K] [--warmup-ms MS] [--relocate MODE] [--idle sleep|block]"
usage+=" [--syscall-iters K] [--rounds R] [--modes \"$MODES\"]"
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
	--modes) MODES=$2 ;;
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
	local size=$1 n=$2 name=c$1.$2
	run "$name" "$OPTD" -q run --region-size="$size" --relocate="$RELOCATE" \
		--stats="$T/$name.json" -- "$BENCH" collide --threads="$n" --iters="$ITERS" \
		--warmup-ms="$WARMUP_MS" --idle="$IDLE"
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
	echo "Collision latency as the target sees it, in µs (median and p99 of $ITERS);" \
		"--relocate=$RELOCATE; idle threads: $IDLE"
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

# syscalls_run MODE ROUND
syscalls_run() {
	local mode=$1 i=$2 args=(syscalls --iters="$SYSCALL_ITERS" --time)
	case $mode in
	native) timed "$mode.$i" "$BENCH" "${args[@]}" ;;
	optd) timed "$mode.$i" "$OPTD" -q run --relocate=none --stats="$T/s$i.json" -- \
		"$BENCH" "${args[@]}" ;;
	strace) timed "$mode.$i" strace -f -qq -o /dev/null -e trace=$TRACED "$BENCH" "${args[@]}" ;;
	strace-seccomp) timed "$mode.$i" strace -f -qq --seccomp-bpf -o /dev/null \
		-e trace=$TRACED "$BENCH" "${args[@]}" ;;
	seccomp-allow) timed "$mode.$i" "$BENCH" "${args[@]}" --seccomp-allow ;;
	*) fail "unknown mode $mode (--modes: native optd strace strace-seccomp seccomp-allow)" ;;
	esac
}

if [[ " $PARTS " == *" syscalls "* ]]; then
	read -r -a modes <<<"$MODES"
	[[ ${modes[0]:-} == native ]] || fail "--modes must start with native"
	if [[ " $MODES " == *" strace"* ]]; then
		command -v strace >/dev/null || skip "strace is not installed"
	fi
	unsupported=
	if [[ " $MODES " == *" strace-seccomp "* ]] &&
		! strace -f -qq --seccomp-bpf -o /dev/null -e trace=$TRACED true 2>/dev/null; then
		unsupported="strace --seccomp-bpf: not supported by this strace ($(strace -V | head -n 1))"
		modes=("${modes[@]/strace-seccomp/}")
	fi
	: >"$T/times"
	for ((i = 1; i <= ROUNDS; i++)); do
		for mode in "${modes[@]}"; do
			[[ -n $mode ]] && syscalls_run "$mode" "$i"
		done
	done
	echo
	echo "Syscall-heavy target, no colliding request: $SYSCALL_ITERS iterations of 8 syscalls," \
		"$ROUNDS rounds of \"${modes[*]}\" interleaved; per-round ratio to native (median, min, max)"
	echo
	[[ -z $unsupported ]] || echo "$unsupported"
	"$PY" - "$T" "$ROUNDS" <<'PYEOF' || fail "syscalls: see above"
import json, os, statistics, sys
t, rounds = sys.argv[1], int(sys.argv[2])
runs, kinds = {}, []
for line in open(t + "/times"):
    name, wall, loop, csum = line.split()
    kind, i = name.rsplit(".", 1)
    runs[(kind, int(i))] = (int(wall), int(loop), csum)
    if kind not in kinds:
        kinds.append(kind)
sums = {v[2] for v in runs.values()}
if len(sums) != 1:
    sys.exit("syscalls: the checksums differ: %s" % sorted((k, v[2]) for k, v in runs.items()))
label = {"optd": "optd run --relocate=none", "strace": "strace -f",
         "strace-seccomp": "strace -f --seccomp-bpf", "seccomp-allow": "allow-all filter of its own"}
print("| command | wall / native median | min | max | loop / native median | min | max |")
print("|---|---:|---:|---:|---:|---:|---:|")
native = [runs[("native", i)] for i in range(1, rounds + 1)]
print("| native (wall %.3f s, loop %.3f s: medians) | 1 | | | 1 | | |" % (
    statistics.median(n[0] for n in native) / 1e9, statistics.median(n[1] for n in native) / 1e9))
med = {}
for k in kinds[1:]:
    row = []
    for col in (0, 1):
        r = [runs[(k, i)][col] / runs[("native", i)][col] for i in range(1, rounds + 1)]
        med[(k, col)] = statistics.median(r)
        row += [statistics.median(r), min(r), max(r)]
    print("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |" % ((label[k],) + tuple(row)))
if "optd" in kinds:
    traps = [json.load(open("%s/s%d.json" % (t, i)))["traps"]["total"] for i in range(1, rounds + 1)]
    print()
    # The one trap is the dynamic loader's, before main: not the loop's.
    print("optd traps per run: %s" % " ".join(str(x) for x in traps))
    print("goal (optd <= 2%% over native, median of the per-round wall ratios): %s (%+.1f%%)" % (
        "met" if med[("optd", 0)] <= 1.02 else "not met", (med[("optd", 0)] - 1) * 100))
    if max(traps) > 1:
        sys.exit("syscalls: optd trapped %d requests; the loop's must stay clear of the window"
                 % max(traps))
PYEOF
fi
