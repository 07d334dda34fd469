/*
 * C functions for test_copier.c. copier_funcs.c is compiled several times
 * (-O0, -O2, -O3, -O2 -fcf-protection=full), each build naming its symbols
 * with its own suffix, so the tests copy what gcc really emits.
 */
#pragma once

#include <stddef.h>

#define CF_DECLARE(S)                                                                              \
	extern long cf_counter##S;                                                                 \
	long cf_fib##S(long n);                                                                    \
	long cf_switch##S(const int *ops, int n, long acc);                                        \
	size_t cf_strlen##S(const char *s);                                                        \
	void cf_reverse##S(char *s);                                                               \
	unsigned cf_hash##S(const char *s);                                                        \
	int cf_libc##S(const char *a, const char *b, char *buf, size_t n);                         \
	double cf_poly##S(double x);                                                               \
	double cf_norm##S(const double *v, int n);                                                 \
	long cf_callee##S(long x);                                                                 \
	long cf_callee_alt##S(long x);                                                             \
	long cf_caller##S(long x);                                                                 \
	long cf_tail##S(long x);                                                                   \
	long cf_bump##S(long by);                                                                  \
	long cf_goto##S(const unsigned char *prog, long acc);                                      \
	long cf_cold##S(long x);                                                                   \
	long cf_sort##S(long *v, size_t n);
