/*
 * Unit tests for injector/place.c.
 *
 * Every answer is checked three ways: against a value worked out by hand
 * (synthetic models and recorded dumps), against an independent validity
 * predicate written from the request's fields (not from place_hazards()), and
 * against an oracle. Two oracles exist: one that enumerates the few addresses
 * an optimum can sit at (next to an obstacle, a window edge or the near span)
 * for full-size address spaces, and plain brute force over every aligned
 * address for random models confined to a small window.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"
#include "util.h"

#ifndef OPTD_MAPS_DATA_DIR
#error "OPTD_MAPS_DATA_DIR must name tests/data/maps"
#endif

#define R PLACE_REACH_REL32
#define TOP PLACE_USER_TOP
#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a < b ? 0 : a - b;
}

static struct maps *model(const char *text)
{
	struct maps *m = NULL;

	ck_assert_int_eq(maps_parse(text, strlen(text), &m), 0);
	return m;
}

static struct maps *model_file(const char *name)
{
	char path[512];
	static char text[1 << 16];
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", OPTD_MAPS_DATA_DIR, name);
	f = fopen(path, "re");
	ck_assert_msg(f, "cannot open %s", path);
	len = fread(text, 1, sizeof(text) - 1, f);
	ck_assert(feof(f));
	fclose(f);
	text[len] = '\0';
	return model(text);
}

/*
 * The contract, read straight off place.h and the brief: aligned, inside the
 * reach window, clear of every mapping by gap, of every hazard, and of page 0.
 */
static bool valid(const struct maps *m, const struct place_request *q, uint64_t a)
{
	uint64_t end, low;

	if (a % q->align || a > UINT64_MAX - q->size)
		return false;
	end = a + q->size;
	if (q->near_end && (a < sat_sub(q->near_end, R) || end > sat_add(q->near_start, R)))
		return false;
	low = q->mmap_min_addr > 4096 ? q->mmap_min_addr : 4096;
	if (a < low || end > TOP)
		return false;
	if (q->brk && range_overlaps(a, end, q->brk, sat_add(q->brk, q->heap_reserve)))
		return false;
	if (q->stack_top &&
	    range_overlaps(a, end, sat_sub(q->stack_top, q->stack_reserve), q->stack_top))
		return false;
	if (q->avoid && rangeset_overlaps(q->avoid, a, end))
		return false;
	for (size_t i = 0; i < m->n; i++)
		if (range_overlaps(a, end, sat_sub(m->v[i].start, q->gap),
				   sat_add(m->v[i].end, q->gap)))
			return false;
	return true;
}

/* Ranking of a valid answer in reach mode: distance, then below < overlap < above, then address. */
struct rank {
	uint64_t dist;
	int side;
	uint64_t addr;
};

static struct rank rank_of(const struct place_request *q, uint64_t a)
{
	uint64_t end = a + q->size;

	if (end <= q->near_start)
		return (struct rank){q->near_start - end, 0, a};
	if (a >= q->near_end)
		return (struct rank){a - q->near_end, 2, a};
	return (struct rank){0, 1, a};
}

static bool rank_less(struct rank x, struct rank y)
{
	if (x.dist != y.dist)
		return x.dist < y.dist;
	if (x.side != y.side)
		return x.side < y.side;
	return x.addr < y.addr;
}

/* The answer the contract asks for among a set of valid addresses. */
struct picker {
	const struct place_request *q;
	uint64_t top_pref;
	bool have;
	uint64_t best;
	bool best_below_pref;
};

static void picker_init(struct picker *p, const struct place_request *q)
{
	*p = (struct picker){.q = q, .top_pref = TOP};
	if (!q->near_end && q->stack_top)
		p->top_pref = sat_sub(q->stack_top, q->stack_reserve);
}

static void picker_offer(struct picker *p, uint64_t a)
{
	if (p->q->near_end) {
		if (!p->have || rank_less(rank_of(p->q, a), rank_of(p->q, p->best)))
			p->best = a;
		p->have = true;
		return;
	}
	/* Top-down: highest below the stack hazard, else highest at all. */
	bool below = a + p->q->size <= p->top_pref;

	if (!p->have || (below && !p->best_below_pref) ||
	    (below == p->best_below_pref && a > p->best)) {
		p->best = a;
		p->best_below_pref = below;
	}
	p->have = true;
}

static void offer_around(struct picker *p, const struct maps *m, uint64_t x)
{
	uint64_t down = ALIGN_DOWN(x, p->q->align);
	uint64_t cands[2] = {down, sat_add(down, p->q->align)};

	for (int i = 0; i < 2; i++)
		if (valid(m, p->q, cands[i]))
			picker_offer(p, cands[i]);
}

/*
 * The optimum always sits against something: an obstacle's edge, a window
 * edge or the near span (moving it one alignment step closer to its goal
 * would make it invalid or worse). Try the aligned addresses around each.
 */
