/*
 * Unit tests for injector/seccomp.c. The kernel is the oracle.
 *
 * A forked child installs the filter and makes a list of raw syscalls (the
 * cases); the test, its tracer, records every PTRACE_EVENT_SECCOMP stop with
 * the arch, number and arguments the kernel gave the filter, and resumes the
 * child at once, so every syscall then runs as it would have. The stops,
 * matched in order against the cases, say which cases the filter traced. The
 * child hands back what each syscall returned, which shows that the filter
 * neither killed nor failed the calls it let through.
 *
 * What each case should do comes from two independent places: the hand-
 * written tables (the boundaries the contract names: a range that ends
 * exactly at the window, one byte into it, starting at its last byte, zero
 * lengths, sums past 2^64, a window across a 4 GiB line where low and high
 * words part ways), and a model of the contract in 128-bit arithmetic, which
 * also judges thousands of random cases drawn around each window's edges.
 *
 * Every syscall a case makes is harmless to the child: destructive ones
 * (munmap, mprotect, mremap, mmap) only aim at an area the child checked to
 * be free; random ones carry flags the kernel refuses before it touches
 * anything, or are munlock; brk only asks for breaks below the heap's start,
 * which the kernel refuses.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procstat.h"
#include "ptrace.h"
#include "seccomp.h"
#include "util.h"

#ifndef __NR_map_shadow_stack
#define __NR_map_shadow_stack 453
#endif
#ifndef __NR_mseal
#define __NR_mseal 462
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define P 4096ULL
#define KERNEL_MAX_INSNS_PER_PATH 32768 /* kernel/seccomp.c: MAX_INSNS_PER_PATH */

/* Pseudo syscall numbers of cases that are not a plain 64-bit syscall. */
#define CASE_INT80_GETPID (-1L) /* i386 getpid (20) through int $0x80 */
#define I386_NR_GETPID 20
#define X32_GETPID (__X32_SYSCALL_BIT + __NR_getpid)

/* ---- the model: the contract of seccomp.h in 128-bit arithmetic ---- */

static bool hits(const struct inj_guard_window *w, uint64_t a, uint64_t n)
{
	return n != 0 && a < w->end && (unsigned __int128)a + n > w->start;
}

static bool model_traced(const struct inj_guard_window *w, uint32_t arch, uint64_t nr,
			 const uint64_t *a)
{
	if (arch != AUDIT_ARCH_X86_64 || (nr & __X32_SYSCALL_BIT))
		return true;
	if (w->tag && a[5] == w->tag &&
	    (nr == __NR_munmap || nr == __NR_mprotect || nr == __NR_madvise || nr == __NR_mremap))
		return false;
	switch (nr) {
	case __NR_mmap:
	case __NR_munmap:
	case __NR_mprotect:
	case __NR_pkey_mprotect:
	case __NR_madvise:
	case __NR_msync:
	case __NR_mincore:
	case __NR_mlock:
	case __NR_munlock:
	case __NR_mlock2:
	case __NR_remap_file_pages:
	case __NR_mbind:
	case __NR_map_shadow_stack:
	case __NR_mseal:
		return hits(w, a[0], a[1]);
	case __NR_mremap:
		return hits(w, a[0], a[1]) || hits(w, a[0], a[2]) ||
		       ((a[3] & MREMAP_FIXED) && hits(w, a[4], a[2]));
	case __NR_brk:
		return (w->brk_start == 0 || w->brk_start < w->end) &&
		       (unsigned __int128)a[0] + 4096 > w->start;
	case __NR_shmat:
		return a[1] != 0 && a[1] < w->end;
	case __NR_process_madvise:
		return true;
	default:
		return false;
	}
}

/* ---- cases ---- */

enum expect {
	RES_ANY,   /* depends on the kernel's build or limits: not checked */
	RES_EXACT, /* .result */
	RES_PID,   /* the child's pid */
	RES_BRK,   /* the child's current break (brk below the heap's start changes nothing) */
};

struct sc_case {
	long nr;
	uint64_t a[6];
	bool traced; /* hand-written expectation (random cases: the model's) */
	enum expect expect;
	long result;
};

#define TRACED true
#define ALLOWED false
/* C(nr, TRACED or ALLOWED, expectation, args...); the expectation is two macro arguments. */
#define C(nr_, t_, ...) C_(nr_, t_, __VA_ARGS__)
#define C_(nr_, t_, e_, res_, ...)                                                                 \
	{                                                                                          \
		.nr = (nr_), .a = {__VA_ARGS__}, .traced = (t_), .expect = (e_), .result = (res_)  \
	}
#define EXACT(r) RES_EXACT, (r)
#define ANY RES_ANY, 0
#define PID RES_PID, 0
#define BRK RES_BRK, 0

#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define NOREPLACE (MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)
#define MM_FIXED (MREMAP_MAYMOVE | MREMAP_FIXED)

/* Window 1: 64 KiB at 16 TiB, a part of the address space nothing uses. */
#define S1 0x100000000000ULL
#define E1 (S1 + 0x10000)
/* Its tag, as optd makes them (each half below 2^31, odd), and one with both halves' top bits. */
#define T1 0x1234567823456789ULL
#define T2 0x9abcdef0f0123457ULL

