/*
 * A shared library whose functions call through its PLT: to its own exported
 * function (ELF interposition makes -fPIC code call it through the PLT) and
 * to libc. Built twice: with immediate binding and full RELRO (the GOT is
 * read-only once the dynamic linker is done: optd may call the resolved
 * functions directly) and with lazy binding (the GOT stays writable: optd
 * must keep going through the PLT).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

uint64_t plt_inner(uint64_t x, const char *s);
uint64_t plt_outer(uint64_t i);

__attribute__((noinline)) uint64_t plt_inner(uint64_t x, const char *s)
{
	return x * 0x9E3779B97F4A7C15ULL ^ strlen(s);
}

__attribute__((noinline)) uint64_t plt_outer(uint64_t i)
{
	char buf[64];
	uint64_t acc = i;

	snprintf(buf, sizeof(buf), "round %llu", (unsigned long long)i);
	for (int k = 0; k < 8; k++) {
		acc = plt_inner(acc + (uint64_t)k, buf);
		memset(buf + 6, 'a' + (int)(acc % 26), (size_t)(acc % 8));
	}
	return acc;
}
