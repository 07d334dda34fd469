/*
 * A target: one traced process (thread group) and what optd did to it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "guard.h"
#include "placement.h"
#include "process.h"
#include "region.h"

struct relocation;
struct profile;
struct inj_unwinder;
struct event;

struct supervisor;

enum target_state {
	TARGET_ATTACHING, /* seized, not yet stopped */
	TARGET_INJECTING, /* world stopped, region being created */
	TARGET_RUNNING,	  /* region in place, threads running */
	TARGET_DETACHING, /* world stopped, region being removed */
	TARGET_GONE,	  /* exited or detached */
};

struct target {
	struct supervisor *sv;
	struct target *next;
	pid_t pid;
	enum target_state state;
	struct inj_process *proc;
	struct inj_region *region;   /* NULL when the process holds none of its own */
	struct target *mm_owner;     /* vfork child: the parent whose address space it borrows */
	struct relocation *rel;	     /* copied functions and their entry patches, or NULL */
	struct profile *profile;     /* hot: sampling in progress */
	struct event *profile_timer; /* hot: ends the sampling window */
	struct event *retry_timer;   /* relocation waits for the unwinder to be free */
	int relocate_tries;	     /* relocations put off because it was not */
	uint64_t relocate_pause_us;  /* hot: the stop-the-world that relocated */
	bool root;		     /* the process the user named */
	uint64_t entry_bp;	     /* AT_ENTRY while an int3 waits there for relocation, else 0 */
	uint8_t entry_byte;	     /* the byte the int3 replaced */
	char perf_map[64];	     /* the perf map written for the copies, "" if none */
	struct guard guard;	     /* the seccomp filters that trap requests for the region */
	struct placement placement;  /* --placement=adversarial: what the image asked for */
	struct inj_unwinder *unwinder;	       /* kept for the walks of target_region_returns() */
	const struct relocation *unwinder_rel; /* the relocation whose copies it translates */
	bool perf_map_stale; /* the region moved: the perf map is rewritten (target_after_move()) */
	struct event *perf_map_timer; /* when */

	/* Statistics. */
	uint64_t attach_stop_us;  /* asking threads to stop until they have */
	uint64_t attach_pause_us; /* stopped until resumed */
	uint64_t detach_stop_us;
	uint64_t detach_pause_us;
	size_t max_threads;
	bool exited;
	int wait_status; /* valid when exited */
};

const char *target_state_name(enum target_state s);

/* A return address (or signal frame's saved rip) into the region, and where it is stored. */
struct target_return {
	pid_t tid;
	uint64_t slot;
	uint64_t ip;
};

/*
 * Walks every thread's stack (the originals' CFI for frames in copies) and
 * lists the slots that hold a return address into tg's region. The world
 * must be stopped. *ret_incomplete counts the stacks that could not be
 * walked to their outermost frame. 0, -ENOMEM, -errno.
 */
int target_region_returns(struct target *tg, struct target_return **ret, size_t *ret_n,
			  size_t *ret_incomplete);

/*
 * The region moved (the guard), with the world stopped: the statistics follow
 * it at once, the perf map once the target runs again, PERF_MAP_DELAY_MS
 * later (target_after_move()), and at the latest when the target is released.
 */
#define PERF_MAP_DELAY_MS 100
void target_region_moved(struct target *tg);
void target_after_move(struct target *tg);

/*
 * A stop of tg's world that the guard asked for found the process gone
 * (-ESRCH) or its address space replaced by an execve (-ECANCELED): does
 * what the event loop does when it sees that exit or exec. tg may be freed.
 */
void target_stop_interrupted(struct target *tg, int r);
