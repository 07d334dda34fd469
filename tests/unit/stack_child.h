/*
 * Code that test_stack.c's children run, with frames the test knows.
 *
 * stack_child.c is built twice, with frame pointers (suffix _fp) and without
 * (_nofp): main -> a -> b -> c, where c blocks in read() or spins in an asm
 * loop. stack_asm.S holds what must be known to the byte: a loop that a
 * signal interrupts, trampolines that prove a rewritten return address is
 * taken, and functions the test copies to a page without unwind info.
 */
#pragma once

#include <stdint.h>

enum stack_mode {
	STACK_READ = 0, /* c reads one byte from fd and returns it + 1 */
	STACK_SPIN,	/* c spins, counting in *progress, until *go; returns 8 */
};

struct stack_ctx {
	int mode;
	int fd;
	volatile uint64_t *progress;
	volatile int *go;
};

typedef long stack_copy_fn(void *a1, void *a2);

/* main returns ((c + 1) * 3 + 100) + 1000 where c is what c read (or 7). */
#define STACK_DECLARE(sfx)                                                                         \
	long stack_main##sfx(struct stack_ctx *ctx);                                               \
	long stack_a##sfx(struct stack_ctx *ctx);                                                  \
	long stack_b##sfx(struct stack_ctx *ctx);                                                  \
	long stack_c##sfx(struct stack_ctx *ctx);                                                  \
	/* depth more frames of itself above c */                                                  \
	long stack_deep##sfx(struct stack_ctx *ctx, int depth);                                    \
	/* copy(a1, a2) + 1 */                                                                     \
	long stack_nocfi_caller##sfx(stack_copy_fn *copy, void *a1, void *a2);                     \
	/* c(&stack_block_ctx) + 1: what stack_copyme calls */                                     \
	long stack_block_cb##sfx(void);

STACK_DECLARE(_fp)
STACK_DECLARE(_nofp)

extern struct stack_ctx stack_block_ctx;

/* ---- stack_asm.S ---- */

/* Spins, counting in *progress, until *go. stack_victim_loop..._end is the loop. */
void stack_victim(volatile uint64_t *progress, volatile int *go);
extern const char stack_victim_loop[], stack_victim_loop_end[];

/*
 * Trampolines: count in stack_tramp_hits, then jump to stack_tramp_target.
 * stack_ret_tramp is for a return address (flags are dead there);
 * stack_sig_tramp for an interrupted rip (keeps flags and every register).
 */
void stack_ret_tramp(void);
void stack_sig_tramp(void);
extern uint64_t stack_tramp_target;
extern int stack_tramp_hits;

/*
 * Copied by the test: stack_copyme(cb, _) returns cb(); stack_copyspin(progress,
 * go) spins like stack_victim and returns 5. Both have a short branch to
 * code outside them (widened in a copy, so the copy's layout differs from
 * the original's) and change the CFA right after the call / the loop.
 */
long stack_copyme(void *cb, void *unused);
extern const char stack_copyme_end[];
long stack_copyspin(void *progress, void *go);
extern const char stack_copyspin_end[];