static const struct sc_case cases_w1[] = {
    C(__NR_getpid, ALLOWED, PID, 0),
    /* munmap, mprotect, msync, madvise: the edges */
    C(__NR_munmap, ALLOWED, EXACT(0), S1 - P, P),				/* ends at start */
    C(__NR_munmap, TRACED, EXACT(0), S1 - P, P + 1),				/* one byte in */
    C(__NR_msync, TRACED, EXACT(-EINVAL), E1 - 1, 1, MS_ASYNC),			/* the last byte */
    C(__NR_madvise, ALLOWED, EXACT(-ENOMEM), E1, P, MADV_NORMAL),		/* starts at end */
    C(__NR_mprotect, TRACED, EXACT(-ENOMEM), S1 - 0x10000, 0x30000, PROT_READ), /* covers it */
    C(__NR_mprotect, TRACED, EXACT(-ENOMEM), S1 + P, P, PROT_READ),		/* inside */
    C(__NR_munmap, ALLOWED, EXACT(-EINVAL), S1, 0),				/* empty */
    C(__NR_mprotect, ALLOWED, EXACT(0), S1 + P, 0, PROT_READ),			/* empty, inside */
    C(__NR_madvise, TRACED, EXACT(-ENOMEM), S1 + P, P, MADV_NORMAL),
    C(__NR_msync, ALLOWED, EXACT(-ENOMEM), S1 - P, P, MS_ASYNC),
    /* sums past 2^64: traced iff the range starts below end */
    C(__NR_munmap, TRACED, EXACT(-EINVAL), 0x1000, -0x800ULL),	/* wraps to 0x800 */
    C(__NR_munmap, TRACED, EXACT(-EINVAL), 0x1000, -0x1000ULL), /* exactly 2^64 */
    C(__NR_munmap, TRACED, EXACT(-EINVAL), S1 - P, -(S1 - P)),	/* exactly 2^64, both carries */
    C(__NR_munmap, TRACED, EXACT(-EINVAL), E1 - P, UINT64_MAX),
    C(__NR_munmap, ALLOWED, EXACT(-EINVAL), E1, UINT64_MAX),
    C(__NR_munmap, ALLOWED, EXACT(-EINVAL), -P, 2 * P),
    /* mmap: a hint without MAP_FIXED counts as its range */
    C(__NR_mmap, TRACED, EXACT((long)(S1 - P)), S1 - P, 2 * P, PROT_READ, ANON, -1, 0),
    C(__NR_munmap, TRACED, EXACT(0), S1 - P, 2 * P),
    C(__NR_mmap, ALLOWED, EXACT((long)(S1 - 2 * P)), S1 - 2 * P, P, PROT_READ, NOREPLACE, -1, 0),
    C(__NR_munmap, ALLOWED, EXACT(0), S1 - 2 * P, P),
    C(__NR_mmap, ALLOWED, EXACT((long)E1), E1, P, PROT_READ, NOREPLACE, -1, 0),
    C(__NR_munmap, ALLOWED, EXACT(0), E1, P),
    C(__NR_mmap, TRACED, EXACT((long)(E1 - P)), E1 - P, P, PROT_READ, NOREPLACE, -1, 0),
    C(__NR_munmap, TRACED, EXACT(0), E1 - P, P),
    C(__NR_mmap, ALLOWED, EXACT(-EBADF), S1, 0, PROT_READ, MAP_PRIVATE, -1, 0), /* empty */
    /* the rest of the list */
    C(__NR_pkey_mprotect, TRACED, EXACT(-ENOMEM), S1, P, PROT_READ, -1),
    C(__NR_pkey_mprotect, ALLOWED, EXACT(-ENOMEM), E1, P, PROT_READ, -1),
    C(__NR_mincore, TRACED, EXACT(-ENOMEM), S1, P, 0),
    C(__NR_mincore, ALLOWED, EXACT(-ENOMEM), S1 - P, P, 0),
    C(__NR_mlock, TRACED, ANY, S1, P),
    C(__NR_mlock, ALLOWED, ANY, E1, P),
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), E1 - P, 2 * P),
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), E1, P),
    C(__NR_mlock2, ALLOWED, ANY, S1 - P, P, 0),
    C(__NR_mlock2, TRACED, ANY, S1 - P, P + 1, 0),
    C(__NR_remap_file_pages, TRACED, ANY, S1, P, 0, 0, 0),
    C(__NR_remap_file_pages, ALLOWED, ANY, E1, P, 0, 0, 0),
    C(__NR_mbind, TRACED, ANY, S1, P, 0, 0, 0, 0),
    C(__NR_mbind, ALLOWED, ANY, S1 - P, P, 0, 0, 0, 0),
    C(__NR_map_shadow_stack, TRACED, ANY, S1, P, 0x80),
    C(__NR_map_shadow_stack, ALLOWED, ANY, E1, P, 0x80),
    C(__NR_mseal, TRACED, ANY, S1, P, 0),
    C(__NR_mseal, ALLOWED, ANY, E1 + P, P, 0),
    /* mremap: the old range, growing in place, the new range when fixed */
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, P, 0, 0),
    C(__NR_mremap, TRACED, ANY, S1 - 2 * P, P, P + P + 1, 0, 0),
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, 2 * P, 0, 0),
    C(__NR_mremap, TRACED, ANY, S1 - P, 2 * P, P, 0, 0),
    C(__NR_mremap, TRACED, ANY, S1 - 2 * P, P, P, MM_FIXED, E1 - P),
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, P, MM_FIXED, E1),
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, P, MREMAP_MAYMOVE, E1 - P), /* not fixed */
    C(__NR_mremap, TRACED, ANY, S1 - 3 * P, P, 2 * P, MM_FIXED, S1 - P),    /* new length counts */
    C(__NR_mremap, ALLOWED, ANY, S1 - 4 * P, 2 * P, P, MM_FIXED, S1 - P), /* old length does not */
    C(__NR_mremap, TRACED, ANY, S1 - 2 * P, P, P, MM_FIXED | MREMAP_DONTUNMAP, S1),
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, P, (2ULL << 32) | MREMAP_MAYMOVE, S1),
    /* brk, brk_start unknown: the threshold is start - 4096 */
    C(__NR_brk, ALLOWED, BRK, 0),
    C(__NR_brk, ALLOWED, BRK, S1 - 2 * P),
    C(__NR_brk, ALLOWED, BRK, S1 - P),
    C(__NR_brk, TRACED, BRK, S1 - P + 1),
    C(__NR_brk, TRACED, BRK, S1),
    C(__NR_brk, TRACED, BRK, E1 + P),
    /* shmat: a non-zero address below end */
    C(__NR_shmat, ALLOWED, EXACT(-EINVAL), -1, 0, 0),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, 0x1000, 0),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, S1, 0),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, E1 - 1, 0),
    C(__NR_shmat, ALLOWED, EXACT(-EINVAL), -1, E1, 0),
    C(__NR_process_madvise, TRACED, ANY, -1, 0, 0, 0, 0),
    /* x32: traced whatever it asks (and -ENOSYS unless the kernel has x32) */
    C(X32_GETPID, TRACED, ANY, 0),
    /* the tag: args[5] of munmap, mprotect, madvise and mremap, both halves */
    C(__NR_munmap, ALLOWED, EXACT(0), S1, P, 0, 0, 0, T1),
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, 0, T1 ^ 1),
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, 0, T1 ^ (1ULL << 32)),
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, T1, 0),
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, 0, T1 << 32 | T1 >> 32),
    C(__NR_mprotect, ALLOWED, EXACT(-ENOMEM), S1, P, PROT_READ, 0, 0, T1),
    C(__NR_madvise, ALLOWED, EXACT(-ENOMEM), S1, P, MADV_NORMAL, 0, 0, T1),
    C(__NR_mremap, ALLOWED, ANY, S1 - 2 * P, P, P, MM_FIXED, S1, T1),
    C(__NR_mremap, TRACED, ANY, S1 - 2 * P, P, P, MM_FIXED, S1, T1 ^ (1ULL << 63)),
    /* not for the others: mmap's args[5] is its offset (unaligned here: EINVAL) */
    C(__NR_mmap, TRACED, EXACT(-EINVAL), S1, P, PROT_READ, NOREPLACE, -1, T1),
    C(__NR_msync, TRACED, EXACT(-ENOMEM), S1, P, MS_ASYNC, 0, 0, T1),
    C(__NR_pkey_mprotect, TRACED, EXACT(-ENOMEM), S1, P, PROT_READ, -1, 0, T1),
    C(__NR_munmap, ALLOWED, EXACT(0), E1, P, 0, 0, 0, T1), /* outside: allowed anyway */
    C(__NR_getpid, ALLOWED, PID, S1, P),
};

