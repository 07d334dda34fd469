/*
 * Address ranges and interval sets. A range is half open: [start, end).
 * A rangeset keeps its ranges sorted, disjoint and coalesced.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct range {
	uint64_t start;
	uint64_t end;
};

static inline bool range_overlaps(uint64_t a_start, uint64_t a_end, uint64_t b_start,
				  uint64_t b_end)
{
	return a_start < b_end && b_start < a_end;
}

struct rangeset {
	struct range *v;
	size_t n;
	size_t cap;
};

#define RANGESET_INIT                                                                              \
	{                                                                                          \
		0                                                                                  \
	}

/* Adds [start, end), merging with overlapping or adjacent ranges. 0 or -ENOMEM; -EINVAL if start >
 * end. */
int rangeset_add(struct rangeset *s, uint64_t start, uint64_t end);
/* Removes [start, end), splitting ranges as needed. 0 or -ENOMEM. */
int rangeset_remove(struct rangeset *s, uint64_t start, uint64_t end);
bool rangeset_contains(const struct rangeset *s, uint64_t addr);
/* True if any part of [start, end) is in the set. */
bool rangeset_overlaps(const struct rangeset *s, uint64_t start, uint64_t end);
/* True if all of [start, end) is in the set. */
bool rangeset_covers(const struct rangeset *s, uint64_t start, uint64_t end);
/* Total bytes covered. */
uint64_t rangeset_total(const struct rangeset *s);
int rangeset_copy(const struct rangeset *src, struct rangeset *dst);
void rangeset_clear(struct rangeset *s);
/* Frees storage; the set is empty and reusable afterwards. Accepts NULL. */
void rangeset_free(struct rangeset *s);
