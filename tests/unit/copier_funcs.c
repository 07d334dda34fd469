/*
 * Functions whose compiled code the copier must handle: recursion, a switch
 * dense enough for a jump table, computed gotos, string loops, libc calls
 * through the PLT, floating point with RIP-relative constants, calls and tail
 * calls to other functions, a global counter, a cold split (cf_cold.cold
 * jumps back into the original), a function pointer taken with lea. CF_SUFFIX names this build (see
 * copier_funcs.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copier_funcs.h"

#ifndef CF_SUFFIX
#error "CF_SUFFIX must name this build"
#endif

#define CF_CAT2(a, b) a##b
#define CF_CAT(a, b) CF_CAT2(a, b)
#define FN(name) CF_CAT(name, CF_SUFFIX)
#define CF_DECLARE_X(S) CF_DECLARE(S)

CF_DECLARE_X(CF_SUFFIX)

long FN(cf_counter);

long FN(cf_fib)(long n)
{
	return n < 2 ? n : FN(cf_fib)(n - 1) + FN(cf_fib)(n - 2);
}

long FN(cf_switch)(const int *ops, int n, long acc)
{
	for (int i = 0; i < n; i++) {
		switch (ops[i]) {
		case 0:
			acc += 3;
			break;
		case 1:
			acc *= 5;
			break;
		case 2:
			acc -= 7;
			break;
		case 3:
			acc ^= 0x55;
			break;
		case 4:
			acc /= 3;
			break;
		case 5:
			acc <<= 1;
			break;
		case 6:
			acc = -acc;
			break;
		case 7:
			acc += i;
			break;
		case 8:
			acc |= 0x100;
			break;
		default:
			acc--;
			break;
		}
	}
	return acc;
}

size_t FN(cf_strlen)(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return p - s;
}

void FN(cf_reverse)(char *s)
{
	size_t n = FN(cf_strlen)(s);

	for (size_t i = 0; i < n / 2; i++) {
		char t = s[i];

		s[i] = s[n - 1 - i];
		s[n - 1 - i] = t;
	}
}

unsigned FN(cf_hash)(const char *s)
{
	unsigned h = 2166136261u;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

int FN(cf_libc)(const char *a, const char *b, char *buf, size_t n)
{
	int r = snprintf(buf, n, "%s|%s|%d", a, b, strcmp(a, b) > 0);

	return r + (int)strlen(buf) + (memchr(a, 'x', strlen(a)) != NULL);
}

double FN(cf_poly)(double x)
{
	return 3.25 * x * x - 1.5 * x + 0.125 / (x * x + 1.0);
}

double FN(cf_norm)(const double *v, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += v[i] * v[i];
	return sqrt(s) + fabs(v[0]) * 0.5;
}

__attribute__((noipa)) long FN(cf_callee)(long x)
{
	return x * 3 + 1;
}

/* What a redirected call reaches instead of cf_callee: tells the two apart. */
__attribute__((noipa)) long FN(cf_callee_alt)(long x)
{
	return x * 7 - 2;
}

long FN(cf_caller)(long x)
{
	long s = 0;

	for (long i = 0; i < 4; i++)
		s += FN(cf_callee)(x + i) ^ i;
	return s;
}

long FN(cf_tail)(long x)
{
	if (x > 100)
		return FN(cf_callee)(x - 100);
	return FN(cf_callee)(x + 1);
}

long FN(cf_bump)(long by)
{
	FN(cf_counter) += by;
	return FN(cf_counter) * 2;
}

long FN(cf_goto)(const unsigned char *prog, long acc)
{
	static const void *const ops[] = {&&op_add, &&op_mul, &&op_neg, &&op_end};
	const unsigned char *pc = prog;

	goto *ops[*pc & 3];
op_add:
	acc += 5;
	pc++;
	goto *ops[*pc & 3];
op_mul:
	acc *= 3;
	pc++;
	goto *ops[*pc & 3];
op_neg:
	acc = -acc;
	pc++;
	goto *ops[*pc & 3];
op_end:
	return acc;
}

/* Calls to a cold function make gcc move their block to cf_cold.cold at -O2. */
__attribute__((cold, noinline)) static long rare(long x)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "negative %ld", x);
	return (long)strlen(buf);
}

long FN(cf_cold)(long x)
{
	long r = x * x + 1;

	if (x < 0)
		r = FN(cf_callee)(rare(x)) - x + r;
	return r;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

long FN(cf_sort)(long *v, size_t n)
{
	long h = 0;

	qsort(v, n, sizeof(*v), cmp_long);
	for (size_t i = 0; i < n; i++)
		h = h * 31 + v[i];
	return h;
}
