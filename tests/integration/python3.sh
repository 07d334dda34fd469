#!/bin/bash
# python3: a real Debian program, /usr/bin/python3, under optd.
#
# `optd run -- python3 -c WORKLOAD` (pure-Python CPU work, hashlib and zlib
# from shared libraries it loads as it goes, a checkpoint in the middle):
# the region is in python's maps at the checkpoint; output and exit status
# equal the native run's.
# `optd --pid` on a python3 whose second thread spins while the first reads
# stdin: the region is there while attached and python keeps answering;
# after SIGINT the region is gone and nothing traces it; output and exit
# status equal the native run's.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets find-region
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || skip "$PYTHON is not installed"

WORKLOAD='
import hashlib, json, os, sys, zlib

def checkpoint(name):
    os.write(3, b"checkpoint %s %d\n" % (name.encode(), os.getpid()))
    os.read(0, 1)

def primes(n):
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\0\0"
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n + 1, i)))
    return sum(sieve)

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

state = 12345
def rand():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return state >> 33

print("primes", primes(300000))
print("fib", fib(22))
data = [rand() for _ in range(50000)]
print("sorted", sorted(data)[::10000])
checkpoint("mid")
blob = json.dumps({"k%d" % i: data[i] for i in range(2000)}, sort_keys=True).encode()
print("sha256", hashlib.sha256(blob).hexdigest())
print("crc32", zlib.crc32(zlib.compress(blob)))
words = {}
for i, x in enumerate(data):
    words.setdefault(x % 97, []).append(i)
print("buckets", sorted((k, len(v)) for k, v in words.items())[:5])
sys.exit(5)
'

BUSY='
import os, sys, threading

stop = False
def spin():
    x = 1
    while not stop:
        x = (x * 48271) % 2147483647
threading.Thread(target=spin).start()
os.write(3, b"ready %d\n" % os.getpid())
n = 0
for line in sys.stdin:
    n += 1
    print("tick", n, sum(i * i for i in range(10000 * n)), flush=True)
    os.write(3, b"tick %d %d\n" % (n, os.getpid()))
stop = True
print("busy python: %d ticks" % n)
'

run native "$PYTHON" -c "$WORKLOAD"
expect_eq "native exit status" "$STATUS" 5

# tick NAME: one line to the busy python; waits until it has answered.
tick() {
	send_line "$1"
	expect_event "$1" '^tick [0-9]+ [0-9]+$'
}

start native_busy "$PYTHON" -c "$BUSY"
expect_event native_busy '^ready [0-9]+$'
tick native_busy
tick native_busy
tick native_busy
finish native_busy
need_optd

start opt "$OPTD" run --stats="$T/opt.json" -- "$PYTHON" -c "$WORKLOAD"
expect_event opt '^checkpoint mid ([0-9]+)$'
tpid=${BASH_REMATCH[1]}
expect_region "$tpid" "optd run python3: at the checkpoint"
release opt
wait_exit opt
same_result native opt
expect_json "$T/opt.json" pid "$tpid"
expect_json "$T/opt.json" exit_status 5
ok "optd run -- python3"

start busy "$PYTHON" -c "$BUSY"
expect_event busy '^ready [0-9]+$'
P=${PID[busy]}
tick busy
optd_attach att "$P" --stats="$T/att.json"
expect_region "$P" "python3 while attached"
expect_eq "region start (maps against optd's line)" "$REGION_START" "$ATT_START"
tick busy
optd_detach att
expect_no_region "$P" "python3 after detach"
expect_tracer_of_all "$P" 0 "python3 after detach"
expect_json "$T/att.json" pid "$P"
expect_json "$T/att.json" exit_status null
expect_json "$T/att.json" threads 2
tick busy
finish busy
same_result native_busy busy
ok "optd --pid on a busy python3"
