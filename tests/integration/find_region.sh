#!/bin/bash
# find_region: the tool the other tests trust, checked without optd.
#
# A python3 process makes anonymous mappings that begin with the region
# magic: one r-x, one PROT_NONE (find-region must read it through
# /proc/PID/mem), one named with PR_SET_VMA_ANON_NAME where the kernel has
# it, one split by the kernel in two (MADV_HUGEPAGE on its second half, as
# optd does on its code area) and one split by permissions; and one with the
# magic not at its start. find-region lists exactly the first five, each
# split one as one line over its header's size, with maps' permissions, and
# --header shows the header's fields; once they are unmapped it finds none
# (status 1); for a pid that does not exist it says so (status 2).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
need_targets find-region
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || skip "$PYTHON is not installed"

FAKE='
import ctypes, mmap, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
RW, RX, RO, NONE = 3, 5, 1, 0
ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
MAP_FIXED, MADV_HUGEPAGE = 0x10, 14
slot, hole, count = 128 << 10, 4096, 6

# Lay them out with an unmapped page between neighbours so that the kernel
# cannot merge two of them into one mapping.
area = libc.mmap(None, count * (slot + hole), NONE, ANON, -1, 0)
libc.munmap(ctypes.c_void_p(area), count * (slot + hole))

def fake(i, prot, size, offset=0, name=None, split=None):
    a = libc.mmap(area + i * (slot + hole), size, RW, ANON | MAP_FIXED, -1, 0)
    hdr = b"optd-rgn" + struct.pack("<IIQQ", 1, 128, a, size)
    ctypes.memmove(a + offset, hdr, len(hdr))
    if name is not None:  # PR_SET_VMA, PR_SET_VMA_ANON_NAME; may be missing
        libc.prctl(0x53564D41, 0, ctypes.c_ulong(a), ctypes.c_ulong(size),
                   ctypes.c_char_p(name))
    libc.mprotect(ctypes.c_void_p(a), ctypes.c_size_t(size), prot)
    if split == "huge":
        libc.madvise(ctypes.c_void_p(a + size // 2), ctypes.c_size_t(size // 2), MADV_HUGEPAGE)
    elif split is not None:
        libc.mprotect(ctypes.c_void_p(a + size // 2), ctypes.c_size_t(size // 2), split)
    return a, size

maps = [fake(0, RX, 64 << 10), fake(1, NONE, 64 << 10), fake(2, RX, 64 << 10, name=b"optd"),
        fake(3, RX, slot, split="huge"), fake(4, RX, slot, split=RO),
        fake(5, RX, 64 << 10, offset=4096)]
os.write(3, b"ready %d %s\n" % (os.getpid(),
         " ".join("%x-%x" % (a, a + size) for a, size in maps[:5]).encode()))
os.read(0, 1)
for a, size in maps:
    libc.munmap(ctypes.c_void_p(a), ctypes.c_size_t(size))
os.write(3, b"unmapped %d\n" % os.getpid())
os.read(0, 1)
'

start fake "$PYTHON" -c "$FAKE"
R='([0-9a-f]+-[0-9a-f]+)'
expect_event fake "^ready ([0-9]+) $R $R $R $R $R\$"
P=${BASH_REMATCH[1]}
rx=${BASH_REMATCH[2]} none=${BASH_REMATCH[3]} named=${BASH_REMATCH[4]}
huge=${BASH_REMATCH[5]} mixed=${BASH_REMATCH[6]}
! grep -q "^$huge " /proc/"$P"/maps || log "(the kernel did not split the MADV_HUGEPAGE mapping)"
want=$(printf '%s\n' "$rx r-xp" "$none ---p" "$named r-xp" "$huge r-xp" "$mixed r-xp,r--p" | sort)
find_region "$P"
expect_eq "find-region status" "$RC" 0
expect_eq "find-region's list" "$(printf '%s\n' "$REGION_LINES" | sort)" "$want"
line=$("$TGT_DIR/find-region" --header "$P" | grep "^$rx ")
expect_eq "find-region --header" "$line" \
	"$rx r-xp base=0x${rx%-*} size=0x10000 version=1 owner=0 generation=0"
ok "five fake regions found (two of them split), the one with the magic elsewhere not"

release fake
expect_event fake '^unmapped '
expect_no_region "$P" "after munmap"
finish fake
expect_eq "python's exit status" "$STATUS" 0

"$TGT_DIR/find-region" $(($(cat /proc/sys/kernel/pid_max) + 1)) 2>/dev/null
expect_eq "find-region on a pid that does not exist" "$?" 2
ok "no region: 1; no process: 2"