static bool oracle(const struct maps *m, const struct place_request *q, uint64_t *ret)
{
	struct picker p;
	uint64_t s = q->size;
	uint64_t low = q->mmap_min_addr > 4096 ? q->mmap_min_addr : 4096;

	picker_init(&p, q);
	/* An obstacle [b0, b1): the region right below it or right above it. */
#define OBSTACLE(b0, b1)                                                                           \
	do {                                                                                       \
		offer_around(&p, m, sat_sub((b0), s));                                             \
		offer_around(&p, m, (b1));                                                         \
	} while (0)
	for (size_t i = 0; i < m->n; i++)
		OBSTACLE(sat_sub(m->v[i].start, q->gap), sat_add(m->v[i].end, q->gap));
	OBSTACLE(0, low);
	OBSTACLE(TOP, UINT64_MAX);
	if (q->brk)
		OBSTACLE(q->brk, sat_add(q->brk, q->heap_reserve));
	if (q->stack_top)
		OBSTACLE(sat_sub(q->stack_top, q->stack_reserve), q->stack_top);
	if (q->avoid)
		for (size_t i = 0; i < q->avoid->n; i++)
			OBSTACLE(q->avoid->v[i].start, q->avoid->v[i].end);
	if (q->near_end) {
		OBSTACLE(q->near_start, q->near_end);
		offer_around(&p, m, sat_sub(q->near_end, R));
		offer_around(&p, m, sat_sub(sat_add(q->near_start, R), s));
	}
#undef OBSTACLE
	*ret = p.best;
	return p.have;
}

/* place_find() must agree with the oracle and give a valid address. */
static void check_place(const struct maps *m, const struct place_request *q, const char *what)
{
	uint64_t got = 0xdead, want = 0;
	bool have = oracle(m, q, &want);
	int r = place_find(m, q, &got);

	if (!have) {
		ck_assert_msg(r == -ENOSPC, "%s: got %d (%#" PRIx64 "), oracle finds nothing", what,
			      r, got);
		ck_assert_uint_eq(got, 0xdead);
		return;
	}
	ck_assert_msg(r == 0, "%s: got %d, oracle finds %#" PRIx64, what, r, want);
	ck_assert_msg(valid(m, q, got), "%s: %#" PRIx64 " is not valid", what, got);
	ck_assert_msg(got == want, "%s: got %#" PRIx64 ", oracle wants %#" PRIx64, what, got, want);
}

/* -- synthetic models worked out by hand -- */

/* clang-format off */
static const char nonpie_model[] =
	"00400000-00401000 r--p 00000000 fe:00 1 /t/exe\n"
	"00401000-00500000 r-xp 00001000 fe:00 1 /t/exe\n"
	"00500000-00600000 rw-p 00100000 fe:00 1 /t/exe\n"
	"01000000-01021000 rw-p 00000000 00:00 0 [heap]\n"
	"7f0000000000-7f0000200000 r-xp 00000000 fe:00 2 /t/libc.so\n"
	"7ffff7fc0000-7ffff7fc2000 r-xp 00000000 00:00 0 [vdso]\n"
	"7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n";

/* clang-format off */
static const char pie_model[] =
	"555555554000-555555556000 r--p 00000000 fe:00 3 /t/pie\n"
	"555555556000-55555555a000 r-xp 00002000 fe:00 3 /t/pie\n"
	"55555555a000-55555555c000 rw-p 00006000 fe:00 3 /t/pie\n"
	"555555600000-555555621000 rw-p 00000000 00:00 0 [heap]\n"
	"7ffff7d00000-7ffff7f00000 r-xp 00000000 fe:00 2 /t/libc.so\n"
	"7ffff7fc0000-7ffff7fc2000 r-xp 00000000 00:00 0 [vdso]\n"
	"7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n";

/* A hole at exactly [4 GiB, 4 GiB + 4 KiB), everything else within reach mapped. */
static const char hole_model[] = "00010000-100000000 rw-p 00000000 00:00 0\n"
				 "100001000-200000000 rw-p 00000000 00:00 0\n";

/* Something mapped in the second page, where page 0 would be the closest place. */
static const char low_model[] = "00001000-00002000 r-xp 00000000 fe:00 4 /t/low\n";

#define S64K 0x10000ULL
#define EXE_NP .near_start = 0x400000, .near_end = 0x600000
#define EXE_PIE .near_start = 0x555555554000, .near_end = 0x55555555c000
#define VDSO_PIE .near_start = 0x7ffff7fc0000, .near_end = 0x7ffff7fc2000
#define STACK_9M .stack_top = 0x7ffffffff000, .stack_reserve = 9 * MiB

struct place_case {
	const char *name;
	const char *model;
	struct place_request req;
	struct range avoid[3];
	size_t navoid;
	int ret;
	uint64_t want;
};
/* clang-format on */
/* clang-format on */

