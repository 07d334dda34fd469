/*
 * A child for test_funcs: prints where its probe functions are, one
 * "NAME ADDR" line each, then "ready", then waits for its stdin to close and
 * exits 0. Built three ways (PIE with symbols, the same stripped, non-PIE)
 * so one source gives the test every kind of executable to discover.
 */
#include <stdio.h>
#include <unistd.h>

/* Exactly 32 bytes with CFI, so its bounds are known without any tool. */
__asm__(".text\n"
	".globl funcs_child_asm\n"
	".type funcs_child_asm, @function\n"
	"funcs_child_asm:\n"
	".cfi_startproc\n"
	".fill 31, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".size funcs_child_asm, .-funcs_child_asm\n");
void funcs_child_asm(void);

static __attribute__((noinline)) int funcs_child_static(int x)
{
	return x * 7 + 3;
}

__attribute__((noinline)) int funcs_child_global(int x)
{
	return funcs_child_static(x) ^ 0x55;
}

int main(void)
{
	/* Through a volatile pointer, so the compiler keeps each probe a function of its own. */
	int (*volatile fp)(int) = funcs_child_static;
	char buf[256];

	printf("funcs_child_static %p\n", (void *)fp);
	printf("funcs_child_global %p\n", (void *)funcs_child_global);
	printf("funcs_child_asm %p\n", (void *)funcs_child_asm);
	printf("main %p\n", (void *)main);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return fp(1) == 10 ? 0 : 1;
}
