/*
 * Interval sets on a sorted array. Address spaces hold a few hundred ranges,
 * so binary search plus memmove beats any tree here, and the array form is
 * what callers iterate over.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "range.h"

/* Makes room for at least want ranges. 0 or -ENOMEM; the set is unchanged on failure. */
static int rangeset_reserve(struct rangeset *s, size_t want)
{
	struct range *v;
	size_t cap;

	if (want <= s->cap)
		return 0;
	cap = s->cap ? s->cap : 8;
	while (cap < want) {
		if (cap > SIZE_MAX / 2 / sizeof(*v))
			return -ENOMEM;
		cap *= 2;
	}
	v = realloc(s->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	s->cap = cap;
	return 0;
}

/* Index of the first range whose end is >= addr (adjacent counts), or s->n. */
static size_t first_end_ge(const struct rangeset *s, uint64_t addr)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].end < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the first range whose end is > addr (strictly past it), or s->n. */
static size_t first_end_gt(const struct rangeset *s, uint64_t addr)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Replaces v[i, j) by the k ranges of repl; room for them must already exist. */
static void splice(struct rangeset *s, size_t i, size_t j, const struct range *repl, size_t k)
{
	memmove(&s->v[i + k], &s->v[j], (s->n - j) * sizeof(s->v[0]));
	memcpy(&s->v[i], repl, k * sizeof(s->v[0]));
	s->n = s->n - (j - i) + k;
}

int rangeset_add(struct rangeset *s, uint64_t start, uint64_t end)
{
	struct range merged = {start, end};
	size_t i, j;
	int r;

	if (start > end)
		return -EINVAL;
	if (start == end)
		return 0;

	/* v[i, j) are the ranges that overlap or touch [start, end). */
	i = first_end_ge(s, start);
	for (j = i; j < s->n && s->v[j].start <= end; j++)
		;
	if (i == j) {
		r = rangeset_reserve(s, s->n + 1);
		if (r < 0)
			return r;
	} else {
		if (s->v[i].start < merged.start)
			merged.start = s->v[i].start;
		if (s->v[j - 1].end > merged.end)
			merged.end = s->v[j - 1].end;
	}
	splice(s, i, j, &merged, 1);
	return 0;
}

/* Also -EINVAL if start > end, as rangeset_add(), so a caller's bad arithmetic shows. */
int rangeset_remove(struct rangeset *s, uint64_t start, uint64_t end)
{
	struct range keep[2];
	size_t i, j, k = 0;
	int r;

	if (start > end)
		return -EINVAL;
	if (start == end)
		return 0;

	/* v[i, j) are the ranges sharing at least one byte with [start, end). */
	i = first_end_gt(s, start);
	for (j = i; j < s->n && s->v[j].start < end; j++)
		;
	if (i == j)
		return 0;

	if (s->v[i].start < start)
		keep[k++] = (struct range){s->v[i].start, start};
	if (s->v[j - 1].end > end)
		keep[k++] = (struct range){end, s->v[j - 1].end};
	/* Only a split of a single range grows the array. */
	if (k > j - i) {
		r = rangeset_reserve(s, s->n + 1);
		if (r < 0)
			return r;
	}
	splice(s, i, j, keep, k);
	return 0;
}

bool rangeset_contains(const struct rangeset *s, uint64_t addr)
{
	size_t i = first_end_gt(s, addr);

	return i < s->n && s->v[i].start <= addr;
}

bool rangeset_overlaps(const struct rangeset *s, uint64_t start, uint64_t end)
{
	size_t i;

	if (start >= end)
		return false;
	i = first_end_gt(s, start);
	return i < s->n && s->v[i].start < end;
}

/* An empty [start, end) is covered by any set, like the empty set is a subset of any set. */
bool rangeset_covers(const struct rangeset *s, uint64_t start, uint64_t end)
{
	size_t i;

	if (start >= end)
		return true;
	/* Coalesced: a covered span lies inside one range. */
	i = first_end_gt(s, start);
	return i < s->n && s->v[i].start <= start && s->v[i].end >= end;
}

uint64_t rangeset_total(const struct rangeset *s)
{
	uint64_t total = 0;

	/* Disjoint ranges inside [0, UINT64_MAX) cannot sum past UINT64_MAX. */
	for (size_t i = 0; i < s->n; i++)
		total += s->v[i].end - s->v[i].start;
	return total;
}

/*
 * Replaces dst's contents by src's. dst must be initialized (RANGESET_INIT or
 * used before). 0 or -ENOMEM, and dst is unchanged on failure.
 */
int rangeset_copy(const struct rangeset *src, struct rangeset *dst)
{
	int r;

	if (src == dst)
		return 0;
	r = rangeset_reserve(dst, src->n);
	if (r < 0)
		return r;
	if (src->n)
		memcpy(dst->v, src->v, src->n * sizeof(src->v[0]));
	dst->n = src->n;
	return 0;
}

/* Empties the set and keeps its storage for reuse. */
void rangeset_clear(struct rangeset *s)
{
	s->n = 0;
}

void rangeset_free(struct rangeset *s)
{
	if (!s)
		return;
	free(s->v);
	*s = (struct rangeset)RANGESET_INIT;
}
