/*
 * Choosing where optd's region goes. Pure logic over an address-space model:
 * no syscalls, no target access, so it is tested table-driven on recorded maps.
 */
#pragma once

#include <stdint.h>

#include "maps.h"
#include "range.h"

/* rel32 and disp32 reach: a signed 32-bit displacement. */
#define PLACE_REACH_REL32 0x7fffffffULL
/* Highest user address on x86-64 with 4-level paging (end of the last mappable page). */
#define PLACE_USER_TOP 0x7ffffffff000ULL

struct place_request {
	uint64_t size;	/* bytes; a multiple of the page size, > 0 */
	uint64_t align; /* power of two >= 4096 */

	/*
	 * Every byte of the region must reach every byte of [near_start, near_end)
	 * with a signed 32-bit displacement, and back. near_end == 0: no reach limit.
	 */
	uint64_t near_start;
	uint64_t near_end;

	/* Hazards: ranges the region must stay clear of. 0 = unknown / none. */
	uint64_t brk;		/* current program break */
	uint64_t heap_reserve;	/* bytes above brk kept free for heap growth */
	uint64_t stack_top;	/* end of the main thread's [stack] mapping */
	uint64_t stack_reserve; /* bytes below stack_top kept free: RLIMIT_STACK + guard gap */
	uint64_t mmap_min_addr; /* lowest address the kernel lets anyone map */
	uint64_t gap;		/* free bytes kept between the region and any mapping */
	const struct rangeset *avoid; /* more ranges to keep clear of (hint ranges); may be NULL */
};

/*
 * Finds a free, aligned address for req->size bytes that satisfies the reach
 * constraint and avoids every hazard, as close to [near_start, near_end) as
 * possible. Returns 0 and sets *ret_addr, -EINVAL for a malformed request,
 * -ENOSPC when no place fits.
 */
int place_find(const struct maps *m, const struct place_request *req, uint64_t *ret_addr);

/*
 * The program break as far as placement needs it, from the maps alone: the
 * kernel names [heap] the mapping that spans from start_brk to the break
 * (show_map_vma()), so the highest end of one is the break rounded up to a
 * page; with none the heap is empty and the break is start_brk (from
 * /proc/PID/stat; 0 if unknown). 0 when neither tells.
 */
uint64_t place_break(const struct maps *m, uint64_t start_brk);

/*
 * Fills ret with the union of every hazard range of req (heap growth, stack
 * growth, below mmap_min_addr, req->avoid, above PLACE_USER_TOP). 0 or -ENOMEM.
 */
int place_hazards(const struct place_request *req, struct rangeset *ret);
