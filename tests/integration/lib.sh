# lib.sh: what the integration drivers share. Source it first thing:
#	. "$(dirname "$0")/lib.sh"
#
# Environment (CMake passes them; run by hand, the defaults fit a build in
# build/ of the source tree):
#	OPTD		optd's binary (default: build/daemon/optd)
#	TGT_DIR		the built tests/targets (default: build/tests/targets)
#	PY		a python3 for JSON (default: /usr/bin/python3)
#	EV_TIMEOUT	seconds to wait for one line from a process: only a
#			safety bound, nothing waits for time (default: 60)
#	KEEP=1		keep the scratch folder and say where it is
#
# How a driver talks to its processes. `start NAME CMD...` runs CMD in the
# background with
#	stdin	the FIFO $T/NAME.ctl, held open for writing by the driver:
#		`release NAME` writes one byte (lets one checkpoint go),
#		`close_stdin NAME` closes it (end of file: lets all go);
#	fd 3	the FIFO $T/NAME.ev, read by the driver: the targets' events
#		(tests/targets/tgt.h), read with `expect_event NAME REGEX`;
#	stdout	$T/NAME.out;
#	stderr	$T/NAME.err, or with `start -E` a FIFO whose lines the driver
#		reads with `expect_err NAME REGEX` (and copies to $T/NAME.err);
# and no other fd of the driver. `wait_exit NAME` reads both FIFOs to their
# end and reaps the process into STATUS. A read that ends early (the process
# died) fails the test at once; only a hung process meets EV_TIMEOUT.
#
# Exit statuses: 0 pass, 1 fail, 77 skip (the machine lacks something).

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${OPTD:=$ROOT/build/daemon/optd}"
: "${TGT_DIR:=$ROOT/build/tests/targets}"
: "${PY:=/usr/bin/python3}"
: "${EV_TIMEOUT:=60}"
TEST_NAME=$(basename "$0" .sh)

T=$(mktemp -d "${TMPDIR:-/tmp}/optd-$TEST_NAME.XXXXXX") || exit 1
declare -A PID=() CTL=() EV=() ERR=() STATUS_OF=()
ALL_PIDS=()
STATUS=
REGION_START='' REGION_END='' REGION_PERMS=''

log() {
	printf '%s: %s\n' "$TEST_NAME" "$*" >&2
}

fail() {
	log "FAIL: $*"
	exit 1
}

skip() {
	log "SKIP: $*"
	exit 77
}

ok() {
	log "ok: $*"
}

# Kills @1 and every process below it, the deepest first.
kill_tree() {
	local pid=$1 child children
	children=$(cat /proc/"$pid"/task/*/children 2>/dev/null)
	for child in $children; do
		kill_tree "$child"
	done
	kill -KILL "$pid" 2>/dev/null
}

cleanup() {
	local status=$? pid
	trap - EXIT
	for pid in "${ALL_PIDS[@]}"; do
		kill_tree "$pid"
	done
	wait 2>/dev/null
	if [[ ${KEEP:-0} = 1 || $status -ne 0 && $status -ne 77 ]]; then
		log "scratch files kept in $T"
	else
		rm -rf "$T"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM HUP

need_optd() {
	[[ -x $OPTD ]] || fail "optd is not built ($OPTD)"
}

need_targets() {
	local t
	for t in "$@"; do
		[[ -x $TGT_DIR/$t ]] || fail "target $t is not built in $TGT_DIR"
	done
}

# The body of a started process: close every fd of the driver but 0-3,
# then become the command.
_exec_clean() {
	local fd
	for fd in /proc/"$BASHPID"/fd/*; do
		fd=${fd##*/}
		((fd > 3)) && eval "exec $fd>&-" 2>/dev/null
	done
	exec "$@"
}

# start [-E] NAME CMD...: see the top of this file. Sets PID[NAME].
start() {
	local with_err=0 name fd
	if [[ $1 = -E ]]; then
		with_err=1
		shift
	fi
	name=$1
	shift
	[[ -z ${PID[$name]:-} ]] || fail "start: $name was already started"
	mkfifo "$T/$name.ctl" "$T/$name.ev" || fail "mkfifo"
	exec {fd}<>"$T/$name.ctl"
	CTL[$name]=$fd
	if ((with_err)); then
		mkfifo "$T/$name.errfifo" || fail "mkfifo"
		(_exec_clean "$@") <"$T/$name.ctl" 3>"$T/$name.ev" >"$T/$name.out" \
			2>"$T/$name.errfifo" &
	else
		(_exec_clean "$@") <"$T/$name.ctl" 3>"$T/$name.ev" >"$T/$name.out" \
			2>"$T/$name.err" &
	fi
	PID[$name]=$!
	ALL_PIDS+=("$!")
	# These opens meet the process's own opens of the FIFOs' other ends.
	exec {fd}<"$T/$name.ev"
	EV[$name]=$fd
	if ((with_err)); then
		exec {fd}<"$T/$name.errfifo"
		ERR[$name]=$fd
		: >"$T/$name.err"
	fi
}

