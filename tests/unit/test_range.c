/*
 * Unit tests for common/range.c: table-driven edits and queries, a long
 * pseudo-random run checked against a byte map at both ends of the 64-bit
 * space, and allocation failure (realloc is wrapped at link time).
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "range.h"
#include "util.h"

/* Link with -Wl,--wrap=realloc: realloc in range.c comes here. */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static bool fail_realloc;

void *__wrap_realloc(void *p, size_t n)
{
	if (fail_realloc) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, n);
}

#define TOP UINT64_MAX

/* The invariants every rangeset keeps after any operation. */
static void check_invariants(const struct rangeset *s)
{
	ck_assert_uint_le(s->n, s->cap);
	for (size_t i = 0; i < s->n; i++) {
		ck_assert_msg(s->v[i].start < s->v[i].end, "range %zu empty or inverted", i);
		if (i > 0)
			ck_assert_msg(s->v[i - 1].end < s->v[i].start,
				      "ranges %zu and %zu overlap or touch", i - 1, i);
	}
}

struct op {
	char kind; /* 'a' add, 'r' remove, 0 ends the list */
	uint64_t start, end;
	int ret;
};

struct edit_case {
	const char *name;
	struct op ops[8];
	struct range want[6];
	size_t nwant;
};

/* clang-format off */
static const struct edit_case edit_cases[] = {
	{"add one", {{'a', 10, 20, 0}}, {{10, 20}}, 1},
	{"add empty is a no-op", {{'a', 10, 10, 0}}, {{0}}, 0},
	{"add inverted", {{'a', 20, 10, -EINVAL}}, {{0}}, 0},
	{"add keeps order", {{'a', 50, 60, 0}, {'a', 10, 20, 0}, {'a', 30, 40, 0}},
	 {{10, 20}, {30, 40}, {50, 60}}, 3},
	{"adjacent on the right merges", {{'a', 10, 20, 0}, {'a', 20, 30, 0}}, {{10, 30}}, 1},
	{"adjacent on the left merges", {{'a', 20, 30, 0}, {'a', 10, 20, 0}}, {{10, 30}}, 1},
	{"one byte apart stays apart", {{'a', 10, 20, 0}, {'a', 21, 30, 0}}, {{10, 20}, {21, 30}},
	 2},
	{"fill the hole between two", {{'a', 10, 20, 0}, {'a', 30, 40, 0}, {'a', 20, 30, 0}},
	 {{10, 40}}, 1},
	{"overlap extends both ways", {{'a', 10, 20, 0}, {'a', 5, 25, 0}}, {{5, 25}}, 1},
	{"inside adds nothing", {{'a', 10, 40, 0}, {'a', 15, 20, 0}}, {{10, 40}}, 1},
	{"empty add touching a range changes nothing",
	 {{'a', 10, 20, 0}, {'a', 20, 20, 0}, {'a', 30, 40, 0}, {'a', 25, 25, 0}},
	 {{10, 20}, {30, 40}}, 2},
	{"swallow many",
	 {{'a', 10, 20, 0}, {'a', 30, 40, 0}, {'a', 50, 60, 0}, {'a', 70, 80, 0}, {'a', 15, 75, 0}},
	 {{10, 80}}, 1},
	{"swallow many, keep outer",
	 {{'a', 0, 5, 0}, {'a', 10, 20, 0}, {'a', 30, 40, 0}, {'a', 90, 95, 0}, {'a', 11, 41, 0}},
	 {{0, 5}, {10, 41}, {90, 95}}, 3},
	{"edge at 0", {{'a', 0, 1, 0}, {'a', 1, 2, 0}}, {{0, 2}}, 1},
	{"edge at the top", {{'a', TOP - 1, TOP, 0}, {'a', TOP - 3, TOP - 1, 0}}, {{TOP - 3, TOP}},
	 1},
	{"everything", {{'a', 0, TOP, 0}, {'a', 5, 6, 0}}, {{0, TOP}}, 1},
	{"remove from empty", {{'r', 10, 20, 0}}, {{0}}, 0},
	{"remove inverted", {{'a', 10, 20, 0}, {'r', 20, 10, -EINVAL}}, {{10, 20}}, 1},
	{"remove empty", {{'a', 10, 20, 0}, {'r', 15, 15, 0}}, {{10, 20}}, 1},
	{"remove exact", {{'a', 10, 20, 0}, {'r', 10, 20, 0}}, {{0}}, 0},
	{"remove splits", {{'a', 10, 20, 0}, {'r', 12, 15, 0}}, {{10, 12}, {15, 20}}, 2},
	{"remove head", {{'a', 10, 20, 0}, {'r', 5, 12, 0}}, {{12, 20}}, 1},
	{"remove tail", {{'a', 10, 20, 0}, {'r', 18, 30, 0}}, {{10, 18}}, 1},
	{"remove touching does nothing", {{'a', 10, 20, 0}, {'r', 20, 30, 0}, {'r', 0, 10, 0}},
	 {{10, 20}}, 1},
	{"remove spanning many",
	 {{'a', 10, 20, 0},
	  {'a', 30, 40, 0},
	  {'a', 50, 60, 0},
	  {'a', 70, 80, 0},
	  {'a', 90, 100, 0},
	  {'r', 15, 75, 0}}, {{10, 15}, {75, 80}, {90, 100}},
	 3},
	{"remove spanning many exactly",
	 {{'a', 10, 20, 0}, {'a', 30, 40, 0}, {'a', 50, 60, 0}, {'r', 10, 60, 0}},
	 {{0}}, 0},
	{"remove in a hole", {{'a', 10, 20, 0}, {'a', 30, 40, 0}, {'r', 21, 29, 0}},
	 {{10, 20}, {30, 40}}, 2},
	{"remove at 0", {{'a', 0, 10, 0}, {'r', 0, 1, 0}}, {{1, 10}}, 1},
	{"remove at the top", {{'a', TOP - 10, TOP, 0}, {'r', TOP - 1, TOP, 0}}, {{TOP - 10,
	 TOP - 1}}, 1},
	{"split everything", {{'a', 0, TOP, 0}, {'r', 1, TOP - 1, 0}}, {{0, 1}, {TOP - 1, TOP}}, 2},
	{"remove everything", {{'a', 0, 5, 0}, {'a', TOP - 5, TOP, 0}, {'r', 0, TOP, 0}}, {{0}}, 0},
	{"re-add after split", {{'a', 10, 20, 0}, {'r', 12, 15, 0}, {'a', 12, 15, 0}}, {{10, 20}},
	 1},
};
/* clang-format on */