/* Window 2: across the 4 GiB line at 8 GiB, so high and low words disagree. */
#define S2 0x1fffff000ULL
#define E2 0x200001000ULL

static const struct sc_case cases_w2[] = {
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), S2 - P, P),		/* ends at start */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), S2 - P, P + 1),		/* one byte in */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), S2 - P, 2 * P),		/* low-word carry */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), E2 - 1, 1),			/* the last byte */
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), E2, P),			/* starts at end */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), 0x200000000, P),		/* high 2, low 0 */
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), 0x2fffff000, P),		/* start's low word */
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), 0x0fffff000, P),		/* start's low word */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), 0x0fffff000, 0x100001000),	/* length's high 1 */
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), 0x100000000, 0xfffff000),	/* sums to start */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), 0x100000000, 0xfffff001),	/* one past it */
    C(__NR_munlock, ALLOWED, EXACT(-ENOMEM), 0x000001000, 0x1ffffe000), /* sums to start */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), 0x000001000, 0x200000000),
    C(__NR_mprotect, TRACED, EXACT(-ENOMEM), S2, 2 * P, PROT_READ),
    C(__NR_mprotect, ALLOWED, EXACT(-ENOMEM), E2, 2 * P, PROT_READ),
    C(__NR_munmap, TRACED, EXACT(0), 0x100000000, 0x100000000),
    C(__NR_munmap, ALLOWED, EXACT(0), E2, 0x100000000),
    C(__NR_mremap, ALLOWED, ANY, S2 - 2 * P, P, 2 * P, 0, 0),
    C(__NR_mremap, TRACED, ANY, S2 - 2 * P, P, 2 * P + 1, 0, 0),
    C(__NR_mremap, ALLOWED, ANY, S2 - 2 * P, P, P, MM_FIXED, E2),
    C(__NR_mremap, TRACED, ANY, S2 - 2 * P, P, P, MM_FIXED, 0x200000000),
    /* brk with a heap that starts below the window */
    C(__NR_brk, ALLOWED, BRK, 0),
    C(__NR_brk, ALLOWED, BRK, S2 - P),
    C(__NR_brk, TRACED, BRK, S2 - P + 1),
    C(__NR_brk, TRACED, BRK, 0x1fffff000),
    C(__NR_brk, TRACED, BRK, 0x2fffff000),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, 0x100000fff, 0),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, E2 - 1, 0),
    C(__NR_shmat, ALLOWED, EXACT(-EINVAL), -1, E2, 0),
    C(__NR_shmat, ALLOWED, EXACT(-EINVAL), -1, 0x300000000, 0),
    /* a tag whose halves both have their top bit */
    C(__NR_munlock, TRACED, EXACT(-ENOMEM), S2, P, 0, 0, 0, T2),
    C(__NR_munmap, ALLOWED, EXACT(0), S2, P, 0, 0, 0, T2),
    C(__NR_munmap, TRACED, EXACT(0), S2, P, 0, 0, 0, T2 & 0xffffffff),
    C(__NR_mremap, ALLOWED, ANY, S2 - 2 * P, P, 2 * P + 1, 0, 0, T2),
    C(__NR_getpid, ALLOWED, PID, S2, P),
};

