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

/*
 * A move of the region that a thread blocked in vfork did not see: the
 * region was at [old, old + size) and moved by delta. Applied to that
 * thread's registers and stack when the vfork returns.
 */
struct guard_stale {
	pid_t tid;
	uint64_t old, size;
	int64_t delta;
};

/* Per target: what is installed. Fork children inherit it (the filter too). */
struct guard {
	bool active;	       /* requests are trapped (a filter, or PTRACE_SYSCALL) */
	bool syscall_mode;     /* every syscall stops at entry (--no-seccomp, or no filter fits) */
	struct range *windows; /* the window of every filter installed, oldest first */
	size_t n_windows;
	size_t filter_insns; /* their total length, which the kernel caps per process */
	uint64_t start_brk;
	/* A window to install once a thread of the process can run the call (all were in vfork). */
	bool window_pending;
	struct range pending;
	struct guard_stale *stale; /* moves threads blocked in vfork have yet to see */
	size_t n_stale;
	struct range *reserved; /* the PROT_NONE mappings left in the windows at detach */
	size_t n_reserved;
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

/*
 * The window's margin on each side of a region of size bytes: a region
 * placed with that much free space around it can move within its window.
 */
uint64_t guard_window_margin(uint64_t size);

/*
 * The process whose address space tg runs in: tg itself, or for a vfork
 * child the parent it borrows it from (the first that is no vfork child).
 * The region, its relocation and its windows are that process's.
 */
struct target *guard_mm_owner(struct target *tg);

/* A fork child's copy of its parent's guard. 0 or -ENOMEM. */
int guard_inherit(struct target *child, const struct target *parent);
void guard_free(struct guard *g);

/*
 * A stop of thread t that may be the guard's: a seccomp stop (or a syscall
 * entry in PTRACE_SYSCALL mode), or a SIGSEGV of stack growth into the
 * region. tg may be a vfork child: its requests are judged against the
 * region of the address space it runs in, and a move stops every process
 * that runs there. Returns true when the guard handled it and the thread is
 * resumed (or the target is gone); false when the caller resumes t as usual.
 */
bool guard_on_stop(struct target *tg, struct inj_thread *t, const struct inj_stop *st);

/*
 * With the world stopped, before it is resumed: threads that reached a
 * trapped request meanwhile sit at its stop (tg's, and its vfork
 * children's). Moves the region for any whose request collides; vfork
 * children that a move stopped are resumed. 0, -ESRCH, -errno.
 */
int guard_before_resume(struct target *tg);

/* Instructions of seccomp filter the kernel still takes from this process. */
size_t guard_filter_room(const struct guard *g);

/*
 * Threads of tg stopped at PTRACE_EVENT_VFORK_DONE: the region may have
 * moved while they were blocked in vfork (a vfork child's request collided
 * with it). Rewrites what of theirs still leads to an old place: the
 * instruction pointer, the register that holds vfork's return address, and
 * return addresses on their stacks. Installs a window that had to wait for
 * a thread that can run the call. The threads stay stopped.
 */
void guard_vfork_done(struct target *tg);

/*
 * At detach, once the region is removed, with the world stopped: maps the
 * free parts of every guarded window PROT_NONE (private, anonymous,
 * MAP_FIXED_NOREPLACE), so that the kernel places nothing there and the
 * filters left behind match only requests aimed into them (DESIGN.md,
 * "After optd is gone"). Records them in tg->guard.reserved, and warns about
 * mappings of the target's that lie in a window. Nothing for a vfork child
 * (its parent holds the address space). 0, -ESRCH, -errno of the first
 * mapping that failed.
 */
int guard_reserve(struct target *tg);

/* The latency percentile p (0..100) in µs, of sorted samples. */
double guard_latency_percentile(const struct guard_stats *s, double p);
