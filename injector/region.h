/*
 * optd's region in a target: a page-aligned anonymous mapping whose first
 * page is the header (region_header.h) and whose rest is the code area.
 * It is mapped read+write, written, and protected read+execute before any
 * target thread could run it (W^X as the target sees it).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "maps.h"
#include "process.h"
#include "range.h"
#include "region_header.h"

#define INJ_HUGE_PAGE (2ULL << 20)

struct inj_region {
	uint64_t base;		       /* where the header page is (offset 0 of the layout) */
	uint64_t size;		       /* bytes in all pieces */
	uint64_t huge_pages;	       /* 2 MiB pages advised MADV_HUGEPAGE */
	struct optd_region_header hdr; /* our copy of what the target holds */
	/* Where the bytes are (region_header.h); one piece at base until a part moves. */
	struct optd_region_piece pieces[OPTD_REGION_MAX_PIECES];
	unsigned n_pieces;
};

/* The hazards of a target's address space as place_find() wants them. */
struct inj_place_policy {
	uint64_t heap_reserve;	  /* bytes above the break kept free */
	uint64_t stack_guard_gap; /* the kernel's stack_guard_gap, 1 MiB by default */
	uint64_t gap;		  /* free bytes between the region and any mapping */
	const struct rangeset *avoid;
	uint64_t start_brk; /* where the heap starts (/proc/PID/stat), 0 if unknown */
};

/*
 * Finds a place for size bytes within rel32 reach of [near_start, near_end)
 * that keeps clear of the heap's growth (above the current break), the
 * stack's growth (RLIMIT_STACK plus the guard gap below the main stack) and
 * mmap_min_addr. The break is the end of the [heap] mapping in m (rounded up
 * to a page), or policy->start_brk when m has none (an empty heap); only when
 * neither is known is it asked with a remote brk(0) through t, which must
 * then be stopped. 0 and *ret_addr, -ENOSPC, -ESRCH, -errno.
 */
int inj_region_find_place(struct inj_thread *t, const struct maps *m, uint64_t near_start,
			  uint64_t near_end, uint64_t size, uint64_t align,
			  const struct inj_place_policy *policy, uint64_t *ret_addr);

/* The program break of t's process, from a remote brk(0) through t (stopped). 0, -ESRCH, -errno. */
int inj_region_brk(struct inj_thread *t, uint64_t *ret);
/* How far pid's main stack may grow: RLIMIT_STACK, capped at 4 GiB (also when unlimited). */
uint64_t inj_stack_limit(pid_t pid);
/* The lowest address the kernel lets a process map (/proc/sys/vm/mmap_min_addr). */
uint64_t inj_mmap_min_addr(void);

/*
 * Maps size bytes at exactly addr (MAP_FIXED_NOREPLACE), advises huge pages
 * for every aligned 2 MiB it spans, writes the header and fills the code area
 * with int3, then protects it r-x. Needs t stopped. On failure the target is
 * left as it was. 0, -EEXIST (addr is taken), -ESRCH, -errno.
 */
int inj_region_create(struct inj_thread *t, uint64_t addr, uint64_t size, struct inj_region **ret);

/* The piece holding address addr of the target, or NULL. */
const struct optd_region_piece *inj_region_piece_at(const struct inj_region *r, uint64_t addr);

static inline bool inj_region_contains(const struct inj_region *r, uint64_t addr)
{
	return inj_region_piece_at(r, addr) != NULL;
}

/* Whether any piece meets [start, end). */
bool inj_region_overlaps(const struct inj_region *r, uint64_t start, uint64_t end);

/* The address of offset off of the region's layout, where its piece is now. */
uint64_t inj_region_addr(const struct inj_region *r, uint64_t off);

/*
 * Records that the bytes at [start, end), all in one piece, now live at to:
 * the piece splits (and neighbours that meet again in both the layout and
 * the address space join). base and the header's base and flags follow.
 * 0, -EINVAL (not inside one piece), -ENOSPC (more pieces than the table holds).
 */
int inj_region_move_part(struct inj_region *r, uint64_t start, uint64_t end, uint64_t to);

/* Writes the header and the piece table into the header page. 0, -ESRCH, -errno. */
int inj_region_write_header(struct inj_process *p, const struct inj_region *r);

/* Unmaps every piece of the region from the target through t. 0, -ESRCH, -errno. */
int inj_region_remove(struct inj_thread *t, struct inj_region *r);

/* Reads the header at addr and checks magic and version. 0, -ENOENT if no region is there. */
int inj_region_read_header(struct inj_process *p, uint64_t addr, struct optd_region_header *ret);

void inj_region_free(struct inj_region *r);