# _expect_line NAME KIND FD REGEX: reads lines from FD until one matches.
_expect_line() {
	local name=$1 kind=$2 fd=$3 re=$4 line rc
	while :; do
		IFS= read -r -t "$EV_TIMEOUT" -u "$fd" line
		rc=$?
		if ((rc > 128)); then
			_explain "$name"
			fail "$name: no $kind line matching '$re' within ${EV_TIMEOUT}s"
		elif ((rc != 0)); then
			_explain "$name"
			fail "$name: its $kind ended before a line matching '$re'"
		fi
		printf '%s\n' "$line" >>"$T/$name.$kind"
		if [[ $line =~ $re ]]; then
			LINE=$line
			return 0
		fi
	done
}

# Shows what a process said, for a failure's context.
_explain() {
	local name=$1 f
	for f in "$T/$name.err" "$T/$name.out"; do
		[[ -s $f ]] || continue
		log "--- ${f##*/} (last lines):"
		tail -n 5 "$f" >&2
	done
}

# expect_event NAME REGEX: waits for an event line matching REGEX; sets LINE
# and BASH_REMATCH.
expect_event() {
	_expect_line "$1" events "${EV[$1]}" "$2"
}

# expect_err NAME REGEX: the same on the stderr of a `start -E` process.
expect_err() {
	[[ -n ${ERR[$1]:-} ]] || fail "expect_err: $1 was not started with -E"
	_expect_line "$1" err "${ERR[$1]}" "$2"
}

release() {
	printf x >&"${CTL[$1]}" || fail "release $1: cannot write its stdin"
}

close_stdin() {
	local fd=${CTL[$1]:-}
	if [[ -n $fd ]]; then
		exec {fd}>&-
		CTL[$1]=
	fi
}

# _drain NAME KIND FD: copies what is left in FD to $T/NAME.KIND, to its end.
_drain() {
	local name=$1 kind=$2 fd=$3 line rc
	while :; do
		IFS= read -r -t "$EV_TIMEOUT" -u "$fd" line
		rc=$?
		((rc == 0)) || break
		printf '%s\n' "$line" >>"$T/$name.$kind"
	done
	if ((rc > 128)); then
		_explain "$name"
		fail "$name: its $kind did not end within ${EV_TIMEOUT}s of the last line"
	fi
	# a last line without a newline
	[[ -z $line ]] || printf '%s\n' "$line" >>"$T/$name.$kind"
	exec {fd}<&-
}

# wait_exit NAME: waits for the process to end (through the end of its
# events and stderr FIFOs first, which its whole tree shares); sets STATUS
# and STATUS_OF[NAME].
wait_exit() {
	local name=$1
	if [[ -n ${EV[$name]:-} ]]; then
		_drain "$name" events "${EV[$name]}"
		EV[$name]=
	fi
	if [[ -n ${ERR[$name]:-} ]]; then
		_drain "$name" err "${ERR[$name]}"
		ERR[$name]=
	fi
	wait "${PID[$name]}" 2>/dev/null # no "Killed" from bash: the caller judges
	STATUS=$?
	STATUS_OF[$name]=$STATUS
	close_stdin "$name"
}

# finish NAME: end of file on its stdin (every checkpoint goes), then wait_exit.
finish() {
	close_stdin "$1"
	wait_exit "$1"
}

# run NAME CMD...: runs CMD to its end with no one answering checkpoints.
run() {
	local name=$1
	shift
	start "$name" "$@"
	finish "$name"
}

# describe_status N: "3", or "139 (signal 11, SEGV)".
describe_status() {
	if (($1 > 128 && $1 < 128 + 65)); then
		printf '%s (signal %s, %s)\n' "$1" "$(($1 - 128))" "$(kill -l "$1" 2>/dev/null)"
	else
		printf '%s\n' "$1"
	fi
}

