/*
 * Relocation policy: which functions of a target are copied into its region
 * (--relocate), and the state that undoes it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct target;
struct relocation;

enum relocate_mode {
	RELOCATE_NONE = 0,
	RELOCATE_ALL,	/* every function of the main executable the copier can prove safe */
	RELOCATE_NAMED, /* the functions named with --relocate=FUNC[,FUNC...] */
	RELOCATE_HOT,	/* the functions most often seen in a sample of thread ips */
};

/* hot: the share of samples the chosen functions must cover, and a cap. */
#define RELOCATE_HOT_COVERAGE 0.95
#define RELOCATE_HOT_MAX_FUNCS 4096

/* Refusal counters, by reason name (copier reasons plus optd's own). */
struct relocate_refusal {
	const char *reason;
	uint64_t count;
};

struct relocate_stats {
	uint64_t found;	    /* functions discovered in the target's modules */
	uint64_t relocated; /* copied and patched */
	uint64_t code_bytes;
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
 * safely. The world must be stopped. 0 or -ESRCH; other failures refuse
 * functions rather than fail.
 */
int relocate_apply(struct target *tg, struct relocation *rel);

/* Restores every entry patch (world stopped). 0, -ESRCH, -errno. */
int relocate_undo(struct target *tg, struct relocation *rel);

/* Where a thread at copy address ip would be in the original code; 0 if ip is in no copy. */
uint64_t relocate_copy_to_orig(const struct relocation *rel, uint64_t ip);

const struct relocate_stats *relocate_stats(const struct relocation *rel);
/*
 * Writes /tmp/perf-PID.map naming the copies (the perf map convention of
 * JITs). It outlives a process that exits, so `perf report` can name the
 * copies afterwards; relocate_forget_perf_map() removes it at detach.
 */
int relocate_write_perf_map(struct relocation *rel, pid_t pid);
/* Removes the perf map (at detach: the copies are no longer used). */
void relocate_forget_perf_map(struct relocation *rel);
void relocation_free(struct relocation *rel);
