/*
 * Unit tests for placement_pick() (daemon/placement.c), the pure half of
 * --placement=adversarial, over a recorded /proc/PID/maps dump of python3
 * (non-PIE: the executable at 0x400000, the heap above it, libraries and
 * the stack near the top) and small synthetic models.
 *
 * Each answer is checked against the address worked out by hand from the
 * rule in placement.h, and against an independent predicate written from
 * the facts: page aligned, free with a free page on each side, clear of the
 * request that collided, within rel32 reach when reach is asked for.
 *
 * The target-facing half (the remote brk(0), the ELF check, the hooks) runs
 * in tests/integration/adversarial.sh; here the one guard function it calls
 * is given a value.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "place.h"
#include "placement.h"
#include "util.h"

#ifndef OPTD_MAPS_DATA_DIR
#error "OPTD_MAPS_DATA_DIR must name tests/data/maps"
#endif

#define PG 4096ULL
#define KiB 1024ULL
#define MiB (1024ULL * KiB)

size_t guard_filter_room(const struct guard *g)
{
	(void)g;
	return 0;
}

/* python3-nopie.maps */
#define EXE_START 0x400000ULL
#define EXE_END 0xaca000ULL
#define BRK 0x1d950000ULL
#define STACK_START 0x7ffe07098000ULL
#define STACK_END 0x7ffe070b9000ULL
#define GO_HINT 0xc000000000ULL

static struct maps *model(const char *text)
{
	struct maps *m = NULL;

	ck_assert_int_eq(maps_parse(text, strlen(text), &m), 0);
	return m;
}

static struct maps *python_maps(void)
{
	char path[512];
	static char text[1 << 16];
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/python3-nopie.maps", OPTD_MAPS_DATA_DIR);
	f = fopen(path, "re");
	ck_assert_msg(f, "cannot open %s", path);
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = 0;
	return model(text);
}

static struct placement_facts python_facts(void)
{
	return (struct placement_facts){
	    .size = 4 * MiB,
	    .brk = BRK,
	    .stack_start = STACK_START,
	    .stack_end = STACK_END,
	    .stack_limit = 8 * MiB,
	    .stack_guard_gap = 1 * MiB,
	    .mmap_min_addr = 65536,
	};
}

/* The independent predicate: what any answer must satisfy. */
static void check_valid(const struct maps *m, const struct placement_facts *f, uint64_t a)
{
	uint64_t end = a + f->size;

	ck_assert_msg(a % PG == 0, "%#" PRIx64 " is not page aligned", a);
	ck_assert_msg(a >= f->mmap_min_addr && end <= PLACE_USER_TOP, "%#" PRIx64 " out of range",
		      a);
	for (size_t i = 0; i < m->n; i++)
		ck_assert_msg(m->v[i].end + PG <= a || end + PG <= m->v[i].start,
			      "[%#" PRIx64 ", %#" PRIx64 ") is not a page away from %#" PRIx64
			      "-%#" PRIx64,
			      a, end, m->v[i].start, m->v[i].end);
	for (unsigned i = 0; f->hit && i < f->hit->n_clear; i++)
		ck_assert_msg(f->hit->clear[i].end <= a || end <= f->hit->clear[i].start,
			      "%#" PRIx64 " overlaps the request", a);
	if (f->reach_hi) {
		/* Every byte of the region reaches every byte of the span, both ways. */
		ck_assert_msg(end - 1 - f->reach_lo <= PLACE_REACH_REL32 || end <= f->reach_lo,
			      "%#" PRIx64 " too far above the span", a);
		ck_assert_msg(f->reach_hi - 1 - a <= PLACE_REACH_REL32 || a >= f->reach_hi,
			      "%#" PRIx64 " too far below the span", a);
	}
}

/* placement_pick() must answer want (0: -ENOENT) with a phrase containing what. */
static void expect(const struct maps *m, const struct placement_facts *f, uint64_t want,
		   const char *what)
{
	uint64_t got = 0;
	const char *said = NULL;
	int r = placement_pick(m, f, &got, &said);

	if (!want) {
		ck_assert_msg(r == -ENOENT, "expected no place, got %d (%#" PRIx64 ", %s)", r, got,
			      said ? said : "");
		return;
	}
	ck_assert_msg(r == 0, "expected %#" PRIx64 ", got error %d", want, r);
	ck_assert_msg(got == want, "expected %#" PRIx64 " (%s), got %#" PRIx64 " (%s)", want, what,
		      got, said);
	ck_assert_msg(strstr(said, what), "'%s' does not say '%s'", said, what);
	check_valid(m, f, got);
}