/* clang-format off */
static const struct place_case place_cases[] = {
	/* Non-PIE: the executable at 0x400000, plenty of room below it. */
	{"nonpie: right below the executable", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x3f0000},
	{"nonpie: a gap of one page, tie broken downwards", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000, .gap = 0x1000}, {{0}}, 0, 0, 0x3ef000},
	{"nonpie: a 4 MiB gap leaves no room below", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000, .gap = 4 * MiB}, {{0}}, 0, 0, 0xa00000},
	{"nonpie: mmap_min_addr moves it above", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x3f8000}, {{0}}, 0, 0, 0x600000},
	{"nonpie: mmap_min_addr not page aligned", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x3effff}, {{0}}, 0, 0, 0x3f0000},
	{"nonpie: avoid set moves it above", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {{0x300000, 0x400000}}, 1, 0, 0x600000},
	{"nonpie: avoid set touching the answer does not move it", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {{0x300000, 0x3f0000}}, 1, 0, 0x3f0000},
	{"nonpie: 2 MiB alignment prefers the aligned side", nonpie_model,
	 {S64K, 2 * MiB, EXE_NP, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x600000},
	{"nonpie: heap reserve far above changes nothing", nonpie_model,
	 {S64K, 4096, EXE_NP, .brk = 0x1021000, .heap_reserve = GiB, .mmap_min_addr = 0x10000},
	 {{0}}, 0, 0, 0x3f0000},
	{"nonpie: heap reserve blocks above the heap", nonpie_model,
	 {S64K, 4096, EXE_NP, .brk = 0x1021000, .heap_reserve = GiB, .mmap_min_addr = 0x10000},
	 {{0x10000, 0x400000}, {0x600000, 0x1000000}}, 2, 0, 0x41021000},
	{"nonpie: a point as the near span", nonpie_model,
	 {S64K, 4096, .near_start = 0x500000, .near_end = 0x500000, .mmap_min_addr = 0x10000},
	 {{0}}, 0, 0, 0x3f0000},
	{"nonpie: no near span, top-down below the stack reserve", nonpie_model,
	 {S64K, 4096, STACK_9M, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x7fffff6ef000},
	{"nonpie: no near span, no stack: highest free", nonpie_model,
	 {S64K, 4096, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x7ffffffce000},
	{"nonpie: no near span, zero stack reserve", nonpie_model,
	 {S64K, 4096, .stack_top = 0x7ffffffff000, .mmap_min_addr = 0x10000}, {{0}}, 0, 0,
	 0x7ffffffce000},
	{"nonpie: no near span, nothing below the stack reserve: above it", nonpie_model,
	 {S64K, 4096, .stack_top = 0x7fff00000000, .stack_reserve = 9 * MiB,
	  .mmap_min_addr = 0x10000}, {{0, 0x7ffeff700000}}, 1, 0, 0x7ffffffce000},
	{"nonpie: no near span, the stack reserve reaches the top", nonpie_model,
	 {S64K, 4096, .stack_top = 0x7ffffffff000, .stack_reserve = 0x7fffffff0000,
	  .mmap_min_addr = 0x10000}, {{0}}, 0, -ENOSPC, 0},

	/* PIE: the executable at 0x5555..., the heap right after it. */
	{"pie: right below the executable", pie_model,
	 {S64K, 4096, EXE_PIE, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x555555544000},
	{"pie: between executable and heap", pie_model,
	 {S64K, 4096, EXE_PIE, .mmap_min_addr = 0x10000}, {{0, 0x555555554000}}, 1, 0,
	 0x55555555c000},
	{"pie: the gap keeps a page to the executable", pie_model,
	 {S64K, 4096, EXE_PIE, .mmap_min_addr = 0x10000, .gap = 0x1000}, {{0, 0x555555554000}},
	 1, 0, 0x55555555d000},
	{"pie: above the heap at brk", pie_model,
	 {S64K, 4096, EXE_PIE, .brk = 0x555555621000, .mmap_min_addr = 0x10000},
	 {{0, 0x555555554000}, {0x55555555c000, 0x555555600000}}, 2, 0, 0x555555621000},
	{"pie: the heap reserve pushes it past brk + reserve", pie_model,
	 {S64K, 4096, EXE_PIE, .brk = 0x555555621000, .heap_reserve = 16 * MiB,
	  .mmap_min_addr = 0x10000},
	 {{0, 0x555555554000}, {0x55555555c000, 0x555555600000}}, 2, 0, 0x555556621000},
	{"pie: brk inside the heap mapping, reserve from brk", pie_model,
	 {S64K, 4096, EXE_PIE, .brk = 0x555555610000, .heap_reserve = 0x20000,
	  .mmap_min_addr = 0x10000},
	 {{0, 0x555555554000}, {0x55555555c000, 0x555555600000}}, 2, 0, 0x555555630000},
	{"pie: near [vdso], below it", pie_model,
	 {S64K, 4096, VDSO_PIE, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x7ffff7fb0000},
	{"pie: near [vdso], a 9 MiB stack reserve does not reach it", pie_model,
	 {S64K, 4096, VDSO_PIE, STACK_9M, .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x7ffff7fb0000},
	/* 129 MiB below the stack top: [vdso] and the top of libc are in it; below libc. */
	{"pie: near [vdso], a 129 MiB stack reserve pushes it below libc", pie_model,
	 {S64K, 4096, VDSO_PIE, .stack_top = 0x7ffffffff000, .stack_reserve = 129 * MiB,
	  .mmap_min_addr = 0x10000}, {{0}}, 0, 0, 0x7ffff7cf0000},

	/* Holes, reach and the ends of the address space. */
	{"a hole inside the span that fits", hole_model,
	 {0x1000, 4096, .near_start = 0x100000000, .near_end = 0x100001000}, {{0}}, 0, 0,
	 0x100000000},
	{"reach excludes everything", hole_model,
	 {0x2000, 4096, .near_start = 0x100000000, .near_end = 0x100001000}, {{0}}, 0, -ENOSPC, 0},
	/* 4 GiB + 4 KiB - R = 0x80001001: the lowest byte in reach. */
	{"reach: the lower edge excludes the page below it", "",
	 {0x1000, 4096, .near_start = 0x100000000, .near_end = 0x100001000},
	 {{0x80002000, UINT64_MAX}}, 1, -ENOSPC, 0},
	{"reach: the lower edge is inclusive", "",
	 {0x1000, 4096, .near_start = 0x100000000, .near_end = 0x100000fff},
	 {{0x80002000, UINT64_MAX}}, 1, 0, 0x80001000},
	/* 4 GiB + R = 0x17fffffff: the region must end at or below it. */
	{"reach: the upper edge excludes the page across it", "",
	 {0x1000, 4096, .near_start = 0x100000000, .near_end = 0x100001000},
	 {{0, 0x17ffff000}}, 1, -ENOSPC, 0},
	{"reach: the upper edge is inclusive", "",
	 {0x1000, 4096, .near_start = 0x100000001, .near_end = 0x100001000},
	 {{0, 0x17ffff000}}, 1, 0, 0x17ffff000},
	{"a span wider than twice the reach", "", {0x1000, 4096, .near_start = 0x400000,
	 .near_end = 0x400000 + 4 * GiB}, {{0}}, 0, -ENOSPC, 0},
	{"a region wider than the reach", nonpie_model, {4 * GiB, 4096, EXE_NP}, {{0}}, 0, -ENOSPC,
	 0},
	{"the largest region that fits beside the executable", "",
	 {(R - 0x1000) & ~0xfffULL, 4096, .near_start = 0x80000000, .near_end = 0x80001000},
	 {{0}}, 0, 0, 0x80000000 - ((R - 0x1000) & ~0xfffULL)},
	{"page 0 is never used", low_model,
	 {0x1000, 4096, .near_start = 0x1000, .near_end = 0x2000}, {{0}}, 0, 0, 0x2000},
	{"mmap_min_addr pushes it up", low_model,
	 {0x1000, 4096, .near_start = 0x1000, .near_end = 0x2000, .mmap_min_addr = 0x10000},
	 {{0}}, 0, 0, 0x10000},
	{"ending exactly at the user top", "",
	 {S64K, 4096, .near_start = TOP, .near_end = TOP + 0x1000}, {{0}}, 0, 0, TOP - S64K},
	{"a near span beyond the user top", "",
	 {S64K, 4096, .near_start = 0xffffffffff600000, .near_end = 0xffffffffff601000}, {{0}},
	 0, -ENOSPC, 0},
	{"a near span at the very top of 2^64", "",
	 {S64K, 4096, .near_start = UINT64_MAX - 0xfff, .near_end = UINT64_MAX}, {{0}}, 0,
	 -ENOSPC, 0},
	{"a gap of 2^64 - 1", nonpie_model, {S64K, 4096, EXE_NP, .gap = UINT64_MAX}, {{0}}, 0,
	 -ENOSPC, 0},
	{"mmap_min_addr near 2^64", "", {S64K, 4096, .mmap_min_addr = UINT64_MAX - 5}, {{0}}, 0,
	 -ENOSPC, 0},
	{"brk near 2^64 with a huge reserve", "",
	 {S64K, 4096, .brk = UINT64_MAX - 0x1000, .heap_reserve = UINT64_MAX}, {{0}}, 0, 0,
	 TOP - S64K},
	{"avoid everything", nonpie_model, {S64K, 4096, EXE_NP}, {{0, UINT64_MAX}}, 1, -ENOSPC, 0},
	{"avoid everything, no near span", "", {.size = S64K, .align = 4096}, {{0, UINT64_MAX}}, 1,
	 -ENOSPC, 0},
	{"an empty address space, no near span", "", {.size = S64K, .align = 2 * MiB}, {{0}}, 0, 0,
	 ALIGN_DOWN(TOP - S64K, 2 * MiB)},

	/* Malformed requests. */
	{"size 0", nonpie_model, {0, 4096, EXE_NP}, {{0}}, 0, -EINVAL, 0},
	{"size not a page multiple", nonpie_model, {0x1800, 4096, EXE_NP}, {{0}}, 0, -EINVAL, 0},
	{"align 0", nonpie_model, {S64K, 0, EXE_NP}, {{0}}, 0, -EINVAL, 0},
	{"align below a page", nonpie_model, {S64K, 2048, EXE_NP}, {{0}}, 0, -EINVAL, 0},
	{"align not a power of two", nonpie_model, {S64K, 0x3000, EXE_NP}, {{0}}, 0, -EINVAL, 0},
	{"near span inverted", nonpie_model,
	 {S64K, 4096, .near_start = 0x600000, .near_end = 0x400000}, {{0}}, 0, -EINVAL, 0},
};
/* clang-format on */

START_TEST(test_place_case)
{
	const struct place_case *c = &place_cases[_i];
	struct maps *m = model(c->model);
	struct rangeset avoid = RANGESET_INIT;
	struct place_request q = c->req;
	uint64_t got = 0xdead;
	int r;

	for (size_t i = 0; i < c->navoid; i++)
		ck_assert_int_eq(rangeset_add(&avoid, c->avoid[i].start, c->avoid[i].end), 0);
	if (c->navoid)
		q.avoid = &avoid;

	r = place_find(m, &q, &got);
	ck_assert_msg(r == c->ret, "%s: got %d (%#" PRIx64 "), want %d", c->name, r, got, c->ret);
	if (r == 0) {
		ck_assert_msg(got == c->want, "%s: got %#" PRIx64 ", want %#" PRIx64, c->name, got,
			      c->want);
		ck_assert_msg(valid(m, &q, got), "%s: %#" PRIx64 " is not valid", c->name, got);
	} else {
		ck_assert_uint_eq(got, 0xdead);
	}
	if (c->ret != -EINVAL)
		check_place(m, &q, c->name);
	rangeset_free(&avoid);
	maps_free(m);
}
END_TEST

START_TEST(test_null_args)
{
	struct maps *m = model(nonpie_model);
	struct place_request q = {S64K, 4096, EXE_NP};
	uint64_t a;

	ck_assert_int_eq(place_find(NULL, &q, &a), -EINVAL);
	ck_assert_int_eq(place_find(m, NULL, &a), -EINVAL);
	ck_assert_int_eq(place_find(m, &q, NULL), -EINVAL);
	maps_free(m);
}
END_TEST

/*
 * Each hazard on its own must move the answer: start from a request whose
 * answer is known, add one hazard over that answer, and see where it goes.
 */
struct hazard_case {
	const char *name;
	const char *model;
	struct place_request base;
	struct range base_avoid;
	uint64_t base_want;
	struct place_request with; /* base plus one hazard */
	struct range with_avoid;
	uint64_t want;
};

/* clang-format off */
static const struct hazard_case hazard_cases[] = {
	/* Equal distance below and above: below wins. */
	{"gap", nonpie_model, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {0}, 0x3f0000,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000, .gap = 0x8000}, {0}, 0x3e8000},
	{"mmap_min_addr", nonpie_model, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {0},
	 0x3f0000, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x3f1000}, {0}, 0x600000},
	{"avoid", nonpie_model, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {0}, 0x3f0000,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x10000}, {0x3ff000, 0x400000}, 0x600000},
	{"avoid, the other side", nonpie_model, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x3f8000},
	 {0}, 0x600000, {S64K, 4096, EXE_NP, .mmap_min_addr = 0x3f8000}, {0x600000, 0x601000},
	 0x601000},
	/* Below the executable and up to the heap are taken: right above the heap. */
	{"heap reserve", nonpie_model,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x400000, .brk = 0x1021000},
	 {0x600000, 0x1000000}, 0x1021000,
	 {S64K, 4096, EXE_NP, .mmap_min_addr = 0x400000, .brk = 0x1021000,
	  .heap_reserve = 0x10000}, {0x600000, 0x1000000}, 0x1031000},
	{"stack reserve", nonpie_model, {S64K, 4096, .mmap_min_addr = 0x10000}, {0},
	 0x7ffffffce000, {S64K, 4096, .mmap_min_addr = 0x10000, .stack_top = 0x7ffffffff000,
	  .stack_reserve = 0x100000}, {0}, 0x7fffffeef000},
	{"stack reserve, reach mode", pie_model, {S64K, 4096, VDSO_PIE, .mmap_min_addr = 0x10000},
	 {0}, 0x7ffff7fb0000,
	 {S64K, 4096, VDSO_PIE, .mmap_min_addr = 0x10000, .stack_top = 0x7ffff7fc0000,
	  .stack_reserve = 0x8000}, {0}, 0x7ffff7fc2000},
};
/* clang-format on */

