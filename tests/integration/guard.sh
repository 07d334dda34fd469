#!/bin/bash
# guard: the target's own address-space requests that collide with optd's
# region get exactly the native result under optd (DESIGN.md, "The guard").
#
# For each kind of request (tests/targets/collide.c) the driver picks the
# range [ADDR, ADDR+LEN) where the request lands, runs `collide KIND ADDR
# LEN` natively (twice: its output must not vary), then under
# `optd run --arena-at=ADDR --region-size=LEN --relocate=all`, so that
# optd's region, holding the program's relocated code, sits exactly where
# the program is about to ask. The output and the exit status must equal the
# native run's, and the statistics must show the collision
# (collisions.<kind>, collisions.total, traps.colliding, region.moves all at
# least 1). Requests that fail natively for their own reasons (`fails`) must
# fail the same way; they need not count as collisions. A program with a
# SECCOMP_RET_TRACE filter of its own (`ownfilter`) sees the syscalls it
# traces fail with ENOSYS, as with no tracer, even the one aimed at the
# region. One kind runs again with --no-seccomp (`noseccomp`), and one
# (`partial`: threads in copies) with a request for two pages among the
# copies, of which only those pages, widened to whole copies, move: the
# region ends up in 3 pieces. A C++ program's heap grows into the
# region after exceptions were thrown through relocated frames (`cxxthrow`).
# A vfork child's request collides with the region of the address space it
# borrows, while its parent is blocked in vfork inside relocated code
# (`vfork`). Another thread of a parent blocked in vfork collides while the
# vfork child waits in a read inside relocated code: the child must be
# stopped and its stack fixed too, and the blocked thread must not be
# waited for (`vfork_thread`). A vfork child pushes the region out of its
# window while its parent is blocked: the parent, for which no thread of
# its own can install a filter meanwhile, must still get the new window
# (guard.filters 2), and its request at the region's new place must be
# trapped (`vfork_wide`). A program uses up the kernel's room for seccomp
# filters, then pushes the region out of its window: optd must fall back to
# PTRACE_SYSCALL with one warning (guard.mode "ptrace_syscall") and still
# trap a request at the region's new place (`budget`). For these two kinds
# the region's new place, ADDR2, is learned from a first run under optd
# without it.
#
# Everything runs under `setarch -R` (no address-space randomisation), so
# that the layout `collide layout` reports natively is the layout of every
# run:
#	most kinds	ADDR = the executable's start + 1 GiB, rounded up to
#			2 MiB: free, far from the heap's and the stack's
#			growth, and within rel32 reach of the executable, so
#			that --relocate=all copies the program's functions;
#	brk		ADDR = the initial break + 4 pages (collide does not
#			allocate before it grows the break), so that the heap
#			grows into the region;
#	stack		ADDR = the stack's top - 4 MiB: in the growth area below
#			RLIMIT_STACK, more than 1 MiB below the stack's current
#			bottom (the region is out of rel32 reach of the
#			executable there, so nothing is relocated: only the
#			region's pages move);
#	LEN = 1 MiB throughout.
#
# GUARD_KINDS="mmap_fixed brk ..." runs only those kinds (default: all of
# them, in the order of ALL_KINDS below). GUARD_TIMEOUT bounds one run under
# optd (default 20 s). Every kind runs even when an earlier one failed; the
# failures are listed at the end.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets collide
command -v setarch >/dev/null || skip "setarch is not installed (util-linux)"
setarch -R true 2>/dev/null || skip "setarch -R fails here: cannot turn address-space randomisation off"

COLLIDE=$TGT_DIR/collide
ALL_KINDS=(mmap_fixed mmap_noreplace mmap_hint brk mremap_grow mremap_fixed mremap_dontunmap
	munmap mprotect madvise shmat stack threads signal fork vfork vfork_thread vfork_wide exec
	fails ownfilter all noseccomp budget partial)
read -r -a KINDS <<<"${GUARD_KINDS:-${ALL_KINDS[*]}}"
: "${GUARD_TIMEOUT:=20}"

