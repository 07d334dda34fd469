/*
 * The region place search.
 *
 * The address space is cut into "blocked" ranges (every mapping widened by
 * req->gap on both sides, plus every hazard) and the free gaps between them.
 * The reach constraint turns into one window [lo, hi) the region must lie in.
 * Inside each free gap the distance to the near span is a convex function of
 * the address (falling, then zero, then rising), so the best aligned address
 * in a gap is one of a handful of candidates: the gap's own ends and the
 * aligned neighbours of the points where the distance reaches zero. All
 * arithmetic saturates instead of wrapping, since mappings such as
 * [vsyscall] end within a page of 2^64.
 */
#include <errno.h>
#include <stdbool.h>

#include "place.h"
#include "util.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a < b ? 0 : a - b;
}

/* Rounds up to align (a power of two); false if that passes 2^64. */
static bool align_up(uint64_t x, uint64_t align, uint64_t *ret)
{
	if (x > UINT64_MAX - (align - 1))
		return false;
	*ret = ALIGN_DOWN(x + (align - 1), align);
	return true;
}

/*
 * Page 0 is a hazard even when mmap_min_addr is unknown (0): code at NULL
 * would turn the target's NULL calls into jumps into our pages, and an
 * address of 0 cannot be told from "no address" by callers.
 */
int place_hazards(const struct place_request *req, struct rangeset *ret)
{
	uint64_t low;
	int r;

	rangeset_clear(ret);

	low = req->mmap_min_addr > PAGE_SIZE_4K ? req->mmap_min_addr : PAGE_SIZE_4K;
	if (!align_up(low, PAGE_SIZE_4K, &low))
		low = UINT64_MAX;
	r = rangeset_add(ret, 0, low);
	if (r < 0)
		return r;

	if (req->brk) {
		r = rangeset_add(ret, req->brk, sat_add(req->brk, req->heap_reserve));
		if (r < 0)
			return r;
	}
	if (req->stack_top) {
		r = rangeset_add(ret, sat_sub(req->stack_top, req->stack_reserve), req->stack_top);
		if (r < 0)
			return r;
	}
	r = rangeset_add(ret, PLACE_USER_TOP, UINT64_MAX);
	if (r < 0)
		return r;

	if (req->avoid)
		for (size_t i = 0; i < req->avoid->n; i++) {
			r = rangeset_add(ret, req->avoid->v[i].start, req->avoid->v[i].end);
			if (r < 0)
				return r;
		}
	return 0;
}

/* Where a candidate lies relative to the near span; lower sorts first on ties. */
enum side {
	SIDE_BELOW = 0,
	SIDE_OVERLAP,
	SIDE_ABOVE,
};

struct candidate {
	bool valid;
	uint64_t addr;
	uint64_t dist;
	enum side side;
};

static struct candidate judge(const struct place_request *req, uint64_t a)
{
	struct candidate c = {.valid = true, .addr = a};
	uint64_t end = a + req->size; /* no wrap: a lies in a gap below 2^64 - size */

	if (end <= req->near_start) {
		c.side = SIDE_BELOW;
		c.dist = req->near_start - end;
	} else if (a >= req->near_end) {
		c.side = SIDE_ABOVE;
		c.dist = a - req->near_end;
	} else {
		c.side = SIDE_OVERLAP;
		c.dist = 0;
	}
	return c;
}

static bool better(const struct candidate *x, const struct candidate *y)
{
	if (!y->valid)
		return x->valid;
	if (!x->valid)
		return false;
	if (x->dist != y->dist)
		return x->dist < y->dist;
	if (x->side != y->side)
		return x->side < y->side;
	return x->addr < y->addr;
}