/* Window 1 without a tag: args[5] is not looked at, 0 included. */
static const struct sc_case cases_w1_untagged[] = {
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, 0, 0),
    C(__NR_munmap, TRACED, EXACT(0), S1, P, 0, 0, 0, T1),
    C(__NR_mremap, TRACED, ANY, S1 - 2 * P, P, P, MM_FIXED, S1, 0),
    C(__NR_getpid, ALLOWED, PID, 0),
};

/* Window 1 again, with the heap known to start at its end: brk never reaches it. */
static const struct sc_case cases_w1_heap_above[] = {
    C(__NR_brk, ALLOWED, BRK, 0),
    C(__NR_brk, ALLOWED, BRK, S1 - P + 1),
    C(__NR_brk, ALLOWED, BRK, S1),
    C(__NR_brk, ALLOWED, BRK, E1 + P),
    C(__NR_munmap, TRACED, EXACT(0), S1 - P, P + 1),
    C(__NR_getpid, ALLOWED, PID, 0),
};

/*
 * Window 3: where a high word of all ones plus a carry passes 2^64. No user
 * address is this high: munlock and shmat fail without touching anything.
 */
#define S3 0xffffffff00000000ULL
#define E3 0xffffffff00001000ULL

static const struct sc_case cases_w3[] = {
    C(__NR_munlock, TRACED, ANY, S3 + 0x800, 0xfffff800), /* sums to 2^64 through both carries */
    C(__NR_munlock, TRACED, ANY, S3 + 0xfff, UINT64_MAX), /* wraps */
    C(__NR_munlock, ALLOWED, ANY, E3, UINT64_MAX),	  /* wraps, from end */
    C(__NR_munlock, ALLOWED, ANY, 0xfffffffe00000000, 0x100000000), /* sums to start */
    C(__NR_munlock, TRACED, ANY, 0xfffffffe00000000, 0x100000001),
    C(__NR_munlock, TRACED, ANY, 0xfffffffeffffffff, 2), /* low-word carry into the high word */
    C(__NR_munlock, ALLOWED, ANY, 0xfffffffeffffffff, 1),
    C(__NR_munlock, ALLOWED, ANY, E3, 1),
    C(__NR_shmat, TRACED, EXACT(-EINVAL), -1, E3 - 1, 0),
    C(__NR_shmat, ALLOWED, EXACT(-EINVAL), -1, E3, 0),
    C(__NR_getpid, ALLOWED, PID, 0),
};

struct table {
	const char *name;
	struct inj_guard_window w;
	uint64_t area_start, area_end; /* must be free in the child: destructive cases aim here */
	const struct sc_case *cases;
	size_t n;
};

static const struct table tables[] = {
    {"w1", {S1, E1, 0, T1}, S1 - (16 << 20), E1 + (16 << 20), cases_w1, ARRAY_SIZE(cases_w1)},
    {"w2", {S2, E2, 0x100000000, T2}, 0x0f0000000, 0x310000000, cases_w2, ARRAY_SIZE(cases_w2)},
    {"w1 heap above",
     {S1, E1, E1, T1},
     S1 - (16 << 20),
     E1 + (16 << 20),
     cases_w1_heap_above,
     ARRAY_SIZE(cases_w1_heap_above)},
    {"w3", {S3, E3, 0, 0}, 0, 0, cases_w3, ARRAY_SIZE(cases_w3)},
    {"w1 untagged",
     {S1, E1, 0, 0},
     S1 - (16 << 20),
     E1 + (16 << 20),
     cases_w1_untagged,
     ARRAY_SIZE(cases_w1_untagged)},
};

/* ---- the child ---- */

static long raw_syscall(long nr, const uint64_t a[6])
{
	register uint64_t r10 __asm__("r10") = a[3];
	register uint64_t r8 __asm__("r8") = a[4];
	register uint64_t r9 __asm__("r9") = a[5];
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* getpid through the i386 entry; arguments all 0 (ebp is left alone). */
static long int80_getpid(void)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"((long)I386_NR_GETPID), "b"(0L), "c"(0L), "d"(0L), "S"(0L), "D"(0L)
			 : "r8", "r9", "r10", "r11", "memory");
	return (int)ret; /* the i386 result is eax */
}

static long run_case(const struct sc_case *c)
{
	if (c->nr == CASE_INT80_GETPID)
		return int80_getpid();
	return raw_syscall(c->nr, c->a);
}

/* Child exit codes other than 0. */
enum {
	CHILD_GO = 10, /* the go byte did not come */
	CHILD_AREA,    /* the area the cases aim at is not free */
	CHILD_NNP,     /* PR_SET_NO_NEW_PRIVS failed */
	CHILD_INSTALL, /* seccomp(SECCOMP_SET_MODE_FILTER) failed */
	CHILD_WRITE,   /* the results could not be written */
};

/* Maps and unmaps [start, end) with MAP_FIXED_NOREPLACE: true if nothing was there. */
static bool area_free(uint64_t start, uint64_t end)
{
	const uint64_t m[6] = {start,	     end - start,
			       PROT_NONE,    ANON | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
			       (uint64_t)-1, 0};
	const uint64_t u[6] = {start, end - start};

	return raw_syscall(__NR_mmap, m) == (long)start && raw_syscall(__NR_munmap, u) == 0;
}

static int child_main(int go, int out, const struct table *t, const struct sock_fprog *prog,
		      long *results)
{
	char b;

	if (read(go, &b, 1) != 1)
		return CHILD_GO;
	if (t->area_end && !area_free(t->area_start, t->area_end))
		return CHILD_AREA;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return CHILD_NNP;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog))
		return CHILD_INSTALL;
	/* From here on: raw syscalls only, so every seccomp stop is a case's. */
	for (size_t i = 0; i < t->n; i++)
		results[i] = run_case(&t->cases[i]);
	if (write(out, results, t->n * sizeof(*results)) != (ssize_t)(t->n * sizeof(*results)))
		return CHILD_WRITE;
	return 0;
}