# same_result A B: A and B printed the same and ended with the same status.
same_result() {
	local a=$1 b=$2 problems=()
	[[ -s $T/$a.out ]] || fail "$a printed nothing"
	if [[ ${STATUS_OF[$b]} != "${STATUS_OF[$a]}" ]]; then
		problems+=("exit status $(describe_status "${STATUS_OF[$b]}")," \
			"$a's was $(describe_status "${STATUS_OF[$a]}")")
	fi
	if ! cmp -s "$T/$a.out" "$T/$b.out"; then
		diff -u "$T/$a.out" "$T/$b.out" | head -n 40 >&2
		problems+=("printed something else than $a (diff above)")
	fi
	((${#problems[@]} == 0)) || fail "$b: ${problems[*]}"
}

expect_eq() {
	[[ $2 == "$3" ]] || fail "$1: got '$2', expected '$3'"
}

# find_region PID: runs find-region; sets REGION_LINES and its status in RC.
find_region() {
	REGION_LINES=$("$TGT_DIR/find-region" "$1" 2>"$T/find-region.err")
	RC=$?
}

# expect_region PID WHAT: exactly one region, r-x (see below); sets REGION_START,
# REGION_END (hex without 0x) and REGION_PERMS.
expect_region() {
	local pid=$1 what=$2 n
	find_region "$pid"
	((RC == 0)) || fail "$what: find-region $pid found no region (status $RC)" \
		"$(cat "$T/find-region.err")"
	n=$(printf '%s\n' "$REGION_LINES" | wc -l)
	((n == 1)) || fail "$what: $n regions in $pid: $REGION_LINES"
	[[ $REGION_LINES =~ ^([0-9a-f]+)-([0-9a-f]+)\ ([^ ]+)$ ]] ||
		fail "$what: find-region said '$REGION_LINES'"
	REGION_START=${BASH_REMATCH[1]} REGION_END=${BASH_REMATCH[2]}
	REGION_PERMS=${BASH_REMATCH[3]}
	# r-x; its last page read-write (never executable) once the copies'
	# unwind information is registered with the target's libgcc.
	[[ $REGION_PERMS == r-xp || $REGION_PERMS == r-xp,rw-p ]] ||
		fail "$what: the region's permissions are $REGION_PERMS, not r-xp (or r-xp,rw-p)"
}

# expect_no_region PID WHAT
expect_no_region() {
	find_region "$1"
	((RC == 1)) || fail "$2: find-region $1 says (status $RC): $REGION_LINES"
}

# tracer_of PID: prints the TracerPid of PID.
tracer_of() {
	awk '/^TracerPid:/ { print $2 }' /proc/"$1"/status 2>/dev/null
}

# state_of PID: prints the state letter from /proc/PID/stat.
state_of() {
	local stat
	stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	stat=${stat##*) }
	printf '%s\n' "${stat%% *}"
}

# expect_tracer_of_all PID WANT WHAT: every thread of PID has TracerPid WANT.
expect_tracer_of_all() {
	local pid=$1 want=$2 what=$3 task tracer
	for task in /proc/"$pid"/task/*; do
		tracer=$(awk '/^TracerPid:/ { print $2 }' "$task/status" 2>/dev/null) || continue
		[[ -z $tracer || $tracer == "$want" ]] ||
			fail "$what: thread ${task##*/} of $pid is traced by $tracer, expected $want"
	done
}

# json_get FILE KEY.PATH: prints the value (JSON text; null for null).
json_get() {
	"$PY" - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
for k in sys.argv[2].split('.'):
    if not isinstance(d, dict) or k not in d:
        sys.exit('%s: no key %s' % (sys.argv[1], sys.argv[2]))
    d = d[k]
print(json.dumps(d))
EOF
}

# expect_json FILE KEY.PATH WANT: the value's JSON text is WANT.
expect_json() {
	local got
	got=$(json_get "$1" "$2") || fail "stats ${1##*/}: cannot read $2"
	expect_eq "stats ${1##*/}: $2" "$got" "$3"
}

# remove_new_perf_maps_at_exit: at exit, remove the /tmp/perf-PID.map files
# that appeared since the call (relocated processes leave them for perf).
# Tests that run at once (ctest -j) each hold a shared lock meanwhile, and
# one removes maps only when it finds itself alone: a map never disappears
# under another test that checks it. When others still run, the maps stay.
remove_new_perf_maps_at_exit() {
	shopt -s nullglob
	PERF_MAPS_BEFORE=(/tmp/perf-*.map)
	exec {PERF_LOCK_FD}>>/tmp/optd-tests-perf-maps.lock
	flock -s "$PERF_LOCK_FD"
	# cleanup takes the script's status from $?: keep it across the removal.
	trap 'rc=$?; _remove_new_perf_maps; (exit "$rc"); cleanup' EXIT
}

_remove_new_perf_maps() {
	local m old keep
	flock -x -n "$PERF_LOCK_FD" || return 0
	for m in /tmp/perf-*.map; do
		keep=0
		for old in "${PERF_MAPS_BEFORE[@]}"; do
			[[ $m == "$old" ]] && keep=1
		done
		((keep)) || rm -f "$m"
	done
}

# at_least FILE KEY.PATH N: the statistics value is a count >= N.
at_least() {
	local got
	got=$(json_get "$1" "$2") || fail "stats ${1##*/}: cannot read $2"
	[[ $got =~ ^[0-9]+$ ]] || fail "stats ${1##*/}: $2 is '$got', not a count"
	((got >= $3)) || fail "stats ${1##*/}: $2 is $got, expected at least $3"
}

# expect_json_number FILE KEY.PATH: the value is a number >= 0.
expect_json_number() {
	local got
	got=$(json_get "$1" "$2") || fail "stats ${1##*/}: cannot read $2"
	[[ $got =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
		fail "stats ${1##*/}: $2 is '$got', not a number >= 0"
}

# expect_stats_region FILE START_HEX END_HEX: region.address, bytes, pages
# and moves describe the mapping START-END.
expect_stats_region() {
	local file=$1 start=$((16#$2)) end=$((16#$3))
	expect_json "$file" region.address "$start"
	expect_json "$file" region.bytes "$((end - start))"
	expect_json "$file" region.pages "$(((end - start) / 4096))"
	expect_json "$file" region.moves 0
	expect_json_number "$file" region.huge_pages
}

# optd_attach NAME PID [OPTION...]: `optd --pid PID OPTION...` as NAME, up
# to its "attached" line. Sets ATT_START, ATT_END (hex without 0x), ATT_KIB.
ATTACHED_RE='^optd: attached to ([0-9]+): region 0x([0-9a-f]+)-0x([0-9a-f]+) r-x \(([0-9]+) KiB\)$'
optd_attach() {
	local name=$1 pid=$2
	shift 2
	start -E "$name" "$OPTD" --pid "$pid" "$@"
	expect_err "$name" "$ATTACHED_RE|^optd: "
	[[ $LINE =~ $ATTACHED_RE ]] || fail "$name: optd --pid $pid said: $LINE"
	expect_eq "$name: the pid in the attached line" "${BASH_REMATCH[1]}" "$pid"
	ATT_START=${BASH_REMATCH[2]} ATT_END=${BASH_REMATCH[3]} ATT_KIB=${BASH_REMATCH[4]}
	expect_eq "$name: KiB in the attached line" "$ATT_KIB" \
		"$(((16#$ATT_END - 16#$ATT_START) / 1024))"
}

# optd_detach NAME [SIGNAL]: SIGINT (or SIGNAL) to optd; it must exit 0.
optd_detach() {
	local name=$1 sig=${2:-INT}
	kill -"$sig" "${PID[$name]}" || fail "$name: optd is gone before detach"
	wait_exit "$name"
	expect_eq "$name: optd's exit status after SIG$sig" "$STATUS" 0
}

# send_line NAME [TEXT]: one line on NAME's stdin.
send_line() {
	printf '%s\n' "${2:-x}" >&"${CTL[$1]}" || fail "send_line $1: cannot write its stdin"
}

# ppid_of PID
ppid_of() {
	local stat fields
	stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	read -r -a fields <<<"${stat##*) }"
	printf '%s\n' "${fields[1]}"
}

# expect_json_number_or_null FILE KEY.PATH
expect_json_number_or_null() {
	local got
	got=$(json_get "$1" "$2") || fail "stats ${1##*/}: cannot read $2"
	[[ $got == null || $got =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
		fail "stats ${1##*/}: $2 is '$got', not a number >= 0 or null"
}

# expect_header PID OWNER: the header of PID's region names OWNER and
# describes the mapping REGION_START-REGION_END (run expect_region first).
expect_header() {
	local pid=$1 owner=$2 line re
	line=$("$TGT_DIR/find-region" --header "$pid") || fail "find-region --header $pid"
	re="^$REGION_START-$REGION_END r-xp base=0x([0-9a-f]+) size=0x([0-9a-f]+) version=([0-9]+) owner=([0-9]+) generation=[0-9]+$"
	[[ $line =~ $re ]] || fail "header of the region in $pid: $line"
	expect_eq "header base" "${BASH_REMATCH[1]}" "$REGION_START"
	expect_eq "header size" "$((16#${BASH_REMATCH[2]}))" "$((16#$REGION_END - 16#$REGION_START))"
	expect_eq "header version" "${BASH_REMATCH[3]}" 1
	expect_eq "header owner" "${BASH_REMATCH[4]}" "$owner"
}

# expect_one_optd_line FILE WHAT: FILE is exactly one line, starting "optd: ".
expect_one_optd_line() {
	local n
	n=$(wc -l <"$1")
	((n == 1)) || fail "$2: $n lines on stderr, expected one: $(head -c 600 "$1")"
	grep -q '^optd: ' "$1" || fail "$2: the stderr line does not start with 'optd: ': $(cat "$1")"
}

# expect_alive NAME WHAT: NAME is still running; if not, says how it ended.
expect_alive() {
	local name=$1 what=$2 pid=${PID[$1]} st
	st=$(state_of "$pid")
	[[ -n $st && $st != [ZX] ]] && return 0
	wait_exit "$name"
	if ((STATUS > 128)); then
		fail "$what: $name ($pid) died of signal $((STATUS - 128)) ($(kill -l "$STATUS" 2>/dev/null))"
	fi
	fail "$what: $name ($pid) exited with status $STATUS"
}

# expect_maps_reserved WHAT BEFORE AFTER JSON [own]: /proc/PID/maps after
# a `--pid` detach (AFTER) is BEFORE but for the guard's reservations: every
# line of BEFORE is still there, and every new line is a private anonymous
# PROT_NONE mapping ("---p 00000000 00:00 0") that lies inside a window of
# guard.windows and is exactly one of guard.reserved in optd's statistics
# JSON, which lists no range missing from AFTER. When a filter was
# installed, the region's former place is among the reserved ranges.
# With "own", for a target that maps memory of its own meanwhile (malloc
# arenas of new threads), new and changed anonymous lines outside every
# window are let be.
expect_maps_reserved() {
	local what=$1 problem
	problem=$("$PY" - "$2" "$3" "$4" "${5:-}" 2>&1 <<'PYEOF'
import collections, json, sys
before, after, stats, own = sys.argv[1:5]
b = collections.Counter(open(before).read().splitlines())
a = collections.Counter(open(after).read().splitlines())
with open(stats) as f:
    d = json.load(f)
g = d['guard']
windows = [tuple(w) for w in g['windows']]
reserved = set(tuple(r) for r in g['reserved'])
def outside_windows(line):
    f = line.split()
    s, e = (int(x, 16) for x in f[0].split('-'))
    return len(f) == 5 and not any(s < we and ws < e for ws, we in windows)
gone = b - a
if own == 'own':
    # The target's own anonymous memory outside the windows may change (a
    # malloc arena's reserve turning read-write as it grows).
    gone = collections.Counter({l: n for l, n in gone.items() if not outside_windows(l)})
if gone:
    sys.exit('lines gone after detach: %s' % '; '.join(sorted(gone)))
seen = set()
for line in sorted(a - b):
    f = line.split()
    if own == 'own' and len(f) >= 5:
        s, e = (int(x, 16) for x in f[0].split('-'))
        if not any(s < we and ws < e for ws, we in windows):
            continue
    if len(f) != 5 or f[1:] != ['---p', '00000000', '00:00', '0']:
        sys.exit('a new line is not a private anonymous PROT_NONE mapping: %s' % line)
    s, e = (int(x, 16) for x in f[0].split('-'))
    if not any(ws <= s and e <= we for ws, we in windows):
        sys.exit('%s lies outside every guarded window %s' % (f[0], windows))
    if (s, e) not in reserved:
        sys.exit('%s is not among the reserved ranges optd reported' % f[0])
    seen.add((s, e))
if reserved - seen:
    sys.exit('reserved ranges missing from the maps: %s' % sorted(reserved - seen))
if g['filters'] > 0:
    start = d['region']['address']
    end = start + d['region']['bytes']
    if not any(s <= start and end <= e for s, e in reserved):
        sys.exit('the region\'s former place %#x-%#x is not reserved' % (start, end))
PYEOF
	) || {
		diff -u "$2" "$3" >&2
		fail "$what: $problem"
	}
}
