/*
 * Entry patches: a 5-byte `jmp rel32` at a function's entry (after its
 * endbr64, when it has one) that sends every new call to the function's
 * copy. The original bytes are kept so that undo restores them exactly.
 *
 * Patches are written only while every thread of the target is stopped
 * (the caller's contract), through /proc/PID/mem, which writes through the
 * text's read-only protection and leaves it read-only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "process.h"

#define INJ_PATCH_LEN 5

struct inj_patch {
	uint64_t addr;		     /* first byte overwritten */
	uint64_t target;	     /* where the jmp goes */
	uint8_t orig[INJ_PATCH_LEN]; /* the bytes expected there, restored by undo */
	uint8_t jmp[INJ_PATCH_LEN];  /* e9 rel32 */
	bool applied;
};

/*
 * Fills *ret for a jmp at addr to target, over the original bytes orig.
 * No target access. 0, -ERANGE when rel32 cannot reach target.
 */
int inj_patch_prepare(uint64_t addr, uint64_t target, const uint8_t orig[INJ_PATCH_LEN],
		      struct inj_patch *ret);

/*
 * Checks, with one look at every thread of proc (all stopped), which of the
 * n patches a thread would execute inside when it resumes: its rip, and
 * rip - 2 for a thread whose syscall the kernel may restart. Marks those in
 * busy[] (n entries, may be NULL) and gives the first one's thread in
 * *ret_tid (may be NULL). Returns how many are busy (0: all clear), -ESRCH,
 * -EBUSY if a thread is running, -errno.
 */
int inj_patch_check_threads(struct inj_process *proc, const struct inj_patch *patches, size_t n,
			    bool *busy, pid_t *ret_tid);

/*
 * Writes n patches. Every patch site must still hold its orig bytes
 * (-ESTALE otherwise, nothing written). All or nothing: on a failure the
 * patches already written are undone. The world must be stopped.
 */
int inj_patch_apply(struct inj_process *proc, struct inj_patch *patches, size_t n);

/*
 * Restores the original bytes of every applied patch. A site that no longer
 * holds our jmp is left alone and reported (-ESTALE) after the others are
 * undone. The world must be stopped.
 */
int inj_patch_undo(struct inj_process *proc, struct inj_patch *patches, size_t n);

/*
 * Points an applied patch at a new target (its copy moved): the jmp in the
 * target is rewritten, after checking it is still the one written. The
 * world must be stopped. 0, -ERANGE (rel32 cannot reach), -ESTALE (the
 * bytes there are not our jmp), -ESRCH, -errno.
 */
int inj_patch_retarget(struct inj_process *proc, struct inj_patch *p, uint64_t target);

/*
 * inj_patch_retarget() for n patches, patches[i] to targets[i]: their sites
 * are read together (inj_mem_read_spans()), sites less than a page apart as
 * one range, and each range is written back at once with the jumps that are
 * still ours re-pointed (the bytes between them as they were read, the world
 * being stopped). results[i] gets what inj_patch_retarget() would have
 * returned for patches[i] (when a site cannot be read, each patch is read on
 * its own). 0, or -ESRCH or -ENOMEM with nothing retargeted.
 */
int inj_patch_retarget_all(struct inj_process *proc, struct inj_patch *const *patches,
			   const uint64_t *targets, size_t n, int *results);
