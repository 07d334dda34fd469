/*
 * What a thread stopped at a syscall asks of the address space: which
 * ranges of it the pending syscall can create, replace, change or read the
 * state of. The guard compares them with optd's pages.
 *
 * Pure description, no policy: the kind of request and its ranges, rounded
 * out to pages, as the kernel would see them. A range is conservative where
 * the kernel's answer depends on state the arguments do not show (the size
 * of a SysV segment that cannot be looked up, an i386 syscall from a 64-bit
 * process): it then covers everything the request could reach.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "process.h"
#include "range.h"

enum inj_request_kind {
	INJ_REQ_NONE = 0, /* not an address-space request */
	INJ_REQ_MMAP,	  /* mmap with an address: MAP_FIXED, MAP_FIXED_NOREPLACE or a hint */
	INJ_REQ_BRK,	  /* brk growth */
	INJ_REQ_MREMAP,
	INJ_REQ_MUNMAP,
	INJ_REQ_MPROTECT, /* mprotect, pkey_mprotect */
	INJ_REQ_MADVISE,  /* madvise, process_madvise */
	INJ_REQ_SHMAT,
	INJ_REQ_OTHER, /* msync, mincore, mlock*, munlock, mbind, remap_file_pages, mseal, ... */
	INJ_REQ_KINDS,
};

/* "mmap", "brk", ... "other": the names --stats uses. */
const char *inj_request_kind_name(enum inj_request_kind k);

#define INJ_REQUEST_MAX_RANGES 4

struct inj_request {
	enum inj_request_kind kind;
	long nr;       /* the syscall number as the thread issued it */
	uint32_t arch; /* AUDIT_ARCH_* */
	uint64_t args[6];
	struct range ranges[INJ_REQUEST_MAX_RANGES]; /* page-rounded, non-empty */
	unsigned n_ranges;
};

/*
 * Reads the syscall that thread t, stopped at a seccomp or syscall-entry
 * stop, is about to make (PTRACE_GET_SYSCALL_INFO) and describes it.
 * start_brk is the process's start_brk (/proc/PID/stat): a brk request
 * covers [start_brk, new break + one page), the page the kernel keeps free
 * below the next mapping. The syscall is read once per stop (again only
 * after t ran or its registers were set). 0, -ESRCH, -EINVAL (not at such a
 * stop), -errno.
 */
int inj_thread_request(struct inj_thread *t, uint64_t start_brk, struct inj_request *ret);

/* True if some range of req overlaps [start, end). */
bool inj_request_overlaps(const struct inj_request *req, uint64_t start, uint64_t end);