/* ---- the tracer ---- */

struct stop {
	uint32_t arch;
	uint64_t nr;
	uint64_t args[6];
	uint32_t ret_data;
};

struct run {
	int status; /* the child's wait status */
	struct stop *stops;
	size_t n_stops;
	long *results;	  /* t->n of them when the child exited 0 */
	bool *traced;	  /* per case, from the stops */
	size_t unmatched; /* stops left over after matching */
	pid_t pid;
};

static bool stop_is(const struct stop *s, const struct sc_case *c)
{
	if (c->nr == CASE_INT80_GETPID)
		return s->arch == AUDIT_ARCH_I386 && s->nr == I386_NR_GETPID;
	return s->arch == AUDIT_ARCH_X86_64 && s->nr == (uint64_t)c->nr &&
	       memcmp(s->args, c->a, sizeof(s->args)) == 0;
}

/*
 * Runs table t in a traced child. Asserts nothing until the child is gone,
 * so that a failure never leaves it behind.
 */
static void run_table(const struct table *t, struct run *ret)
{
	struct sock_filter *insns = NULL;
	struct sock_fprog prog;
	size_t n_insns, cap = 64;
	int go[2], out[2], st, r;
	long *results;
	pid_t pid;

	memset(ret, 0, sizeof(*ret));
	ck_assert_int_eq(inj_seccomp_build(&t->w, &insns, &n_insns), 0);
	prog = (struct sock_fprog){(unsigned short)n_insns, insns};
	results = calloc(t->n ? t->n : 1, sizeof(*results));
	ret->stops = malloc(cap * sizeof(*ret->stops));
	ck_assert(results && ret->stops);
	ck_assert(t->n * sizeof(*results) <= 65536); /* the pipe holds them all */
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(out[0]);
		_exit(child_main(go[0], out[1], t, &prog, results));
	}
	close(go[0]);
	close(out[1]);
	ret->pid = pid;

	r = (int)inj_ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		ck_abort_msg("PTRACE_SEIZE: %s", strerror(-r));
	}
	ck_assert_int_eq(write(go[1], "g", 1), 1);

	for (;;) {
		ck_assert_int_eq(waitpid(pid, &st, __WALL), pid);
		if (WIFEXITED(st) || WIFSIGNALED(st))
			break;
		if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
			struct __ptrace_syscall_info info;
			struct stop *s;

			memset(&info, 0, sizeof(info));
			r = (int)inj_ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof(info),
					    (uint64_t)(uintptr_t)&info);
			if (r <= 0 || info.op != PTRACE_SYSCALL_INFO_SECCOMP) {
				kill(pid, SIGKILL);
				continue; /* reaped above; asserted below */
			}
			if (ret->n_stops == cap) {
				cap *= 2;
				ret->stops = realloc(ret->stops, cap * sizeof(*ret->stops));
				ck_assert(ret->stops);
			}
			s = &ret->stops[ret->n_stops++];
			s->arch = info.arch;
			s->nr = info.seccomp.nr;
			memcpy(s->args, info.seccomp.args, sizeof(s->args));
			s->ret_data = info.seccomp.ret_data;
			inj_ptrace(PTRACE_CONT, pid, 0, 0);
		} else if (st >> 16 == PTRACE_EVENT_STOP) {
			inj_ptrace(PTRACE_CONT, pid, 0, 0); /* a group-stop: nobody asked for one */
		} else {
			/* A signal: deliver it, so a SIGSYS or SIGSEGV ends the child as it would.
			 */
			inj_ptrace(PTRACE_CONT, pid, 0, (uint64_t)WSTOPSIG(st));
		}
	}
	close(go[1]);
	ret->status = st;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		ssize_t want = (ssize_t)(t->n * sizeof(*results));
		ck_assert_int_eq(read(out[0], results, (size_t)want), want);
	}
	close(out[0]);
	free(insns);
	ret->results = results;

	/* In order: a stop belongs to the first case from here that it matches. */
	ret->traced = calloc(t->n ? t->n : 1, sizeof(*ret->traced));
	ck_assert(ret->traced);
	size_t j = 0;
	for (size_t i = 0; i < t->n; i++)
		if (j < ret->n_stops && stop_is(&ret->stops[j], &t->cases[i])) {
			ret->traced[i] = true;
			j++;
		}
	ret->unmatched = ret->n_stops - j;
}

static void run_free(struct run *r)
{
	free(r->stops);
	free(r->results);
	free(r->traced);
}

static const char *child_error(int status)
{
	static char buf[64];

	if (WIFSIGNALED(status)) {
		snprintf(buf, sizeof(buf), "killed by signal %d", WTERMSIG(status));
		return buf;
	}
	switch (WEXITSTATUS(status)) {
	case CHILD_GO:
		return "no go byte";
	case CHILD_AREA:
		return "the area the cases aim at is not free in the child";
	case CHILD_NNP:
		return "PR_SET_NO_NEW_PRIVS failed";
	case CHILD_INSTALL:
		return "the kernel refused the filter";
	case CHILD_WRITE:
		return "the results could not be written";
	}
	snprintf(buf, sizeof(buf), "exit status %d", WEXITSTATUS(status));
	return buf;
}