static uint64_t clamp(uint64_t x, uint64_t lo, uint64_t hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

/* Best aligned address in [a_lo, a_hi] (both aligned) by distance to the near span. */
static void consider_near(const struct place_request *req, uint64_t a_lo, uint64_t a_hi,
			  struct candidate *best)
{
	uint64_t targets[2], pts[6];
	size_t n = 0, nt = 0;

	pts[n++] = a_lo;
	pts[n++] = a_hi;
	/* Distance is zero for a in [near_start - size, near_end]. */
	if (req->near_start >= req->size)
		targets[nt++] = req->near_start - req->size;
	targets[nt++] = req->near_end;
	for (size_t i = 0; i < nt; i++) {
		uint64_t up;

		pts[n++] = clamp(ALIGN_DOWN(targets[i], req->align), a_lo, a_hi);
		pts[n++] = align_up(targets[i], req->align, &up) ? clamp(up, a_lo, a_hi) : a_hi;
	}
	for (size_t i = 0; i < n; i++) {
		struct candidate c = judge(req, pts[i]);

		if (better(&c, best))
			*best = c;
	}
}

/*
 * Finds the place for req->size bytes; see place.h for the contract.
 *
 * With a near span (near_end != 0): the valid place closest to
 * [near_start, near_end); on equal distance the one below the span (the heap
 * grows upward above executables), then the lowest.
 *
 * Without one (near_end == 0): the highest valid place that ends at or below
 * the start of the stack hazard, as the kernel's top-down mmap would pick;
 * if none does (or there is no stack_top), the highest valid place at all.
 *
 * -EINVAL: size 0 or not a page multiple, align not a power of two >= 4096,
 * near_start > near_end, NULL arguments. -ENOSPC: nothing fits. -ENOMEM.
 */
int place_find(const struct maps *m, const struct place_request *req, uint64_t *ret_addr)
{
	struct rangeset blocked = RANGESET_INIT, used = RANGESET_INIT;
	struct candidate best = {0};
	uint64_t lo = 0, hi = UINT64_MAX, top_pref = PLACE_USER_TOP;
	uint64_t best_below = 0, best_any = 0;
	bool have_below = false, have_any = false;
	bool reach = req && req->near_end != 0;
	int r;

	if (!m || !req || !ret_addr)
		return -EINVAL;
	if (req->size == 0 || req->size % PAGE_SIZE_4K)
		return -EINVAL;
	if (req->align < PAGE_SIZE_4K || (req->align & (req->align - 1)))
		return -EINVAL;
	if (reach && req->near_start > req->near_end)
		return -EINVAL;

	r = place_hazards(req, &blocked);
	if (r < 0)
		goto out;
	r = maps_used(m, &used);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < used.n; i++) {
		r = rangeset_add(&blocked, sat_sub(used.v[i].start, req->gap),
				 sat_add(used.v[i].end, req->gap));
		if (r < 0)
			goto out;
	}

	if (reach) {
		lo = sat_sub(req->near_end, PLACE_REACH_REL32);
		hi = sat_add(req->near_start, PLACE_REACH_REL32);
	} else if (req->stack_top) {
		top_pref = sat_sub(req->stack_top, req->stack_reserve);
	}

	/* Walk the free gaps: the complement of blocked within [0, 2^64). */
	for (size_t i = 0; i <= blocked.n; i++) {
		uint64_t g0 = i == 0 ? 0 : blocked.v[i - 1].end;
		uint64_t g1 = i == blocked.n ? UINT64_MAX : blocked.v[i].start;
		uint64_t c0 = g0 > lo ? g0 : lo;
		uint64_t c1 = g1 < hi ? g1 : hi;
		uint64_t a_lo, a_hi;

		if (c1 <= c0 || c1 - c0 < req->size)
			continue;
		if (!align_up(c0, req->align, &a_lo))
			continue;
		a_hi = ALIGN_DOWN(c1 - req->size, req->align);
		if (a_lo > a_hi)
			continue;

		if (reach) {
			consider_near(req, a_lo, a_hi, &best);
			continue;
		}
		if (top_pref >= req->size && a_lo <= top_pref - req->size) {
			uint64_t a = ALIGN_DOWN(top_pref - req->size, req->align);

			a = a < a_hi ? a : a_hi;
			if (!have_below || a > best_below)
				best_below = a;
			have_below = true;
		}
		if (!have_any || a_hi > best_any)
			best_any = a_hi;
		have_any = true;
	}

	r = -ENOSPC;
	if (reach && best.valid) {
		*ret_addr = best.addr;
		r = 0;
	} else if (have_below) {
		*ret_addr = best_below;
		r = 0;
	} else if (have_any) {
		*ret_addr = best_any;
		r = 0;
	}
out:
	rangeset_free(&used);
	rangeset_free(&blocked);
	return r;
}

uint64_t place_break(const struct maps *m, uint64_t start_brk)
{
	uint64_t end = 0;

	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].kind == MAPS_HEAP && m->v[i].end > end)
			end = m->v[i].end;
	return end ?: start_brk;
}
