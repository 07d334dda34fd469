/*
 * Relocation policy: which functions of a target are copied into its region
 * (--relocate), and the state that undoes it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "stack.h"

struct target;
struct relocation;
struct inj_region;

enum relocate_mode {
	RELOCATE_NONE = 0,
	RELOCATE_ALL,	/* every function of the main executable the copier can prove safe */
	RELOCATE_NAMED, /* the functions named with --relocate=FUNC[,FUNC...] */
	RELOCATE_HOT,	/* the functions most often seen in a sample of thread ips */
};

/* hot: the share of samples the chosen functions must cover, and a cap. */
#define RELOCATE_HOT_COVERAGE 0.95
#define RELOCATE_HOT_MAX_FUNCS 4096

/* relocate_apply() put off because a thread was in the unwinder: how often, how long apart. */
#define RELOCATE_RETRIES 100
#define RELOCATE_RETRY_MS 10

/* Refusal counters, by reason name (copier reasons plus optd's own). */
struct relocate_refusal {
	const char *reason;
	uint64_t count;
};

struct relocate_stats {
	uint64_t found;	    /* functions discovered in the target's modules */
	uint64_t relocated; /* copied and patched */
	uint64_t code_bytes;
	uint64_t plt_direct; /* calls and jumps through the PLT that copies make directly */
	struct relocate_refusal *refused;
	size_t n_refused;
	const char *blocked;	   /* why nothing was relocated at all, or NULL */
	uint64_t samples;	   /* hot: ips sampled */
	uint64_t samples_in_funcs; /* hot: of them, in a known function */
};

/*
 * Discovers the target's functions and chooses candidates. The world must
 * be stopped. *ret_bytes gets the region size the candidates need.
 * 0, -ESRCH, -errno; a target with nothing to relocate gives 0 and a plan
 * with no candidates.
 */
int relocate_plan(struct target *tg, struct relocation **ret, uint64_t *ret_bytes);

/*
 * Like relocate_plan() for --relocate=hot: the candidates are the functions
 * the n sampled ips fall in, most sampled first, until they cover
 * RELOCATE_HOT_COVERAGE of the samples that fell in any function.
 */
int relocate_plan_hot(struct target *tg, const uint64_t *ips, size_t n, struct relocation **ret,
		      uint64_t *ret_bytes);

/*
 * Copies the planned functions into tg's region, writes the code, and
 * patches their entries, refusing (and counting) whatever cannot be done
 * safely. In a process that maps libgcc_s the copies' unwind information is
 * registered with it first (__register_frame_info, called by a target
 * thread once no thread is inside libgcc or the allocator); a copy whose
 * unwind information cannot be carried over is refused, and if the
 * registration cannot be done nothing is patched. The world must be
 * stopped. 0 or -ESRCH; -EBUSY, having changed nothing, when a thread may
 * hold a lock that the registration takes (in libgcc_s or libc's
 * allocator): try again after letting the world run. Other failures refuse
 * functions rather than fail.
 */
int relocate_apply(struct target *tg, struct relocation *rel);

/*
 * *ret_busy: some thread may hold a lock that a remote call into libgcc
 * would wait for: libgcc's object_mutex is locked (or, where optd cannot
 * find it, a thread has a frame in libgcc_s), a thread has a frame in one
 * of libc's allocator functions, or a stack could not be walked to its end.
 * With unwinding_too (at detach), also any frame in libgcc_s: an unwind in
 * progress holds addresses of copies in its context (the landing pad it
 * will jump to), which no stack walk can rewrite. Always false in a process
 * whose copies need no registration. The world must be stopped; tr
 * translates copies for the stack walks. 0, -ESRCH, -errno.
 */
int relocate_unwinder_busy(struct target *tg, struct relocation *rel, bool unwinding_too,
			   inj_stack_translate_fn *tr, void *tr_opaque, bool *ret_busy);

/* Records that relocation was given up for the whole process, and why (functions.blocked). */
void relocate_give_up(struct relocation *rel, const char *why);

/*
 * Withdraws the copies' unwind information from the target's unwinder
 * (world stopped, after relocate_undo() and after every return address into
 * a copy was rewritten; tr translates copy addresses for the stack walks).
 * 0 when nothing is registered any more; -EBUSY when a thread may hold the
 * unwinder's or the allocator's lock; -ESRCH, -errno. Until it succeeds the
 * region must stay mapped.
 */
int relocate_unregister(struct target *tg, struct relocation *rel, inj_stack_translate_fn *tr,
			void *tr_opaque);

/* Restores every entry patch (world stopped). 0, -ESRCH, -errno. */
int relocate_undo(struct target *tg, struct relocation *rel);

/* Where a thread at copy address ip would be in the original code; 0 if ip is in no copy. */
uint64_t relocate_copy_to_orig(const struct relocation *rel, uint64_t ip);

const struct relocate_stats *relocate_stats(const struct relocation *rel);
/*
 * Writes a perf map (path: /tmp/perf-PID.map, the convention of JITs) naming
 * the copies. It outlives a process that exits, so `perf report` can name
 * the copies afterwards; the caller removes it at detach.
 */
int relocate_write_perf_map(const struct relocation *rel, const char *path);
/*
 * Another reference: a fork child shares its parent's relocation (same
 * addresses, same patches, same registration, in its own copy of the
 * address space). Undo and unregister never change the shared record.
 */
struct relocation *relocation_ref(struct relocation *rel);
/* Drops a reference; the last one frees. */
void relocation_free(struct relocation *rel);

/*
 * A fork child shares its parent's relocation until one of them moves its
 * region: then the mover gets a private copy of the records (the modules
 * stay shared). 0 or -ENOMEM.
 */
int relocate_unshare(struct relocation **relp);

/*
 * The span of addresses that the part [start, end) of the region reg (in
 * one piece) must reach with rel32/disp32 to move alone: what the copies in
 * the part refer to outside it, the originals whose entries jump into it,
 * and the copies outside that refer into it. 0, -ENOMEM, or -ENOENT when
 * nothing constrains the part.
 */
int relocate_reach_part(const struct relocation *rel, const struct inj_region *reg, uint64_t start,
			uint64_t end, uint64_t *ret_lo, uint64_t *ret_hi);

/*
 * Widens the page range [*lo, *hi) until no copy, and not the copies'
 * unwind information, straddles its ends: the smallest part of the region
 * holding those pages that can move alone. 0, -ELOOP.
 */
int relocate_atoms(const struct relocation *rel, uint64_t *lo, uint64_t *hi);

/*
 * The part [old_start, old_end) of tg's region moved by delta (its pages
 * were remapped, contents intact; tg->region's pieces already say so).
 * Rewrites what refers across the move: the copies' outbound fields, the
 * FDEs' pc_begin, the entry patches, and libgcc's record of the unwind
 * information. Thread registers and stacks are the caller's. The world must
 * be stopped. 0, -ESRCH, -ERANGE (a field no longer reaches), -errno.
 */
int relocate_moved(struct target *tg, struct relocation *rel, uint64_t old_start, uint64_t old_end,
		   int64_t delta);