static void format_case(char *buf, size_t len, const struct sc_case *c)
{
	snprintf(buf, len,
		 "nr %ld (%#" PRIx64 ", %#" PRIx64 ", %#" PRIx64 ", %#" PRIx64 ", %#" PRIx64 ")",
		 c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
}

/*
 * Checks a finished run against the cases' expectations: exit status, one
 * stop per traced case and none for the others, optd's data in every stop, and
 * the results of the syscalls.
 */
static void check_run(const struct table *t, const struct run *run, pid_t pid, long brk_now)
{
	char what[200];
	int bad = 0;

	ck_assert_msg(WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0, "%s: child: %s",
		      t->name, child_error(run->status));
	for (size_t i = 0; i < t->n; i++) {
		const struct sc_case *c = &t->cases[i];
		long want = c->result;

		format_case(what, sizeof(what), c);
		if (run->traced[i] != c->traced) {
			fprintf(stderr, "%s case %zu: %s: %s, expected %s\n", t->name, i, what,
				run->traced[i] ? "traced" : "allowed",
				c->traced ? "traced" : "allowed");
			bad++;
		}
		if (c->expect == RES_ANY)
			continue;
		if (c->expect == RES_PID)
			want = pid;
		else if (c->expect == RES_BRK)
			want = brk_now;
		if (run->results[i] != want) {
			fprintf(stderr, "%s case %zu: %s returned %ld, expected %ld\n", t->name, i,
				what, run->results[i], want);
			bad++;
		}
	}
	for (size_t k = 0; k < run->n_stops; k++)
		ck_assert_uint_eq(run->stops[k].ret_data, INJ_SECCOMP_DATA);
	ck_assert_msg(run->unmatched == 0, "%s: %zu stops match no case", t->name, run->unmatched);
	ck_assert_msg(bad == 0, "%s: %d mismatches (listed above)", t->name, bad);
}

/* The test process's start_brk: brk cases must stay below it. */
static uint64_t start_brk(void)
{
	char buf[32];

	ck_assert_int_eq(procstat_field("/proc/self/stat", 47, buf, sizeof(buf)), 0);
	return strtoull(buf, NULL, 10);
}

static long current_brk(void)
{
	const uint64_t a[6] = {0};

	return raw_syscall(__NR_brk, a);
}

static void check_brk_cases_harmless(const struct table *t)
{
	uint64_t heap = start_brk();

	for (size_t i = 0; i < t->n; i++)
		if (t->cases[i].nr == __NR_brk)
			ck_assert_msg(t->cases[i].a[0] < heap,
				      "%s case %zu: brk(%#" PRIx64 ") would move this process's "
				      "heap, which starts at %#" PRIx64,
				      t->name, i, t->cases[i].a[0], heap);
}

/* ---- tests ---- */

START_TEST(test_bad_windows)
{
	static const struct inj_guard_window bad[] = {
	    {S1, S1, 0, 0},		    /* empty */
	    {E1, S1, 0, T1},		    /* reversed */
	    {S1 + 1, E1, 0, 0},		    /* start not page-aligned */
	    {S1, E1 - 1, 0, 0},		    /* end not page-aligned */
	    {S1 + 0x800, E1 + 0x800, 0, 0}, /* neither */
	    {-P, 0, 0, 0},		    /* end wrapped */
	};
	struct sock_filter *insns = (struct sock_filter *)&insns;
	size_t n = 12345;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		ck_assert_int_eq(inj_seccomp_build(&bad[i], &insns, &n), -EINVAL);
		ck_assert_ptr_eq(insns, (struct sock_filter *)&insns); /* untouched on failure */
		ck_assert_uint_eq(n, 12345);
	}
	ck_assert_int_eq(inj_seccomp_build(NULL, &insns, &n), -EINVAL);
}
END_TEST

/* Windows for the random tests and the length bound: the usual, the odd and the extreme. */
static const struct inj_guard_window windows[] = {
    {S1, E1, 0, T1},
    {S2, E2, 0x100000000, T2},
    {S1, E1, E1, 0},			    /* heap above: brk never traced */
    {S1, E1, 0x555555554000, T1},	    /* a PIE's heap: above too */
    {0, 0x10000, 0, 0},			    /* at 0: every brk traced */
    {0x1000, 0x2000, 0, T2},		    /* at 4096: brk(0) is the one break not traced */
    {0x7fffffff0000, 0x800000010000, 0, 0}, /* across 2^47 */
    {0xfffffffffff00000, 0xfffffffffffff000, 0, T1}, /* the top: sums pass 2^64 often */
    {0xffffffff00000000, 0xffffffff00001000, 0, 0},  /* start's high word all ones */
    {0x100000000, 0x200000000, 0, T1},		     /* exactly a 4 GiB bank */
    {0xfffff000, 0x100000000, 0, 0},		     /* the last page below 4 GiB */
    {0x100000000, 0x100001000, 0xfffff000, T2},	     /* the first page above it */
};

START_TEST(test_length)
{
	for (size_t i = 0; i < ARRAY_SIZE(windows); i++) {
		struct sock_filter *insns = NULL;
		size_t n = 0;

		ck_assert_int_eq(inj_seccomp_build(&windows[i], &insns, &n), 0);
		ck_assert_ptr_nonnull(insns);
		ck_assert_uint_gt(n, 0);
		ck_assert_uint_le(n, INJ_SECCOMP_MAX_INSNS);
		ck_assert_uint_le(n, BPF_MAXINSNS);
		/* The last instruction returns: the kernel checks that too. */
		ck_assert_uint_eq(BPF_CLASS(insns[n - 1].code), BPF_RET);
		free(insns);

		/* What the tag costs. */
		struct inj_guard_window other = windows[i];
		size_t n_other = 0;
		other.tag = windows[i].tag ? 0 : T1;
		ck_assert_int_eq(inj_seccomp_build(&other, &insns, &n_other), 0);
		ck_assert_uint_eq(windows[i].tag ? n : n_other,
				  (windows[i].tag ? n_other : n) + INJ_SECCOMP_TAG_INSNS);
		free(insns);
	}
}
END_TEST