START_TEST(test_first_place)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();

	/* No reach: the stack's growth area, ending 1 MiB below [stack]. */
	expect(m, &f, STACK_START - MiB - f.size, "stack's growth area");
	/* A Go program: the arena hint first. */
	f.go_hint = GO_HINT;
	expect(m, &f, GO_HINT, "Go runtime's arena hint");
	/* With copies of the executable: both are out of reach; above the break. */
	f.reach_lo = EXE_START;
	f.reach_hi = EXE_END;
	expect(m, &f, BRK + PG, "above the break");
	/* A break not page aligned: the page above its page. */
	f.brk = BRK - 100;
	expect(m, &f, BRK + PG, "above the break");
	/* Reach to a span the break is too far from: nothing. */
	f.reach_lo = STACK_START - 4 * PLACE_REACH_REL32;
	f.reach_hi = f.reach_lo + MiB;
	expect(m, &f, 0, "");
	maps_free(m);
}
END_TEST

START_TEST(test_brk_heading)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();
	struct placement_hit h = {.kind = PLACEMENT_HIT_BRK, .addr = 0x1e000800ULL};

	h.clear[h.n_clear++] = (struct range){0x1d7e1000ULL, 0x1e002000ULL};
	f.hit = &h;
	f.reach_lo = EXE_START;
	f.reach_hi = EXE_END;
	/* The new break's page, the kernel's free page, our gap, 64 KiB. */
	expect(m, &f, 0x1e002000ULL + PG + 64 * KiB, "above the new break");
	/* The back-off doubles with each move. */
	f.moves = 1;
	expect(m, &f, 0x1e002000ULL + PG + 128 * KiB, "above the new break");
	f.moves = 5;
	expect(m, &f, 0x1e002000ULL + PG + 2 * MiB, "above the new break");
	maps_free(m);
}
END_TEST

START_TEST(test_skips_what_is_mapped)
{
	/* The region itself sits just above the new break: the next fit is past it. */
	struct maps *m = model("00400000-00500000 r-xp 00000000 fe:00 1 /bin/x\n"
			       "01000000-01100000 rw-p 00000000 00:00 0 [heap]\n"
			       "01102000-01502000 r-xp 00000000 00:00 0\n"
			       "01600000-01610000 rw-p 00000000 00:00 0\n"
			       "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n");
	struct placement_facts f = {
	    .size = 4 * MiB,
	    .reach_lo = 0x400000,
	    .reach_hi = 0x500000,
	    .brk = 0x1100000,
	    .stack_start = 0x7ffd00000000ULL,
	    .stack_end = 0x7ffd00021000ULL,
	    .stack_limit = 8 * MiB,
	    .stack_guard_gap = MiB,
	    .mmap_min_addr = 65536,
	};
	struct placement_hit h = {.kind = PLACEMENT_HIT_BRK, .addr = 0x1110000};

	h.clear[h.n_clear++] = (struct range){0x1000000, 0x1111000};
	f.hit = &h;
	/* 0x1122000 is taken by the region (to 0x1502000) and then 0x1600000: past both. */
	expect(m, &f, 0x1610000 + PG, "above the new break");
	maps_free(m);
}
END_TEST

