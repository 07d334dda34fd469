/*
 * Where optd's region goes (--placement).
 *
 * near (the default) is place_find()'s answer: as close as possible to what
 * the copies reach, out of the way of the heap's and the stack's growth and
 * of known hint ranges, so that the target's requests rarely meet optd's
 * pages.
 *
 * adversarial is a validation mode that does the opposite: the region goes
 * where the target is about to ask, so that its requests do collide and the
 * guard has to move the pages (DESIGN.md, "The guard"). The candidates, in
 * order; each is the first place from its start, in its direction, that is
 * free (a free page on each side), clear of the request that collided and
 * within rel32 reach of what the copies refer to (or will refer to), no
 * further than 256 MiB from the start:
 *
 *   after a collision, where the request shows the target is heading:
 *     brk        above the new break;
 *     mmap, mremap, shmat
 *                past the range it asked for, in the direction a series of
 *                such requests goes (upward unless the last two went down);
 *     stack      further down the stack's growth area, below the fault;
 *   each time a back-off further away (PLACEMENT_BACKOFF, doubling with
 *   every adversarial move), so that the moves grow with the logarithm of
 *   how far the target goes; after PLACEMENT_MAX_MOVES, or once less than
 *   half the kernel's budget for seccomp filters is left (a move out of
 *   every guarded window installs one), placement is near again;
 *   then, and for the first placement of an image:
 *     the Go runtime's first arena hint, for a Go executable;
 *     the main stack's growth area, just below [stack] and its guard gap;
 *     just above the program break.
 *
 * The Go hint and the stack lie hundreds of GiB from any executable, out
 * of rel32 reach: with copies (--relocate other than none) the region goes
 * above the break, without them to the far places.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "maps.h"
#include "range.h"
#include "request.h"

struct target;

enum placement_policy {
	PLACEMENT_NEAR = 0,
	PLACEMENT_ADVERSARIAL,
};

/* The first back-off, and how many adversarial moves an image gets. */
#define PLACEMENT_BACKOFF (64ULL << 10)
#define PLACEMENT_MAX_MOVES 16

enum placement_hit_kind {
	PLACEMENT_HIT_NONE = 0, /* nothing collided yet: the image's first placement */
	PLACEMENT_HIT_BRK,
	PLACEMENT_HIT_MAP,   /* mmap, mremap, shmat: the target maps a range */
	PLACEMENT_HIT_STACK, /* stack growth */
	PLACEMENT_HIT_OTHER, /* munmap, mprotect, madvise, ...: no direction */
};

#define PLACEMENT_MAX_CLEAR INJ_REQUEST_MAX_RANGES

/* What collided with the region. */
struct placement_hit {
	enum placement_hit_kind kind;
	uint64_t addr;	   /* brk: the new break; stack: the fault address */
	struct range head; /* mmap, mremap, shmat: the range mapped (mremap: its new place) */
	struct range clear[PLACEMENT_MAX_CLEAR]; /* what the region must stay out of */
	unsigned n_clear;
};

/* Per target, for its current image; a fork child starts with a copy of its parent's. */
struct placement {
	unsigned moves;		       /* adversarial moves of this image */
	bool go;		       /* the executable is a Go program */
	struct placement_hit hit;      /* the latest collision */
	struct placement_hit prev_map; /* the mapping collision before the latest one */
};

/* The address space as the adversarial choice sees it (placement_pick()). */
struct placement_facts {
	uint64_t size;	      /* region bytes, a page multiple */
	uint64_t reach_lo;    /* the region must reach [reach_lo, reach_hi) with rel32; */
	uint64_t reach_hi;    /* reach_hi == 0: it need not */
	uint64_t brk;	      /* the current break, 0 if unknown */
	uint64_t stack_start; /* the main thread's [stack], 0 if none */
	uint64_t stack_end;
	uint64_t stack_limit;	  /* RLIMIT_STACK, capped */
	uint64_t stack_guard_gap; /* the kernel's gap below a growing stack */
	uint64_t mmap_min_addr;
	uint64_t go_hint; /* the Go runtime's first arena hint, 0 if not a Go program */
	const struct placement_hit *hit;      /* NULL for a first placement */
	const struct placement_hit *prev_map; /* the mapping collision before, or NULL */
	unsigned moves;			      /* adversarial moves so far */
};

/*
 * The adversarial choice over the maps model m: pure logic, no target
 * access. 0 with *ret_addr (page aligned) and *ret_what (a phrase for
 * logs: "above the break", ...); -ENOENT when no candidate fits (the
 * caller places near); -ENOMEM.
 */
int placement_pick(const struct maps *m, const struct placement_facts *f, uint64_t *ret_addr,
		   const char **ret_what);

/*
 * A new image of tg is about to get its region (the world is stopped;
 * m is its maps). Forgets what the previous image asked for. With
 * --placement=adversarial and no --arena-at, offers the first place:
 * 0 and *ret_addr; -ENOENT to place near; -ESRCH, -errno. Reach:
 * [near_start, near_end) when the target will get copies.
 */
int placement_initial(struct target *tg, const struct maps *m, uint64_t near_start,
		      uint64_t near_end, uint64_t size, uint64_t *ret_addr);

/* The guard: req (or stack growth at fault address addr) collided with the region. */
void placement_note_request(struct target *tg, const struct inj_request *req);
void placement_note_stack(struct target *tg, uint64_t addr);

/*
 * Where the region goes after the latest collision, with --placement=
 * adversarial (the world is stopped; m is the maps as they are). [lo, hi)
 * is what the copies reach, checked when the target has or will have
 * copies. 0 and *ret_addr; -ENOENT to place near; -ESRCH, -errno.
 */
int placement_after_hit(struct target *tg, const struct maps *m, uint64_t lo, uint64_t hi,
			uint64_t size, uint64_t *ret_addr);