START_TEST(test_table)
{
	const struct table *t = &tables[_i];
	struct run run;
	long brk_now;

	/* The model agrees with every hand-written expectation. */
	for (size_t i = 0; i < t->n; i++)
		ck_assert_msg(model_traced(&t->w, AUDIT_ARCH_X86_64, (uint64_t)t->cases[i].nr,
					   t->cases[i].a) == t->cases[i].traced,
			      "%s case %zu: the model disagrees with the table", t->name, i);
	check_brk_cases_harmless(t);

	brk_now = current_brk();
	run_table(t, &run);
	check_run(t, &run, run.pid, brk_now);
	run_free(&run);
}
END_TEST

/* ---- random cases around a window's edges ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A small signed offset, mostly within a page of 0. */
static uint64_t jitter(void)
{
	static const int64_t d[] = {0, 1, -1, 4096, -4096, 4095, -4095, 2, -2};

	if (rnd() % 3)
		return (uint64_t)d[rnd() % ARRAY_SIZE(d)];
	return (uint64_t)((int64_t)(rnd() % 0x20000) - 0x10000);
}

/* An address: near an edge of the window, of a 4 GiB bank, of the address space, or anywhere. */
static uint64_t gen_addr(const struct inj_guard_window *w)
{
	switch (rnd() % 8) {
	case 0:
	case 1:
		return w->start + jitter();
	case 2:
	case 3:
		return w->end + jitter();
	case 4:
		return ((rnd() % 4) << 32) + ((w->start + jitter()) & 0xffffffff);
	case 5:
		return jitter();
	case 6:
		return w->start + rnd() % (w->end - w->start + 1);
	default:
		return rnd();
	}
}

/* A length from a: empty, small, to near an edge, to near 2^64, or anything. */
static uint64_t gen_len(const struct inj_guard_window *w, uint64_t a)
{
	switch (rnd() % 8) {
	case 0:
		return rnd() % 4 ? rnd() % 0x3000 : 0;
	case 1:
	case 2:
		return w->start - a + jitter();
	case 3:
		return w->end - a + jitter();
	case 4:
		return -a + jitter(); /* sums near 2^64 */
	case 5:
		return (w->end - w->start) + jitter();
	case 6:
		return (rnd() % 3) << 32 | (rnd() & 0xffffffff);
	default:
		return rnd();
	}
}

/* A random case whose syscall the kernel refuses or that cannot hurt the child. */
static struct sc_case gen_case(const struct inj_guard_window *w, uint64_t heap)
{
	static const long range_nrs[] = {
	    __NR_mmap,
	    __NR_munmap,
	    __NR_mprotect,
	    __NR_pkey_mprotect,
	    __NR_madvise,
	    __NR_msync,
	    __NR_mincore,
	    __NR_munlock,
	    __NR_mlock2,
	    __NR_remap_file_pages,
	    __NR_mbind,
	    __NR_map_shadow_stack,
	    __NR_mseal,
	    __NR_mremap,
	    __NR_brk,
	    __NR_shmat,
	    __NR_process_madvise,
	    __NR_getpid,
	    __NR_getppid,
	};
	struct sc_case c = {.nr = range_nrs[rnd() % ARRAY_SIZE(range_nrs)], .expect = RES_ANY};
	uint64_t *a = c.a;

	a[0] = gen_addr(w);
	a[1] = gen_len(w, a[0]);
	switch (c.nr) {
	case __NR_mmap:
		a[2] = PROT_READ, a[3] = 0,
		a[4] = (uint64_t)-1; /* no map type: -EINVAL or -EBADF */
		break;
	case __NR_munmap:
		a[0] |= 1; /* unaligned: -EINVAL before anything */
		a[1] = gen_len(w, a[0]);
		break;
	case __NR_mprotect:
		a[2] = 0x10000000; /* bad prot */
		break;
	case __NR_pkey_mprotect:
		a[2] = 0x10000000, a[3] = (uint64_t)-1;
		break;
	case __NR_madvise:
		a[2] = 12345; /* bad advice */
		break;
	case __NR_msync:
		a[2] = 0x100; /* bad flags */
		break;
	case __NR_mincore:
		a[2] = 0xffff800000000000ULL; /* a kernel address: -EFAULT if it gets that far */
		break;
	case __NR_mlock2:
		a[2] = 0x80; /* bad flags */
		break;
	case __NR_remap_file_pages:
		a[2] = PROT_READ; /* prot must be 0 */
		break;
	case __NR_mbind:
		a[2] = 0x7fff; /* bad mode */
		break;
	case __NR_map_shadow_stack:
		a[2] = 0x80; /* bad flags */
		break;
	case __NR_mseal:
		a[2] = 1; /* bad flags */
		break;
	case __NR_mremap:
		a[2] = rnd() % 2 ? gen_len(w, a[0]) : a[1] + jitter();
		/* MREMAP_FIXED or not, always refused: a bad flag, or FIXED without MAYMOVE */
		a[3] = rnd() % 2 ? (rnd() % 2 ? MREMAP_FIXED : 0) | 0x100 : MREMAP_FIXED;
		if (rnd() % 4 == 0)
			a[3] |= (rnd() & 0xffffffff) << 32;
		a[4] = gen_addr(w);
		if (rnd() % 2)
			a[4] = w->start - a[2] + jitter();
		break;
	case __NR_brk:
		/* Below the heap's start, where the kernel refuses to move the break. */
		if (rnd() % 2)
			a[0] = w->start - 4096 + jitter();
		if (a[0] >= heap)
			a[0] = rnd() % 2 ? rnd() % 0x3000 : rnd() % heap;
		a[1] = 0;
		break;
	case __NR_shmat:
		a[1] = a[0];
		a[0] = (uint64_t)-1; /* no such segment */
		if (rnd() % 4 == 0)
			a[1] = 0;
		break;
	case __NR_process_madvise:
		a[0] = (uint64_t)-1; /* no such pidfd */
		break;
	case __NR_munlock:
	default:
		break;
	}
	/* args[5]: the tag, the tag with one half changed, or what the case put there. */
	switch (rnd() % 8) {
	case 0:
	case 1:
		a[5] = w->tag;
		break;
	case 2:
		a[5] = w->tag ^ (1ULL << (rnd() % 64));
		break;
	default:
		break;
	}
	c.traced = model_traced(w, AUDIT_ARCH_X86_64, (uint64_t)c.nr, a);
	return c;
}