START_TEST(test_mapping_heading)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();
	struct placement_hit h = {.kind = PLACEMENT_HIT_MAP}, prev = {.kind = PLACEMENT_HIT_MAP};

	f.size = MiB;
	f.go_hint = GO_HINT;
	/* The Go runtime reserves 64 MiB at its hint: the region goes past it. */
	h.head = (struct range){GO_HINT, GO_HINT + 64 * MiB};
	h.clear[h.n_clear++] = h.head;
	f.hit = &h;
	expect(m, &f, GO_HINT + 64 * MiB + PG + 64 * KiB, "past the mapping");
	/* A series going up stays up... */
	prev.head = (struct range){GO_HINT - 64 * MiB, GO_HINT};
	f.prev_map = &prev;
	expect(m, &f, GO_HINT + 64 * MiB + PG + 64 * KiB, "past the mapping");
	/* ...and one going down goes below. */
	prev.head = (struct range){GO_HINT + 64 * MiB, GO_HINT + 128 * MiB};
	f.moves = 2;
	expect(m, &f, GO_HINT - PG - 256 * KiB - MiB, "below the mapping");
	/* mremap: its new place (the last range) leads; the old one is kept clear too. */
	h.head = (struct range){0x7f0000000000ULL, 0x7f0000100000ULL};
	h.clear[0] = (struct range){0x7f0000200000ULL, 0x7f0000210000ULL};
	h.clear[1] = h.head;
	h.n_clear = 2;
	f.prev_map = NULL;
	f.moves = 0;
	expect(m, &f, 0x7f0000210000ULL, "past the mapping");
	maps_free(m);
}
END_TEST

START_TEST(test_stack_heading)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();
	struct placement_hit h = {.kind = PLACEMENT_HIT_STACK};
	uint64_t fault = STACK_START - 3 * PG - 16;

	f.size = MiB;
	h.addr = fault;
	h.clear[h.n_clear++] = (struct range){ALIGN_DOWN(fault, PG) - MiB, PLACE_USER_TOP};
	f.hit = &h;
	/* Below the fault, its guard gap and 64 KiB. */
	expect(m, &f, ALIGN_DOWN(fault, PG) - MiB - 64 * KiB - MiB, "further down the stack");
	f.moves = 4;
	expect(m, &f, ALIGN_DOWN(fault, PG) - MiB - MiB - MiB, "further down the stack");
	/*
	 * A fault near RLIMIT_STACK: a region below it is out of the stack's
	 * reach, and the growth area above is the request's. The break then.
	 */
	fault = STACK_END - 8 * MiB;
	h.addr = fault;
	h.clear[0] = (struct range){fault - MiB, PLACE_USER_TOP};
	f.moves = 0;
	expect(m, &f, BRK + PG, "above the break");
	/* The last place the stack can still meet: its region ends a page above the floor. */
	fault = STACK_END - 8 * MiB + 64 * KiB + PG;
	h.addr = fault;
	h.clear[0] = (struct range){fault - MiB, PLACE_USER_TOP};
	expect(m, &f, fault - MiB - 64 * KiB - MiB, "further down the stack");
	maps_free(m);
}
END_TEST

START_TEST(test_other_requests)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();
	struct placement_hit h = {.kind = PLACEMENT_HIT_OTHER};

	/* munmap over the stack's growth area: no heading; the break. */
	h.clear[h.n_clear++] = (struct range){STACK_START - 16 * MiB, STACK_START};
	f.hit = &h;
	expect(m, &f, BRK + PG, "above the break");
	/* Over both: nothing. */
	h.clear[h.n_clear++] = (struct range){BRK - MiB, BRK + 512 * MiB};
	expect(m, &f, 0, "");
	maps_free(m);
}
END_TEST

START_TEST(test_bad_input)
{
	struct maps *m = python_maps();
	struct placement_facts f = python_facts();
	uint64_t a;
	const char *w;

	f.size = 0;
	ck_assert_int_eq(placement_pick(m, &f, &a, &w), -EINVAL);
	f.size = PG + 1;
	ck_assert_int_eq(placement_pick(m, &f, &a, &w), -EINVAL);
	f.size = PG;
	ck_assert_int_eq(placement_pick(NULL, &f, &a, &w), -EINVAL);
	ck_assert_int_eq(placement_pick(m, NULL, &a, &w), -EINVAL);
	/* No break, no stack, no hint: nothing to offer. */
	f = (struct placement_facts){.size = PG};
	ck_assert_int_eq(placement_pick(m, &f, &a, &w), -ENOENT);
	maps_free(m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("placement");
	TCase *tc = tcase_create("pick");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_first_place);
	tcase_add_test(tc, test_brk_heading);
	tcase_add_test(tc, test_skips_what_is_mapped);
	tcase_add_test(tc, test_mapping_heading);
	tcase_add_test(tc, test_stack_heading);
	tcase_add_test(tc, test_other_requests);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