START_TEST(test_hazard_moves)
{
	const struct hazard_case *c = &hazard_cases[_i];
	struct maps *m = model(c->model);
	struct rangeset base_avoid = RANGESET_INIT, with_avoid = RANGESET_INIT;
	struct place_request base = c->base, with = c->with;
	uint64_t got;

	if (c->base_avoid.end) {
		ck_assert_int_eq(rangeset_add(&base_avoid, c->base_avoid.start, c->base_avoid.end),
				 0);
		base.avoid = &base_avoid;
	}
	if (c->with_avoid.end) {
		ck_assert_int_eq(rangeset_add(&with_avoid, c->with_avoid.start, c->with_avoid.end),
				 0);
		with.avoid = &with_avoid;
	}
	ck_assert_int_eq(place_find(m, &base, &got), 0);
	ck_assert_msg(got == c->base_want, "%s: base gives %#" PRIx64, c->name, got);
	check_place(m, &base, c->name);

	ck_assert_int_eq(place_find(m, &with, &got), 0);
	ck_assert_msg(got != c->base_want, "%s: did not move", c->name);
	ck_assert_msg(got == c->want, "%s: moved to %#" PRIx64 ", want %#" PRIx64, c->name, got,
		      c->want);
	check_place(m, &with, c->name);
	rangeset_free(&base_avoid);
	rangeset_free(&with_avoid);
	maps_free(m);
}
END_TEST

