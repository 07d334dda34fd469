/*
 * Classifying address-space requests (request.h).
 */
#include <errno.h>
#include <linux/audit.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "mem.h"
#include "ptrace.h"
#include "request.h"
#include "util.h"

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#define NR_MAP_SHADOW_STACK 453
#define NR_MSEAL 462
#define PAGE 4096ULL
/* process_madvise takes at most UIO_MAXIOV ranges. */
#define MAX_IOV 1024

const char *inj_request_kind_name(enum inj_request_kind k)
{
	static const char *const names[] = {
	    [INJ_REQ_NONE] = "none",	   [INJ_REQ_MMAP] = "mmap",
	    [INJ_REQ_BRK] = "brk",	   [INJ_REQ_MREMAP] = "mremap",
	    [INJ_REQ_MUNMAP] = "munmap",   [INJ_REQ_MPROTECT] = "mprotect",
	    [INJ_REQ_MADVISE] = "madvise", [INJ_REQ_SHMAT] = "shmat",
	    [INJ_REQ_OTHER] = "other",
	};
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "?";
}

/* Adds [addr, addr + len) rounded out to pages; a range that wraps reaches the top. */
static void add_range(struct inj_request *req, uint64_t addr, uint64_t len)
{
	uint64_t start = ALIGN_DOWN(addr, PAGE), end;

	if (!len || req->n_ranges == INJ_REQUEST_MAX_RANGES)
		return;
	end = addr + len < addr || addr + len > UINT64_MAX - PAGE ? UINT64_MAX & ~(PAGE - 1)
								  : ALIGN_UP(addr + len, PAGE);
	if (end <= start)
		return;
	req->ranges[req->n_ranges++] = (struct range){start, end};
}

/* process_madvise(pidfd, iovec, vlen, advice, flags): the ranges are in the target's memory. */
static int add_iovec(struct inj_thread *t, struct inj_request *req, uint64_t iov, uint64_t vlen)
{
	struct iovec v[MAX_IOV];
	uint64_t lo = UINT64_MAX, hi = 0;
	int r;

	if (!vlen || vlen > MAX_IOV)
		return 0; /* EINVAL natively, whatever is mapped */
	r = inj_mem_read(t->proc, iov, v, vlen * sizeof(v[0]));
	if (r < 0) {
		/* EFAULT natively; if the vector cannot be read, assume the worst. */
		add_range(req, 0, UINT64_MAX);
		return r == -ESRCH ? r : 0;
	}
	for (uint64_t i = 0; i < vlen; i++) {
		uint64_t b = (uint64_t)(uintptr_t)v[i].iov_base, e = b + v[i].iov_len;
		if (!v[i].iov_len)
			continue;
		lo = b < lo ? b : lo;
		hi = e < b ? UINT64_MAX : (e > hi ? e : hi);
	}
	if (lo < hi)
		add_range(req, lo, hi - lo);
	return 0;
}

static void classify(struct inj_request *req, uint64_t start_brk)
{
	const uint64_t *a = req->args;
	long nr = req->nr & ~(long)__X32_SYSCALL_BIT;

	switch (nr) {
	case SYS_mmap:
		req->kind = INJ_REQ_MMAP;
		if (a[0])
			add_range(req, a[0], a[1]);
		break;
	case SYS_brk:
		req->kind = INJ_REQ_BRK;
		if (a[0] > start_brk)
			add_range(req, start_brk, ALIGN_UP(a[0], PAGE) + PAGE - start_brk);
		break;
	case SYS_mremap:
		req->kind = INJ_REQ_MREMAP;
		add_range(req, a[0], a[1] > a[2] ? a[1] : a[2]);
		if (a[3] & MREMAP_FIXED)
			add_range(req, a[4], a[2]);
		break;
	case SYS_munmap:
		req->kind = INJ_REQ_MUNMAP;
		add_range(req, a[0], a[1]);
		break;
	case SYS_mprotect:
	case SYS_pkey_mprotect:
		req->kind = INJ_REQ_MPROTECT;
		add_range(req, a[0], a[1]);
		break;
	case SYS_madvise:
		req->kind = INJ_REQ_MADVISE;
		add_range(req, a[0], a[1]);
		break;
	case SYS_shmat: {
		struct shmid_ds ds;
		req->kind = INJ_REQ_SHMAT;
		if (!a[1])
			break;
		/*
		 * The segment's size decides the range. optd shares the
		 * target's IPC namespace in the usual case; if the segment
		 * cannot be looked at, the request may reach anything above.
		 */
		if (shmctl((int)a[0], IPC_STAT, &ds) == 0)
			add_range(req, a[1], ds.shm_segsz);
		else
			add_range(req, a[1], UINT64_MAX - a[1]);
		break;
	}
	case SYS_msync:
	case SYS_mincore:
	case SYS_mlock:
	case SYS_munlock:
	case SYS_mlock2:
	case SYS_mbind:
	case SYS_remap_file_pages:
	case NR_MAP_SHADOW_STACK:
	case NR_MSEAL:
		req->kind = INJ_REQ_OTHER;
		add_range(req, a[0], a[1]);
		break;
	default:
		req->kind = INJ_REQ_NONE;
		break;
	}
}

/*
 * The syscall t is stopped at: read once per stop (it is the registers'
 * contents at the syscall's entry, which change only if t runs or they are
 * set). 0, -EINVAL (not at such a stop), -ESRCH, -errno.
 */
static int thread_call(struct inj_thread *t)
{
	struct __ptrace_syscall_info info;
	long n;

	if (t->call_cached && t->call_stamp == inj_ptrace_regs_stamp(t->tid))
		return 0;
	t->call_cached = false;
	n = inj_ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof(info), (uint64_t)(uintptr_t)&info);
	if (n < 0)
		return (int)n;
	if (info.op == PTRACE_SYSCALL_INFO_SECCOMP) {
		t->call_nr = (long)info.seccomp.nr;
		memcpy(t->call_args, info.seccomp.args, sizeof(t->call_args));
	} else if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
		t->call_nr = (long)info.entry.nr;
		memcpy(t->call_args, info.entry.args, sizeof(t->call_args));
	} else {
		return -EINVAL;
	}
	t->call_arch = info.arch;
	t->call_stamp = inj_ptrace_regs_stamp(t->tid);
	t->call_cached = true;
	return 0;
}

int inj_thread_request(struct inj_thread *t, uint64_t start_brk, struct inj_request *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	r = thread_call(t);
	if (r < 0)
		return r;
	ret->nr = t->call_nr;
	memcpy(ret->args, t->call_args, sizeof(ret->args));
	ret->arch = t->call_arch;
	if (ret->arch != AUDIT_ARCH_X86_64) {
		/* An i386 syscall (int $0x80) reaches only the low 4 GiB; its numbers differ. */
		ret->kind = INJ_REQ_OTHER;
		add_range(ret, 0, 1ULL << 32);
		return 0;
	}
	classify(ret, start_brk);
	if (ret->nr == SYS_process_madvise) {
		ret->kind = INJ_REQ_MADVISE;
		r = add_iovec(t, ret, ret->args[1], ret->args[2]);
		if (r < 0)
			return r;
	}
	return 0;
}

bool inj_request_overlaps(const struct inj_request *req, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < req->n_ranges; i++)
		if (req->ranges[i].start < end && req->ranges[i].end > start)
			return true;
	return false;
}