# The kind of collision each kind of run must count (empty: none required).
declare -A COLLISION=(
	[mmap_fixed]=mmap [mmap_noreplace]=mmap [mmap_hint]=mmap [brk]=brk
	[mremap_grow]=mremap [mremap_fixed]=mremap [mremap_dontunmap]=mremap
	[munmap]=munmap [mprotect]=mprotect [madvise]=madvise [shmat]=shmat [stack]=stack
	[threads]=mmap [signal]=mmap [fork]=mmap [vfork]=mmap [vfork_thread]=mmap [vfork_wide]=mmap
	[exec]=mmap
	[fails]="" [ownfilter]=mmap [all]=mmap
	[noseccomp]=mmap [budget]=mmap [partial]=mmap
)
# A line each native run must print: proof that ADDR was chosen so that the
# request does what the kind is about (an extended regular expression).
declare -A NATIVE_SHOWS=(
	[mmap_fixed]='^mmap_fixed: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[mmap_noreplace]='^mmap_noreplace: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED_NOREPLACE\|ANON\) = \+0x0$'
	[mmap_hint]='^mmap_hint: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|ANON\) = hint$'
	[brk]='^brk: step [0-9]+: sbrk\(0x10000\) = \+0x1[0-9a-f]{5}, break \+0x2[0-9a-f]{5}$'
	[mremap_grow]='^mremap_grow: mremap\(-0x10000, 0x10000, 0x110000, 0\) = the same address$'
	[mremap_fixed]='^mremap_fixed: mremap\(elsewhere, 0x10000, 0x100000, MAYMOVE\|FIXED, \+0x0\) = \+0x0$'
	[mremap_dontunmap]='^mremap_dontunmap: mremap\(elsewhere, 0x10000, 0x10000, MAYMOVE\|FIXED\|DONTUNMAP, \+0x0\) = \+0x0$'
	[munmap]='^munmap: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED_NOREPLACE\|ANON\) = \+0x0$'
	[mprotect]='^mprotect: mprotect\(-0x1000, 0x101000, r--\) = -1 ENOMEM$'
	[madvise]='^madvise: madvise\(\+0x0, 0x100000, MADV_DONTNEED\) = -1 ENOMEM;'
	[shmat]='^shmat: shmat\(id, \+0x0, 0\) = \+0x0$|no System V shared memory'
	[stack]='^stack:   the deepest frame is below ADDR\+LEN yes, below ADDR no$'
	[threads]='^threads: thread 3: mismatches 0, result [0-9a-f]{16}$'
	[signal]='^signal: raise\(SIGUSR1\) returned; the handler ran yes$'
	[fork]='^fork parent: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[vfork]='^vfork child: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[vfork_thread]='^vfork thread: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[vfork_wide]='^vfork_wide: mmap\([-+]0x[0-9a-f]+, 0x100000, rw-, PRIVATE\|FIXED_NOREPLACE\|ANON\) = [-+]0x[0-9a-f]+$'
	[exec]='^mmap_fixed: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[fails]='^fails: shmat\(-1, \+0x0, 0\) = -1 EINVAL$'
	[ownfilter]='^ownfilter: mmap\(\+0x0, 0x100000, r--, PRIVATE\|FIXED\|ANON\) = -1 ENOSYS$'
	[all]='^== fork$'
	[noseccomp]='^mmap_fixed: mmap\(\+0x0, 0x100000, rw-, PRIVATE\|FIXED\|ANON\) = \+0x0$'
	[partial]='^threads: thread 3: mismatches 0, result [0-9a-f]{16}$'
	[budget]='^budget: mmap\([-+]0x[0-9a-f]+, 0x100000, rw-, PRIVATE\|FIXED_NOREPLACE\|ANON\) = [-+]0x[0-9a-f]+$'
)
for kind in "${KINDS[@]}"; do
	[[ -v COLLISION[$kind] ]] || fail "GUARD_KINDS: no kind '$kind' (kinds: ${ALL_KINDS[*]})"
done

# A stack limit that leaves room for the stack kind (the layout depends on
# it, so it is the same for every run).
ulimit -S -s 8192 2>/dev/null || log "cannot set the stack limit to 8 MiB; keeping $(ulimit -s) KiB"

# The layout, twice: without randomisation it does not change.
run layout setarch -R "$COLLIDE" layout
expect_eq "collide layout: exit status" "$STATUS" 0
run layout2 setarch -R "$COLLIDE" layout
cmp -s "$T/layout.out" "$T/layout2.out" ||
	skip "the layout changes from run to run even under setarch -R: $(diff "$T/layout.out" "$T/layout2.out" | tr '\n' ' ')"
declare -A L=()
while read -r key value; do
	L[$key]=$value