/* place_hazards() against ranges listed by hand. */
struct hazards_case {
	struct place_request req;
	struct range avoid[2];
	size_t navoid;
	struct range want[4];
	size_t nwant;
};

/* clang-format off */
static const struct hazards_case hazards_cases[] = {
	{{0}, {{0}}, 0, {{0, 0x1000}, {TOP, UINT64_MAX}}, 2},
	{{.mmap_min_addr = 0x10000}, {{0}}, 0, {{0, 0x10000}, {TOP, UINT64_MAX}}, 2},
	{{.mmap_min_addr = 0x10001}, {{0}}, 0, {{0, 0x11000}, {TOP, UINT64_MAX}}, 2},
	{{.brk = 0x1000000, .heap_reserve = 0x100000},
	 {{0}}, 0, {{0, 0x1000}, {0x1000000, 0x1100000}, {TOP, UINT64_MAX}}, 3},
	{{.brk = 0x1000000}, {{0}}, 0, {{0, 0x1000}, {TOP, UINT64_MAX}}, 2},
	{{.brk = UINT64_MAX - 0x1000, .heap_reserve = 0x2000},
	 {{0}}, 0, {{0, 0x1000}, {TOP, UINT64_MAX}}, 2},
	{{.stack_top = 0x7ffffffde000, .stack_reserve = 9 * MiB},
	 {{0}}, 0, {{0, 0x1000}, {0x7ffffffde000 - 9 * MiB, 0x7ffffffde000}, {TOP, UINT64_MAX}}, 3},
	{{.stack_top = TOP, .stack_reserve = 9 * MiB},
	 {{0}}, 0, {{0, 0x1000}, {TOP - 9 * MiB, UINT64_MAX}}, 2},
	{{.stack_top = 0x100000, .stack_reserve = 0x200000}, {{0}}, 0, {{0, 0x100000}, {TOP,
	 UINT64_MAX}}, 2},
	{{.mmap_min_addr = 0x10000},
	 {{0x20000, 0x30000}, {0x7f0000000000, 0x7f0000001000}},
	 2, {{0, 0x10000}, {0x20000, 0x30000}, {0x7f0000000000, 0x7f0000001000}, {TOP, UINT64_MAX}},
	 4},
};
/* clang-format on */

