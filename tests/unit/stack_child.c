/*
 * The call chain of test_stack.c, built twice (STACK_SUFFIX _fp and _nofp).
 * noipa keeps every function a function of its own, with its own name; the
 * volatile store after each call keeps the call from becoming a tail call.
 */
#include <unistd.h>

#include "stack_child.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, STACK_SUFFIX)

static volatile long sink;

__attribute__((noipa)) long F(stack_c)(struct stack_ctx *ctx)
{
	long r = 7;

	if (ctx->mode == STACK_READ) {
		char ch = 0;
		r = read(ctx->fd, &ch, 1) == 1 ? ch : -1;
	} else {
		__asm__ volatile("1:	incq %0\n"
				 "	cmpl $0, %1\n"
				 "	je 1b\n"
				 : "+m"(*ctx->progress)
				 : "m"(*ctx->go)
				 : "cc");
	}
	sink = r;
	return r + 1;
}

__attribute__((noipa)) long F(stack_b)(struct stack_ctx *ctx)
{
	long r = F(stack_c)(ctx);

	sink = r;
	return r * 3;
}

__attribute__((noipa)) long F(stack_a)(struct stack_ctx *ctx)
{
	long r = F(stack_b)(ctx);

	sink = r;
	return r + 100;
}

__attribute__((noipa)) long F(stack_main)(struct stack_ctx *ctx)
{
	long r = F(stack_a)(ctx);

	sink = r;
	return r + 1000;
}

__attribute__((noipa)) long F(stack_deep)(struct stack_ctx *ctx, int depth)
{
	long r = depth > 0 ? F(stack_deep)(ctx, depth - 1) : F(stack_c)(ctx);

	sink = r;
	return r + 1;
}

__attribute__((noipa)) long F(stack_nocfi_caller)(stack_copy_fn *copy, void *a1, void *a2)
{
	long r = copy(a1, a2);

	sink = r;
	return r + 1;
}

__attribute__((noipa)) long F(stack_block_cb)(void)
{
	long r = F(stack_c)(&stack_block_ctx);

	sink = r;
	return r + 1;
}