done <"$T/layout.out"
for key in brk exe stack_start stack_top stack_rlimit; do
	[[ -n ${L[$key]:-} ]] || fail "collide layout printed no $key: $(cat "$T/layout.out")"
done
log "layout: exe ${L[exe]}, brk ${L[brk]}, stack ${L[stack_start]}-${L[stack_top]}, RLIMIT_STACK ${L[stack_rlimit]}"

MIB=$((1 << 20))
# choose KIND: sets ADDR (hex, no 0x) and LEN for KIND, or returns 1 when
# the machine leaves no place for it.
choose() {
	local a len=$MIB
	case $1 in
	brk)
		a=$((L[brk] + 4 * 4096))
		;;
	stack)
		if [[ ${L[stack_rlimit]} != unlimited ]] && ((L[stack_rlimit] < 6 * MIB)); then
			return 1
		fi
		a=$((L[stack_top] - 4 * MIB))
		((L[stack_start] - (a + len) >= MIB)) || return 1
		;;
	*)
		a=$(((L[exe] + 1024 * MIB + 2 * MIB - 1) & ~(2 * MIB - 1)))
		;;
	esac
	printf -v ADDR '%x' "$a"
	LEN=$len
}

# check_optd KIND NATIVE: what the run of KIND under optd must show. Runs in
# a subshell: `fail` ends only the subshell.
check_optd() {
	local kind=$1 native=$2 json=$T/$1.json key=${COLLISION[$1]}
	same_result "$native" "$kind"
	[[ -s $json ]] || fail "$kind: optd wrote no statistics to $json"
	expect_json "$json" exit_status 0
	[[ -n $key ]] || return 0
	if grep -q 'no System V shared memory' "$T/$native.out"; then
		log "$kind: no System V shared memory here: only the output is compared"
		return 0
	fi
	at_least "$json" "collisions.$key" 1
	at_least "$json" collisions.total 1
	at_least "$json" traps.colliding 1
	at_least "$json" region.moves 1
	case $kind in
	ownfilter)
		# The stops of the program's own filter are not optd's traps: as many as mmap_fixed's.
		if [[ -s $T/mmap_fixed.json ]]; then
			expect_eq "ownfilter: traps.total against mmap_fixed's" \
				"$(json_get "$json" traps.total)" "$(json_get "$T/mmap_fixed.json" traps.total)"
		fi
		;;
	threads) at_least "$json" threads 5 ;;
	fork | vfork) at_least "$json" processes 2 ;;
	vfork_thread)
		at_least "$json" processes 2
		at_least "$json" threads 2
		;;
	vfork_wide)
		at_least "$json" processes 2
		expect_json "$json" guard.filters 2
		at_least "$json" collisions.mmap 2
		at_least "$json" region.moves 2
		;;
	exec) at_least "$json" exec_injections 1 ;;
	partial)
		at_least "$json" threads 5
		at_least "$json" region.pieces 3
		;;
	budget)
		# The first move needed a filter that did not fit; the second was trapped all the same.
		expect_json "$json" guard.mode '"ptrace_syscall"'
		expect_json "$json" guard.filters 1
		at_least "$json" collisions.mmap 2
		at_least "$json" region.moves 2
		expect_eq "budget: warnings about the filters' room" \
			"$(grep -c 'no room for another seccomp filter' "$T/$kind.err")" 1
		;;
	esac
}