START_TEST(test_hazards)
{
	const struct hazards_case *c = &hazards_cases[_i];
	struct rangeset avoid = RANGESET_INIT, got = RANGESET_INIT;
	struct place_request q = c->req;

	for (size_t i = 0; i < c->navoid; i++)
		ck_assert_int_eq(rangeset_add(&avoid, c->avoid[i].start, c->avoid[i].end), 0);
	if (c->navoid)
		q.avoid = &avoid;
	/* Stale contents must go. */
	ck_assert_int_eq(rangeset_add(&got, 0x5000, 0x6000), 0);
	ck_assert_int_eq(place_hazards(&q, &got), 0);
	ck_assert_uint_eq(got.n, c->nwant);
	for (size_t i = 0; i < c->nwant; i++) {
		ck_assert_uint_eq(got.v[i].start, c->want[i].start);
		ck_assert_uint_eq(got.v[i].end, c->want[i].end);
	}
	rangeset_free(&got);
	rangeset_free(&avoid);
}
END_TEST

/* -- recorded dumps -- */

struct recorded_case {
	const char *file;
	const char *exe;
	uint64_t want; /* with 2 MiB near the executable, see test_recorded */
};

/* clang-format off */
static const struct recorded_case recorded_cases[] = {
	/* PIE: below the executable; the heap is above it. */
	{"sqlite3-pie.maps", "/usr/bin/sqlite3", 0x5645e0747000 - 2 * MiB},
	{"pie-deleted.maps", "/tmp/rec/record-pie", 0x557ab2ae6000 - 2 * MiB},
	{"pie-special.maps", "/tmp/rec/record-pie", 0x55d57b1dd000 - 2 * MiB},
	{"pie-gaps-threads.maps", "/tmp/rec/record-pie", 0x563cb2205000 - 2 * MiB},
	/* Non-PIE at 0x400000: 2 MiB fit between mmap_min_addr and the executable. */
	{"python3-nopie.maps", "/usr/bin/python3.11", 0x400000 - 2 * MiB},
	{"nopie.maps", "/tmp/rec/record-nopie", 0x400000 - 2 * MiB},
	{"static.maps", "/tmp/rec/record-static", 0x400000 - 2 * MiB},
	/*
	 * Static PIE is loaded at the mmap base right above [vdso]: below it is
	 * 0x8000 away (past [vvar]), above it only its 0x5000 of .bss.
	 */
	{"static-pie.maps", "/tmp/rec/record-static-pie", 0x7fbedc4c1000},
};
/* clang-format on */

