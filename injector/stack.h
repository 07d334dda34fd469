/*
 * Stack walking of stopped tracee threads, for the guard: when optd moves or
 * removes copied code, every return address that points into it, on every
 * thread's stack, must be found and rewritten in place (DESIGN.md, "The
 * guard", step 4).
 *
 * libunwind does the unwinding (DWARF CFI, signal frames). Its remote
 * accessors are ours: registers come from one PTRACE_GETREGS, memory is read
 * with process_vm_readv a page at a time and kept for the rest of the walk;
 * the ELF and CFI lookup is libunwind-ptrace's (_UPT_find_proc_info, which
 * reads the object files and /proc/PID/maps, no ptrace). What libunwind works
 * out per instruction is cached per address space (UNW_CACHE_GLOBAL) in an
 * inj_unwinder, one per process.
 *
 * An unwinder told what the address space holds (inj_unwinder_sync(), once
 * per stop of the world) keeps, across walks and stops, one
 * libunwind-ptrace state per executable mapping (its ELF image and unwind
 * table) and libunwind's rows, for as long as the same code stays at the
 * same addresses; without it, libunwind-ptrace rereads /proc/PID/maps and
 * maps the object file again whenever a walk goes from one object to
 * another.
 *
 * Code without unwind info (optd's copies) is walked with the original's CFI
 * through a translate hook (inj_unwinder_set_translate): the copier keeps the
 * original's stack layout instruction by instruction, so the original's CFI
 * row at the corresponding instruction describes the copy's frame exactly.
 * Without the hook libunwind guesses such frames from %rbp (see
 * struct inj_frame.guessed).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "process.h"

struct inj_unwinder;
struct maps;

/*
 * One frame, innermost first. Frame 0 is where the thread stopped; frame i+1
 * is the caller of frame i.
 *
 * ip is an instruction boundary: for frame 0 and for the frame interrupted by
 * a signal (the one after a signal frame) it is where execution resumes; for
 * every other frame it is the return address, the instruction after the call.
 */
struct inj_frame {
	uint64_t ip;
	uint64_t sp; /* %rsp in this frame */
	/*
	 * Where the value that becomes frame i+1's ip is stored: the stack slot
	 * of the return address into the caller or, for a signal frame, the
	 * saved %rip in the ucontext the kernel pushed (uc_mcontext.gregs[REG_RIP]).
	 * Rewriting it in the target's memory redirects where frame i returns
	 * to. 0 for the last frame and when the value is in a register or
	 * unknown.
	 */
	uint64_t ra_slot;
	/* A sigreturn trampoline (__restore_rt): the next frame was interrupted by a signal. */
	bool signal_frame;
	/*
	 * This frame's code had no unwind info (no translate hook claimed it),
	 * and libunwind stepped to the caller by guessing: it assumes an
	 * %rbp-based frame ([rbp] = caller's rbp, [rbp+8] = return address).
	 * In a function that does not keep %rbp as a frame pointer that reads
	 * some outer frame's record: callers are skipped or invented. Frames
	 * after a guessed one, and ra_slot here, are not reliable.
	 */
	bool guessed;
};

/* Why a walk ended. */
enum inj_stack_end {
	/* The last frame's CFI says it has no caller (_start, clone3). */
	INJ_STACK_END_OUTERMOST = 0,
	/* The last frame had no unwind info and %rbp led nowhere: callers may be missing. */
	INJ_STACK_END_NO_INFO,
	/* libunwind could not step on (unreadable stack, bad CFA): callers may be missing. */
	INJ_STACK_END_BROKEN,
	/* There were more frames than the caller's array holds. */
	INJ_STACK_END_TRUNCATED,
};

const char *inj_stack_end_name(enum inj_stack_end end);

/*
 * Maps ip in code that has no unwind info of its own (a copy) to the address
 * of the instruction in the original code that it was copied from.
 * ip is an instruction boundary of the copy (a thread's ip or a return
 * address: what copier_copy_to_orig() takes). Returns 0 and *ret_orig;
 * -ENOENT when ip is not in translated code (libunwind's own lookup runs);
 * any other -errno when it is, but has no original equivalent (the frame
 * is then guessed).
 */
typedef int inj_stack_translate_fn(void *opaque, uint64_t ip, uint64_t *ret_orig);

/*
 * An unwinder for process p (kept by the caller next to p, freed before it).
 * 0, -ENOMEM.
 */
int inj_unwinder_new(struct inj_process *p, struct inj_unwinder **ret);

/* Accepts NULL. Touches nothing in the target. */
void inj_unwinder_free(struct inj_unwinder *u);

/*
 * Drops everything cached about the target's code, and what the last
 * inj_unwinder_sync() said. Without syncs, call it when the executable
 * mappings change (dlopen/dlclose, exec, optd moved or removed copies); with
 * or without, after the translate hook's answers change for code that stays
 * where it is. Until it succeeds, walks may use rows of code that is gone.
 * 0 or -ENOMEM.
 */
int inj_unwinder_flush(struct inj_unwinder *u);

/*
 * Code the translate hook answers for: [start, end) holds the same code at
 * the same addresses wherever key is the same (for optd's region: its base,
 * while what it holds is unchanged; pieces of it moved apart would be areas
 * of their own, with a key each that tells where their offset 0 would be).
 */
struct inj_unwind_area {
	uint64_t start, end;
	uint64_t key;
};

/*
 * Tells the unwinder what the target's address space holds in this stop of
 * the world: m, read while every thread was stopped and none ran since
 * (inj_process_maps()), and the areas of translated code. What it has
 * learnt about code that is still where it was, the same, is kept; if any
 * mapping now lies where different code was learnt about, every row is
 * dropped (libunwind flushes all or nothing). Walks until the target next
 * runs then find each executable mapping's unwind table without reading
 * /proc/PID/maps; a walk after the target ran, without a new sync, first
 * forgets everything. 0 or -ENOMEM (the unwinder then knows nothing, and
 * walks as if never synced).
 */
int inj_unwinder_sync(struct inj_unwinder *u, const struct maps *m,
		      const struct inj_unwind_area *areas, size_t n_areas);

/*
 * Sets (fn non-NULL) or clears the translate hook, and flushes (0 or
 * -ENOMEM; the hook is set either way). fn is called during
 * inj_stack_walk() only, and must not walk itself.
 */
int inj_unwinder_set_translate(struct inj_unwinder *u, inj_stack_translate_fn *fn, void *opaque);

/*
 * Reads memory a page at a time and keeps the pages for the rest of one walk
 * (the default), or reads each word when it is needed (tests, benchmarks).
 */
void inj_unwinder_set_page_cache(struct inj_unwinder *u, bool on);

/*
 * Walks the stack of thread t of the unwinder's process. t must be in a
 * ptrace-stop; for a thread borrowed for remote calls (t->prepared) the
 * target's own registers (t->saved_regs) are walked, not ours. Other threads
 * should be stopped too: the walk reads t's stack while it runs. Changes
 * nothing in the target.
 *
 * Fills frames[0 .. *ret_n) (at most max) and says in *ret_end (may be NULL)
 * why the walk ended. Returns 0; -ESRCH when the thread or process is gone;
 * -EBUSY when t is not stopped; -EINVAL for max 0 or a thread of another
 * process; -ENOMEM; other -errno from reading registers.
 */
int inj_stack_walk(struct inj_unwinder *u, struct inj_thread *t, struct inj_frame *frames,
		   size_t max, size_t *ret_n, enum inj_stack_end *ret_end);