need_optd
FAILED=()
for kind in "${KINDS[@]}"; do
	collide_kind=$kind
	opts=()
	if [[ $kind == noseccomp ]]; then
		collide_kind=mmap_fixed
		opts=(--no-seccomp)
	elif [[ $kind == partial ]]; then
		collide_kind=threads
	fi
	if ! choose "$collide_kind"; then
		log "$kind: no room for it here (RLIMIT_STACK ${L[stack_rlimit]}): not run"
		continue
	fi
	ARENA=$ADDR REGION_LEN=$LEN
	if [[ $kind == partial ]]; then
		# Two pages among the first copies: only they (widened to whole
		# copies) move, while the threads run in copies on both sides.
		printf -v ADDR '%x' $((0x$ARENA + 4096))
		LEN=8192
	fi
	CMD=("$COLLIDE" "$collide_kind" "$ADDR" "$LEN")
	if [[ $kind == vfork_wide || $kind == budget ]]; then
		# Where optd moves the region when it must leave its window: ADDR2.
		run "probe_$kind" timeout -k 2 "$GUARD_TIMEOUT" setarch -R "$OPTD" run --arena-at="$ADDR" \
			--region-size="$LEN" --relocate=all --stats="$T/probe_$kind.json" -- "${CMD[@]}"
		if ! addr2=$(json_get "$T/probe_$kind.json" region.address 2>/dev/null); then
			log "$kind: the first run under optd wrote no statistics"
			FAILED+=("$kind")
			continue
		fi
		if [[ $addr2 == "$((16#$ADDR))" ]]; then
			log "$kind: the region did not move in the first run under optd"
			FAILED+=("$kind")
			continue
		fi
		CMD+=("$(printf '%x' "$addr2")")
	fi

	# Natively: deterministic, exit 0, the range free at start, and the
	# request doing what the kind is about.
	run "native_$kind" setarch -R "${CMD[@]}"
	run "native2_$kind" setarch -R "${CMD[@]}"
	expect_eq "$kind natively: exit status" "${STATUS_OF[native_$kind]}" 0
	same_result "native_$kind" "native2_$kind"
	[[ ! -s $T/native_$kind.err ]] ||
		fail "$kind natively (ADDR 0x$ADDR): $(head -c 600 "$T/native_$kind.err")"
	grep -Eq "${NATIVE_SHOWS[$kind]}" "$T/native_$kind.out" ||
		fail "$kind natively (ADDR 0x$ADDR): no line matches '${NATIVE_SHOWS[$kind]}'"

	run "$kind" timeout -k 2 "$GUARD_TIMEOUT" setarch -R "$OPTD" run --arena-at="$ARENA" \
		--region-size="$REGION_LEN" --relocate=all "${opts[@]}" --stats="$T/$kind.json" -- "${CMD[@]}"
	if (check_optd "$kind" "native_$kind"); then
		ok "$kind at 0x$ADDR: as native; $(json_get "$T/$kind.json" collisions 2>/dev/null | tr -d ' ')"
	else
		[[ -s $T/$kind.err ]] && { log "--- optd's stderr for $kind (last lines):"; tail -n 5 "$T/$kind.err" >&2; }
		FAILED+=("$kind")
	fi
done
# C++: the heap grows into the region while libgcc holds its record of the
# copies' unwind information (already sorted by the exceptions before the
# growth). The move must carry the record, the FDEs and the sorted vector
# along: the exceptions, backtrace() and pthread_cancel after it work as
# natively. The region goes two pages above the heap the C++ runtime sets
# up before main (learned from a run stopped at its checkpoint).
if [[ " ${KINDS[*]} " == *" all "* ]]; then
	need_targets cxxthrow
	start cxxlayout setarch -R "$TGT_DIR/cxxthrow" --busy=1 --checkpoint=3
	expect_event cxxlayout '^ready ([0-9]+)$'
	heap_end=$(awk '/\[heap\]/ { split($1, a, "-"); print a[2] }' "/proc/${BASH_REMATCH[1]}/maps")
	close_stdin cxxlayout
	wait_exit cxxlayout
	[[ -n $heap_end ]] || fail "cxxthrow has no heap at its checkpoint"
	printf -v ADDR '%x' $((16#$heap_end + 2 * 4096))
	run native_cxx setarch -R "$TGT_DIR/cxxthrow" --grow=4096
	run cxx timeout -k 2 "$GUARD_TIMEOUT" setarch -R "$OPTD" run --arena-at="$ADDR" \
		--region-size=1M --relocate=all --stats="$T/cxx.json" -- "$TGT_DIR/cxxthrow" --grow=4096
	if (
		same_result native_cxx cxx
		at_least "$T/cxx.json" functions.relocated 5
		at_least "$T/cxx.json" collisions.brk 1
		at_least "$T/cxx.json" region.moves 1
		# Only the pages the heap grew into moved: the data page with
		# libgcc's record stayed, and the record followed the FDEs.
		at_least "$T/cxx.json" region.pieces 2
	); then
		ok "cxxthrow: the heap grew into the region at 0x$ADDR; exceptions after the move as native"
	else
		FAILED+=(cxxthrow)
	fi
fi
((${#FAILED[@]} == 0)) || fail "${#FAILED[@]} of ${#KINDS[@]} kinds differ under optd: ${FAILED[*]}"
ok "${#KINDS[@]} kinds: every request got its native result under optd"