/* The request optd would make for this dump: near the executable, real hazards. */
static struct place_request recorded_request(const struct maps *m, const char *exe)
{
	struct place_request q = {.size = 2 * MiB,
				  .align = 4096,
				  .mmap_min_addr = 0x10000,
				  .heap_reserve = 256 * MiB,
				  .stack_reserve = 8 * MiB + MiB};
	const struct maps_entry *e;

	ck_assert_int_eq(maps_span_of(m, exe, &q.near_start, &q.near_end), 0);
	e = maps_find_kind(m, MAPS_HEAP);
	if (e)
		q.brk = e->end;
	e = maps_find_kind(m, MAPS_STACK);
	ck_assert_ptr_nonnull(e);
	q.stack_top = e->end;
	return q;
}

START_TEST(test_recorded)
{
	const struct recorded_case *c = &recorded_cases[_i];
	struct maps *m = model_file(c->file);
	struct place_request q = recorded_request(m, c->exe);
	uint64_t got;

	ck_assert_int_eq(place_find(m, &q, &got), 0);
	ck_assert_msg(got == c->want, "%s: got %#" PRIx64 ", want %#" PRIx64, c->file, got,
		      c->want);
	check_place(m, &q, c->file);
	maps_free(m);
}
END_TEST

/* The break from the maps: the highest end of a [heap] mapping, else start_brk. */
static const struct break_case {
	const char *text;
	uint64_t start_brk, want;
} break_cases[] = {
    {"555555554000-555555555000 r--p 00000000 08:01 42 /bin/x\n"
     "555555559000-55555557a000 rw-p 00000000 00:00 0 [heap]\n"
     "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]\n",
     0x555555559000, 0x55555557a000},
    /* Split by an mprotect: the break is at the end of the last part. */
    {"555555559000-555555560000 rw-p 00000000 00:00 0 [heap]\n"
     "555555560000-555555561000 r--p 00000000 00:00 0 [heap]\n"
     "555555561000-55555557a000 rw-p 00000000 00:00 0 [heap]\n",
     0x555555559000, 0x55555557a000},
    /* No heap: empty, the break is where it starts; unknown without start_brk. */
    {"555555554000-555555555000 r--p 00000000 08:01 42 /bin/x\n", 0x555555559000, 0x555555559000},
    {"555555554000-555555555000 r--p 00000000 08:01 42 /bin/x\n", 0, 0},
};

START_TEST(test_break)
{
	const struct break_case *c = &break_cases[_i];
	struct maps *m = model(c->text);

	ck_assert_uint_eq(place_break(m, c->start_brk), c->want);
	maps_free(m);
}
END_TEST

/* Many request shapes on every dump, against the oracle. */
START_TEST(test_recorded_variants)
{
	static const uint64_t sizes[] = {4096, 2 * MiB, 64 * MiB, GiB + 4096};
	static const uint64_t aligns[] = {4096, 64 * KiB, 2 * MiB, GiB};
	static const uint64_t gaps[] = {0, 4096, 16 * MiB};
	const struct recorded_case *c = &recorded_cases[_i];
	struct maps *m = model_file(c->file);
	struct place_request base = recorded_request(m, c->exe);
	char what[128];

	for (size_t si = 0; si < ARRAY_SIZE(sizes); si++)
		for (size_t ai = 0; ai < ARRAY_SIZE(aligns); ai++)
			for (size_t gi = 0; gi < ARRAY_SIZE(gaps); gi++)
				for (int near = 0; near < 3; near++) {
					struct place_request q = base;

					q.size = sizes[si];
					q.align = aligns[ai];
					q.gap = gaps[gi];
					if (near == 1) {
						q.near_start = q.near_end = 0;
					} else if (near == 2) {
						/* near libc or the vdso: the mmap area. */
						const struct maps_entry *v =
						    maps_find_kind(m, MAPS_VDSO);

						q.near_start = v->start;
						q.near_end = v->end;
					}
					snprintf(what, sizeof(what),
						 "%s size %#" PRIx64 " align %#" PRIx64
						 " gap %#" PRIx64 " near %d",
						 c->file, q.size, q.align, q.gap, near);
					check_place(m, &q, what);
				}
	maps_free(m);
}
END_TEST

/* -- random models, brute force -- */

#define U0 0x100000000ULL /* 4 GiB: far enough up for a span 2 GiB below */
#define USIZE (32 * MiB)

static uint64_t rnd(uint64_t *state)
{
	/* xorshift64*: deterministic across runs and machines */
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t *state, uint64_t n)
{
	return n ? rnd(state) % n : 0;
}

static uint64_t rnd_page_in_u(uint64_t *state)
{
	return U0 + rnd_below(state, USIZE / 4096 + 1) * 4096;
}