#define RANDOM_CASES 4000

START_TEST(test_random)
{
	const struct inj_guard_window *w = &windows[_i];
	uint64_t heap = start_brk();
	struct sc_case *cases = calloc(RANDOM_CASES, sizeof(*cases));
	struct table t = {"random", *w, 0, 0, cases, RANDOM_CASES};
	size_t n_traced = 0;
	struct run run;
	char name[64];

	ck_assert_ptr_nonnull(cases);
	snprintf(name, sizeof(name), "random window %d", _i);
	t.name = name;
	rng_state = 0x5eccc0de0000ULL + (uint64_t)_i;
	for (size_t i = 0; i < RANDOM_CASES; i++) {
		cases[i] = gen_case(w, heap);
		n_traced += cases[i].traced;
	}
	/* Both outcomes are well represented. */
	ck_assert_uint_gt(n_traced, RANDOM_CASES / 10);
	ck_assert_uint_lt(n_traced, RANDOM_CASES - RANDOM_CASES / 10);
	check_brk_cases_harmless(&t);

	run_table(&t, &run);
	check_run(&t, &run, run.pid, 0);
	run_free(&run);
	free(cases);
}
END_TEST

/* Does int $0x80 work here at all? Asked in a child without a filter. */
static bool int80_works(void)
{
	int st;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(int80_getpid() == getpid() ? 0 : 1);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* An i386 syscall from a 64-bit process is traced, whatever it is, and still runs. */
START_TEST(test_int80)
{
	static const struct sc_case cases[] = {
	    C(__NR_getpid, ALLOWED, PID, 0),
	    {.nr = CASE_INT80_GETPID, .traced = true, .expect = RES_PID},
	    C(__NR_getpid, ALLOWED, PID, 1),
	};
	const struct table t = {"int80", {S1, E1, 0, T1}, 0, 0, cases, ARRAY_SIZE(cases)};
	struct run run;

	if (!int80_works()) {
		fprintf(stderr, "seccomp: test_int80 skipped: int $0x80 does not work here "
				"(no IA32 emulation)\n");
		return;
	}
	run_table(&t, &run);
	check_run(&t, &run, run.pid, 0);
	ck_assert_uint_eq(run.n_stops, 1);
	ck_assert_uint_eq(run.stops[0].arch, AUDIT_ARCH_I386);
	run_free(&run);
}
END_TEST

/*
 * The kernel's budget: filters are installed until the kernel refuses one
 * with ENOMEM. Every installed filter costs its length + 4 of 32768, and the
 * length the kernel counts is that of its eBPF translation: at least n, at
 * most 3n + 3 (a conditional jump becomes up to three instructions).
 */
START_TEST(test_kernel_budget)
{
	const struct inj_guard_window w = {S1, E1, 0, T1};
	struct sock_filter *insns = NULL;
	struct sock_fprog prog;
	long inherited = 0;
	int pipefd[2], st;
	size_t n;
	struct {
		long count;
		int err;
	} res;
	pid_t pid;

	ck_assert_int_eq(inj_seccomp_build(&w, &insns, &n), 0);
	prog = (struct sock_fprog){(unsigned short)n, insns};
	/* Filters the test runs under already (a container's, say) count too. */
	procstat_status_field("/proc/self/status", "Seccomp_filters", &inherited);
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		res.count = 0;
		res.err = 0;
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
			_exit(1);
		while (res.count < 100000) {
			if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
				res.err = errno;
				break;
			}
			res.count++;
		}
		_exit(write(pipefd[1], &res, sizeof(res)) == sizeof(res) ? 0 : 2);
	}
	close(pipefd[1]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(read(pipefd[0], &res, sizeof(res)), sizeof(res));
	close(pipefd[0]);
	free(insns);

	ck_assert_int_eq(res.err, ENOMEM);
	ck_assert_int_gt(res.count, 0);
	ck_assert_int_le(res.count, (KERNEL_MAX_INSNS_PER_PATH + 4) / ((long)n + 4));
	if (inherited == 0)
		ck_assert_int_ge(res.count, (KERNEL_MAX_INSNS_PER_PATH + 4) / (3 * (long)n + 7));
	/* The translated length L: count * (L + 4) <= 32772 < (count + 1) * (L + 4). */
	fprintf(stderr,
		"seccomp: %ld filters of %zu instructions fit in one process (%ld inherited): "
		"the kernel counts each as %ld..%ld instructions + 4\n",
		res.count, n, inherited, (KERNEL_MAX_INSNS_PER_PATH + 4) / (res.count + 1) - 4 + 1,
		(KERNEL_MAX_INSNS_PER_PATH + 4) / res.count - 4);
}
END_TEST

static Suite *seccomp_suite(void)
{
	Suite *s = suite_create("seccomp");
	TCase *build = tcase_create("build");
	TCase *kernel = tcase_create("kernel");

	tcase_add_test(build, test_bad_windows);
	tcase_add_test(build, test_length);
	suite_add_tcase(s, build);

	tcase_set_timeout(kernel, 120);
	tcase_add_loop_test(kernel, test_table, 0, ARRAY_SIZE(tables));
	tcase_add_loop_test(kernel, test_random, 0, ARRAY_SIZE(windows));
	tcase_add_test(kernel, test_int80);
	tcase_add_test(kernel, test_kernel_budget);
	suite_add_tcase(s, kernel);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(seccomp_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
