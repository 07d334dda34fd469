/*
 * The guard (DESIGN.md, "The guard"): optd's pages must never make the
 * target's own address-space requests come out differently. A seccomp
 * filter traps the requests that can touch the guarded window around the
 * region; one that collides with the region makes optd stop the world,
 * move the region's pages elsewhere (a remote mremap per mapping), adjust
 * everything that refers to them, and let the request run as it would have
 * without optd. Stack growth into the region arrives as a SIGSEGV stop.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "process.h"
#include "range.h"
#include "request.h"

struct target;
struct supervisor;

/* Per target: what is installed. Fork children inherit it (the filter too). */
struct guard {
	bool active;	       /* requests are trapped (a filter, or PTRACE_SYSCALL) */
	bool syscall_mode;     /* --no-seccomp: every syscall stops at entry */
	struct range *windows; /* the window of every filter installed, oldest first */
	size_t n_windows;
	size_t filter_insns; /* their total length, which the kernel caps per process */
	uint64_t start_brk;
	uint64_t
	    tag; /* optd's remote syscalls carry it past the filters (seccomp.h); 0 = none yet */
};

/* What the guard did, over every process of the session. */
struct guard_stats {
	uint64_t collisions[INJ_REQ_KINDS]; /* by request kind */
	uint64_t stack;			    /* stack growth into the region */
	uint64_t traps;			    /* stops that were looked at */
	uint64_t colliding;
	uint64_t moves;
	uint32_t *latency_us; /* trap to resume, per colliding request */
	size_t n_latency, cap_latency;
};

/*
 * Starts guarding tg's region: installs a filter for its window in every
 * thread (TSYNC), setting no-new-privs first when the process lacks
 * CAP_SYS_ADMIN; or, with --no-seccomp, resumes with PTRACE_SYSCALL. The
 * world must be stopped. 0, -ESRCH, -errno (the target is unchanged).
 */
int guard_install(struct target *tg);

/* A fork child's copy of its parent's guard. 0 or -ENOMEM. */
int guard_inherit(struct target *child, const struct target *parent);
void guard_free(struct guard *g);

/*
 * A stop of thread t that may be the guard's: a seccomp stop (or a syscall
 * entry with --no-seccomp), or a SIGSEGV of stack growth into the region.
 * Returns true when the guard handled it and the thread is resumed (or the
 * target is gone); false when the caller resumes t as usual.
 */
bool guard_on_stop(struct target *tg, struct inj_thread *t, const struct inj_stop *st);

/*
 * With the world stopped, before it is resumed: threads that reached a
 * trapped request meanwhile sit at its stop. Moves the region for any whose
 * request collides. 0, -ESRCH, -errno.
 */
int guard_before_resume(struct target *tg);

/* The latency percentile p (0..100) in µs, of sorted samples. */
double guard_latency_percentile(const struct guard_stats *s, double p);