static void brute_one(int n)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
	char text[4096];
	size_t len = 0;
	struct maps *m;
	struct rangeset avoid = RANGESET_INIT;
	struct place_request q = {0};
	struct picker p;
	uint64_t got = 0, pages[12];
	size_t npages;
	int r;

	rnd(&seed);
	/* Up to 6 mappings inside the universe: sorted distinct page boundaries, paired. */
	npages = rnd_below(&seed, 7) * 2;
	for (size_t i = 0; i < npages; i++)
		pages[i] = rnd_page_in_u(&seed);
	for (size_t i = 1; i < npages; i++)
		for (size_t j = i; j > 0 && pages[j - 1] > pages[j]; j--) {
			uint64_t t = pages[j];

			pages[j] = pages[j - 1];
			pages[j - 1] = t;
		}
	for (size_t i = 0; i + 1 < npages; i += 2) {
		if (pages[i] == pages[i + 1] || (i > 0 && pages[i] == pages[i - 1]))
			continue;
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%" PRIx64 "-%" PRIx64 " r--p 00000000 00:00 0\n", pages[i],
					pages[i + 1]);
	}
	text[len] = '\0';
	m = model(text);

	/* Nothing valid outside the universe. */
	ck_assert_int_eq(rangeset_add(&avoid, 0, U0), 0);
	ck_assert_int_eq(rangeset_add(&avoid, U0 + USIZE, UINT64_MAX), 0);
	if (rnd_below(&seed, 3) == 0) {
		uint64_t a = rnd_page_in_u(&seed);

		ck_assert_int_eq(rangeset_add(&avoid, a, a + rnd_below(&seed, 64) * 4096), 0);
	}
	q.avoid = &avoid;
	q.size = (1 + rnd_below(&seed, 256)) * 4096;
	q.align = 4096ULL << rnd_below(&seed, 10);
	q.gap = rnd_below(&seed, 2) ? rnd_below(&seed, 32) * 4096 : 0;
	if (rnd_below(&seed, 2)) {
		q.brk = rnd_page_in_u(&seed) + rnd_below(&seed, 4096);
		q.heap_reserve = rnd_below(&seed, 4 * MiB);
	}
	if (rnd_below(&seed, 2)) {
		q.stack_top = rnd_page_in_u(&seed);
		q.stack_reserve = rnd_below(&seed, 8 * MiB);
	}
	if (rnd_below(&seed, 3) == 0)
		q.mmap_min_addr = rnd_page_in_u(&seed) + rnd_below(&seed, 4096);
	switch (rnd_below(&seed, 4)) {
	case 0: /* no reach limit: top-down */
		break;
	case 1: /* a span inside the universe */
		q.near_start = rnd_page_in_u(&seed) + rnd_below(&seed, 4096);
		q.near_end = q.near_start + rnd_below(&seed, 2 * MiB);
		break;
	case 2: /* a span ~2 GiB above: its reach cuts the universe from below */
		q.near_end = rnd_page_in_u(&seed) + R + rnd_below(&seed, 4096);
		q.near_start = q.near_end - rnd_below(&seed, 4 * MiB);
		break;
	default: /* a span ~2 GiB below: its reach cuts the universe from above */
		q.near_start = rnd_page_in_u(&seed) - R - rnd_below(&seed, 4096);
		q.near_end = q.near_start + rnd_below(&seed, 4 * MiB);
		break;
	}

	picker_init(&p, &q);
	for (uint64_t a = U0; a + q.size <= U0 + USIZE; a += q.align)
		if (valid(m, &q, a))
			picker_offer(&p, a);

	r = place_find(m, &q, &got);
	if (!p.have) {
		ck_assert_msg(r == -ENOSPC,
			      "seed %d: got %d (%#" PRIx64 "), brute force finds nothing", n, r,
			      got);
	} else {
		ck_assert_msg(r == 0, "seed %d: got %d, brute force finds %#" PRIx64, n, r, p.best);
		ck_assert_msg(got == p.best, "seed %d: got %#" PRIx64 ", brute force %#" PRIx64, n,
			      got, p.best);
	}
	/* The critical-point oracle must agree with brute force too. */
	check_place(m, &q, "brute force model");
	rangeset_free(&avoid);
	maps_free(m);
}

#define BRUTE_PER_TEST 20

START_TEST(test_brute_force)
{
	for (int n = 0; n < BRUTE_PER_TEST; n++)
		brute_one(_i * BRUTE_PER_TEST + n);
}
END_TEST

static Suite *place_suite(void)
{
	Suite *s = suite_create("place");
	TCase *tc = tcase_create("core");
	TCase *brute = tcase_create("brute");

	tcase_add_loop_test(tc, test_place_case, 0, ARRAY_SIZE(place_cases));
	tcase_add_test(tc, test_null_args);
	tcase_add_loop_test(tc, test_hazard_moves, 0, ARRAY_SIZE(hazard_cases));
	tcase_add_loop_test(tc, test_hazards, 0, ARRAY_SIZE(hazards_cases));
	tcase_add_loop_test(tc, test_recorded, 0, ARRAY_SIZE(recorded_cases));
	tcase_add_loop_test(tc, test_recorded_variants, 0, ARRAY_SIZE(recorded_cases));
	tcase_add_loop_test(tc, test_break, 0, ARRAY_SIZE(break_cases));
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tcase_add_loop_test(brute, test_brute_force, 0, 200);
	tcase_set_timeout(brute, 120);
	suite_add_tcase(s, brute);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(place_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