START_TEST(test_edit)
{
	const struct edit_case *c = &edit_cases[_i];
	struct rangeset s = RANGESET_INIT;

	for (const struct op *o = c->ops; o->kind; o++) {
		int r = o->kind == 'a' ? rangeset_add(&s, o->start, o->end)
				       : rangeset_remove(&s, o->start, o->end);

		ck_assert_msg(r == o->ret, "%s: op %c [%#lx, %#lx) gave %d, want %d", c->name,
			      o->kind, (unsigned long)o->start, (unsigned long)o->end, r, o->ret);
		check_invariants(&s);
	}
	ck_assert_msg(s.n == c->nwant, "%s: %zu ranges, want %zu", c->name, s.n, c->nwant);
	for (size_t i = 0; i < c->nwant; i++) {
		ck_assert_msg(s.v[i].start == c->want[i].start && s.v[i].end == c->want[i].end,
			      "%s: range %zu is [%#lx, %#lx), want [%#lx, %#lx)", c->name, i,
			      (unsigned long)s.v[i].start, (unsigned long)s.v[i].end,
			      (unsigned long)c->want[i].start, (unsigned long)c->want[i].end);
	}
	rangeset_free(&s);
	ck_assert_ptr_null(s.v);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

/* Queries against the set {[0,1), [10,20), [30,40), [TOP-1,TOP)}. */
struct query_case {
	char kind; /* 'c' contains(start), 'o' overlaps, 'v' covers */
	uint64_t start, end;
	bool want;
};

static const struct range query_set[] = {{0, 1}, {10, 20}, {30, 40}, {TOP - 1, TOP}};

/* clang-format off */
static const struct query_case query_cases[] = {
	{'c', 0, 0, true},
	{'c', 1, 0, false},
	{'c', 9, 0, false},
	{'c', 10, 0, true},
	{'c', 19, 0, true},
	{'c', 20, 0, false},
	{'c', 25, 0, false},
	{'c', 39, 0, true},
	{'c', 40, 0, false},
	{'c', TOP - 2, 0, false},
	{'c', TOP - 1, 0, true},
	{'c', TOP, 0, false}, /* half open: UINT64_MAX itself is never in a range */
	{'o', 0, 1, true},
	{'o', 1, 10, false},
	{'o', 1, 11, true},
	{'o', 19, 30, true},
	{'o', 20, 30, false},
	{'o', 20, 31, true},
	{'o', 5, 100, true},
	{'o', 15, 15, false}, /* empty overlaps nothing */
	{'o', 40, TOP - 1, false},
	{'o', 40, TOP, true},
	{'o', 0, TOP, true},
	{'v', 0, 1, true},
	{'v', 0, 2, false},
	{'v', 10, 20, true},
	{'v', 12, 18, true},
	{'v', 9, 20, false},
	{'v', 10, 21, false},
	{'v', 10, 40, false}, /* a hole in the middle */
	{'v', 25, 25, true},  /* empty is covered */
	{'v', TOP - 1, TOP, true},
	{'v', TOP - 2, TOP, false},
};
/* clang-format on */

START_TEST(test_query)
{
	const struct query_case *q = &query_cases[_i];
	struct rangeset s = RANGESET_INIT;
	bool got;

	for (size_t i = 0; i < ARRAY_SIZE(query_set); i++)
		ck_assert_int_eq(rangeset_add(&s, query_set[i].start, query_set[i].end), 0);
	ck_assert_uint_eq(s.n, ARRAY_SIZE(query_set));
	switch (q->kind) {
	case 'c':
		got = rangeset_contains(&s, q->start);
		break;
	case 'o':
		got = rangeset_overlaps(&s, q->start, q->end);
		break;
	default:
		got = rangeset_covers(&s, q->start, q->end);
		break;
	}
	ck_assert_msg(got == q->want, "query %c [%#lx, %#lx) gave %d", q->kind,
		      (unsigned long)q->start, (unsigned long)q->end, got);
	ck_assert_uint_eq(rangeset_total(&s), 1 + 10 + 10 + 1);
	rangeset_free(&s);
}
END_TEST

START_TEST(test_empty_set)
{
	struct rangeset s = RANGESET_INIT;

	ck_assert(!rangeset_contains(&s, 0));
	ck_assert(!rangeset_overlaps(&s, 0, TOP));
	ck_assert(!rangeset_covers(&s, 0, 1));
	ck_assert(rangeset_covers(&s, 5, 5));
	ck_assert_uint_eq(rangeset_total(&s), 0);
	ck_assert_int_eq(rangeset_remove(&s, 0, TOP), 0);
	rangeset_free(&s);
	rangeset_free(NULL);
}
END_TEST

START_TEST(test_total_full_space)
{
	struct rangeset s = RANGESET_INIT;

	ck_assert_int_eq(rangeset_add(&s, 0, TOP), 0);
	ck_assert_uint_eq(rangeset_total(&s), TOP);
	ck_assert_int_eq(rangeset_remove(&s, 100, 200), 0);
	ck_assert_uint_eq(rangeset_total(&s), TOP - 100);
	rangeset_free(&s);
}
END_TEST

START_TEST(test_copy_clear)
{
	struct rangeset a = RANGESET_INIT, b = RANGESET_INIT;

	for (uint64_t i = 0; i < 100; i++)
		ck_assert_int_eq(rangeset_add(&a, i * 10, i * 10 + 5), 0);
	ck_assert_int_eq(rangeset_add(&b, 1, 2), 0);
	ck_assert_int_eq(rangeset_copy(&a, &b), 0);
	ck_assert_uint_eq(b.n, 100);
	ck_assert_mem_eq(a.v, b.v, 100 * sizeof(a.v[0]));
	ck_assert_ptr_ne(a.v, b.v);
	/* The copy is independent. */
	ck_assert_int_eq(rangeset_remove(&a, 0, 1000), 0);
	ck_assert_uint_eq(a.n, 0);
	ck_assert_uint_eq(b.n, 100);
	ck_assert_int_eq(rangeset_copy(&b, &b), 0);
	ck_assert_uint_eq(b.n, 100);
	/* An empty source empties the destination. */
	ck_assert_int_eq(rangeset_copy(&a, &b), 0);
	ck_assert_uint_eq(b.n, 0);

	ck_assert_int_eq(rangeset_add(&a, 5, 6), 0);
	rangeset_clear(&a);
	ck_assert_uint_eq(a.n, 0);
	ck_assert(!rangeset_contains(&a, 5));
	ck_assert_int_eq(rangeset_add(&a, 7, 8), 0);
	ck_assert_uint_eq(a.n, 1);
	rangeset_free(&a);
	rangeset_free(&b);
	/* Reusable after free. */
	ck_assert_int_eq(rangeset_add(&a, 1, 2), 0);
	rangeset_free(&a);
}
END_TEST

/*
 * A long pseudo-random sequence over a 128-byte universe, compared byte by
 * byte with a plain map; base puts the universe at 0 or against UINT64_MAX.
 */
#define UNIVERSE 128
static const uint64_t universe_base[] = {0, TOP - UNIVERSE};

static uint32_t lcg(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

START_TEST(test_against_bytemap)
{
	uint64_t base = universe_base[_i];
	struct rangeset s = RANGESET_INIT;
	bool map[UNIVERSE] = {0};
	uint32_t seed = 12345 + (uint32_t)_i;

	for (int step = 0; step < 20000; step++) {
		uint32_t a = lcg(&seed) % (UNIVERSE + 1), b = lcg(&seed) % (UNIVERSE + 1);
		uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
		bool add = lcg(&seed) % 3 != 0;
		uint64_t total = 0;

		if ((add ? rangeset_add(&s, base + lo, base + hi)
			 : rangeset_remove(&s, base + lo, base + hi)) != 0)
			ck_abort_msg("step %d: edit failed", step);
		for (uint32_t x = lo; x < hi; x++)
			map[x] = add;
		for (size_t i = 1; i < s.n; i++)
			if (s.v[i - 1].end >= s.v[i].start || s.v[i].start >= s.v[i].end)
				ck_abort_msg("step %d: ranges %zu and %zu not disjoint", step,
					     i - 1, i);

		/* Plain ifs: a Check assertion per byte would cost a write each. */
		for (uint32_t x = 0; x < UNIVERSE; x++) {
			if (rangeset_contains(&s, base + x) != map[x])
				ck_abort_msg("step %d: byte %u", step, x);
			total += map[x];
		}
		if (rangeset_total(&s) != total)
			ck_abort_msg("step %d: total %" PRIu64 ", want %" PRIu64, step,
				     rangeset_total(&s), total);

		/* A random query window. */
		a = lcg(&seed) % (UNIVERSE + 1);
		b = lcg(&seed) % (UNIVERSE + 1);
		lo = a < b ? a : b;
		hi = a < b ? b : a;
		{
			bool any = false, all = true;

			for (uint32_t x = lo; x < hi; x++) {
				any |= map[x];
				all &= map[x];
			}
			if (rangeset_overlaps(&s, base + lo, base + hi) != any ||
			    rangeset_covers(&s, base + lo, base + hi) != all)
				ck_abort_msg("step %d: query [%u, %u)", step, lo, hi);
		}
	}
	rangeset_free(&s);
}
END_TEST

START_TEST(test_enomem)
{
	struct rangeset s = RANGESET_INIT, copy = RANGESET_INIT;
	size_t cap;

	/* Nothing allocated yet: the first add fails cleanly. */
	fail_realloc = true;
	ck_assert_int_eq(rangeset_add(&s, 0, 10), -ENOMEM);
	ck_assert_uint_eq(s.n, 0);
	fail_realloc = false;

	/* Fill to capacity, then an add needing room fails and changes nothing. */
	for (uint64_t i = 0; s.n < s.cap || s.n == 0; i++)
		ck_assert_int_eq(rangeset_add(&s, i * 10, i * 10 + 5), 0);
	cap = s.cap;
	ck_assert_int_eq(rangeset_copy(&s, &copy), 0);
	fail_realloc = true;
	ck_assert_int_eq(rangeset_add(&s, 1000, 1005), -ENOMEM);
	ck_assert_uint_eq(s.n, copy.n);
	ck_assert_mem_eq(s.v, copy.v, s.n * sizeof(s.v[0]));
	/* A split needs room too. */
	ck_assert_int_eq(rangeset_remove(&s, 11, 12), -ENOMEM);
	ck_assert_uint_eq(s.n, copy.n);
	ck_assert_mem_eq(s.v, copy.v, s.n * sizeof(s.v[0]));
	/* What needs no room still works: merging, trimming, removing. */
	ck_assert_int_eq(rangeset_add(&s, 5, 10), 0);
	ck_assert_int_eq(rangeset_remove(&s, 0, 2), 0);
	ck_assert_int_eq(rangeset_remove(&s, 20, 25), 0);
	ck_assert_uint_eq(s.cap, cap);
	check_invariants(&s);
	/* A copy into a set too small fails and leaves it as it was. */
	{
		struct rangeset small = RANGESET_INIT;

		ck_assert_int_eq(rangeset_copy(&s, &small), -ENOMEM);
		ck_assert_uint_eq(small.n, 0);
		rangeset_free(&small);
	}
	fail_realloc = false;
	ck_assert_int_eq(rangeset_remove(&s, 31, 32), 0);
	check_invariants(&s);
	rangeset_free(&s);
	rangeset_free(&copy);
}
END_TEST

static Suite *range_suite(void)
{
	Suite *s = suite_create("range");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_edit, 0, ARRAY_SIZE(edit_cases));
	tcase_add_loop_test(tc, test_query, 0, ARRAY_SIZE(query_cases));
	tcase_add_test(tc, test_empty_set);
	tcase_add_test(tc, test_total_full_space);
	tcase_add_test(tc, test_copy_clear);
	tcase_add_loop_test(tc, test_against_bytemap, 0, ARRAY_SIZE(universe_base));
	tcase_add_test(tc, test_enomem);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(range_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
