/*
 * The guard's seccomp filter: a classic-BPF program that sends to the tracer
 * (SECCOMP_RET_TRACE, with INJ_SECCOMP_DATA as its data) exactly the syscalls
 * that can touch the guarded window [start, end), and lets everything else
 * through (SECCOMP_RET_ALLOW), the tracer's own tagged ones among them.
 * Building it is pure: no syscalls, no target access. Installing it in a
 * target (remotely, with SECCOMP_FILTER_FLAG_TSYNC) is the caller's business.
 *
 * Exact semantics. In what follows [a, a+n) is a byte range of args[] taken
 * as 64-bit unsigned numbers; it "intersects" when n != 0, a < end and
 * a + n > start, where a sum that passes 2^64 counts as greater than any
 * start (such a range intersects iff a < end). With a tag t != 0, munmap,
 * mprotect, madvise and mremap whose args[5] == t are allowed first,
 * whatever they ask: none of them reads that argument
 * (inj_seccomp_tagged()). Otherwise the filter returns
 * SECCOMP_RET_TRACE | INJ_SECCOMP_DATA iff
 *  - arch != AUDIT_ARCH_X86_64 (int $0x80 from a 64-bit process), or nr has
 *    __X32_SYSCALL_BIT set: both are traced without looking further;
 *  - nr is mmap, munmap, mprotect, pkey_mprotect, madvise, msync, mincore,
 *    mlock, munlock, mlock2, remap_file_pages, mbind, map_shadow_stack or
 *    mseal, and [args[0], args[0]+args[1]) intersects. Flags are not looked
 *    at (an mmap hint without MAP_FIXED counts as its range), and lengths are
 *    not rounded up to pages: the caller puts a page of margin into the window;
 *  - nr is mremap and [a0, a0+a1) intersects, or [a0, a0+a2) intersects
 *    (growing in place), or args[3] & MREMAP_FIXED and [a4, a4+a2) intersects
 *    (MREMAP_FIXED, and MREMAP_DONTUNMAP with a fixed address);
 *  - nr is brk, brk_start < end or brk_start == 0 (unknown), and
 *    args[0] + 4096 > start: the new break plus the page the kernel keeps free
 *    below the next mapping would reach the window (brk(0) is never traced
 *    when start > 4096);
 *  - nr is shmat, args[1] != 0 and args[1] < end (the segment's size is not
 *    visible to the filter);
 *  - nr is process_madvise (its ranges are behind a pointer).
 *
 * Why this is exact to the byte: cBPF registers are 32 bits wide, so every
 * 64-bit argument is read as two words (low word first: x86-64 is
 * little-endian), sums are done word by word with the carry propagated
 * through scratch memory, a carry out of the high word is caught, and
 * comparisons look at the high words first and at the low words only when
 * the high words are equal.
 *
 * Cost. Syscalls outside the list above are decided from arch and nr alone,
 * so the kernel's seccomp action cache (5.11+) allows them without running
 * the filter at all.
 *
 * The tag is how the tracer's own remote syscalls into the window (moving its
 * pages) get through without a seccomp stop of their own: the tracer puts it
 * in a register the kernel ignores for that syscall. A program's own call
 * carries whatever that register held, and is let through unguarded only if
 * that happens to equal a 64-bit value it cannot see.
 *
 * Limits. The kernel caps one filter at BPF_MAXINSNS (4096) instructions and
 * the filters of one thread (of the process, with TSYNC) at 32768 in total,
 * each filter already installed counting its length + 4 and the new one its
 * length; past that the install fails with ENOMEM. A process can so hold
 * about 32768 / (n + 4) filters of n instructions, fewer when it has filters
 * of its own. Beware that the length the kernel counts is that of its eBPF
 * translation, not n: a return, a conditional jump with two targets and a
 * constant >= 2^31 each cost one more. Without a tag, n is 144..150 and
 * the counted length 156..193 depending on the window (164 for a window at
 * 16 TiB). A tag adds 8 instructions (INJ_SECCOMP_TAG_INSNS), and 8 to the
 * counted length when each of its 32-bit halves is below 2^31, as optd's
 * are: 172 for that window, of which 186 fit. Filters cannot be removed:
 * relocating the window means adding another filter.
 */
#pragma once

#include <linux/filter.h> /* struct sock_filter */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bound of what inj_seccomp_build() emits, whatever the window and tag. */
#define INJ_SECCOMP_MAX_INSNS 158
/* What a tag adds to the program. */
#define INJ_SECCOMP_TAG_INSNS 8

/*
 * The data of the filter's SECCOMP_RET_TRACE ("od"), which the tracer reads
 * at the seccomp stop (PTRACE_GETEVENTMSG): a stop with other data comes from
 * a filter of the program's own.
 */
#define INJ_SECCOMP_DATA 0x6f64

struct inj_guard_window {
	uint64_t start, end; /* the guarded window [start, end), page-aligned, start < end */
	uint64_t brk_start;  /* the process's start_brk (from /proc/PID/stat), 0 if unknown */
	uint64_t tag;	     /* allows the tagged syscalls that carry it in args[5]; 0: none */
};

/*
 * Whether syscall nr is one that the filter lets through when its args[5]
 * is the tag: munmap, mprotect, madvise and mremap, which take five
 * arguments or fewer.
 */
bool inj_seccomp_tagged(long nr);

/*
 * Builds the filter for window w. 0 and *ret (malloc'd, the caller frees it)
 * and *ret_n (its instruction count, <= INJ_SECCOMP_MAX_INSNS); -EINVAL for
 * a window that is empty or not page-aligned; -ENOMEM. Nothing is set on
 * failure.
 */
int inj_seccomp_build(const struct inj_guard_window *w, struct sock_filter **ret, size_t *ret_n);
