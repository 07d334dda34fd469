/*
 * C functions for test_ehframe.c, built with -fexceptions and without
 * hot/cold splitting: ehf_with_cleanup has a cleanup, so its FDE has an LSDA
 * (a landing pad that runs the cleanup while an exception or a forced unwind
 * passes); ehf_plain has none.
 */
#include "ehframe_funcs.h"

long ehf_cleanups;

static void ehf_cleanup(long *v)
{
	ehf_cleanups += *v;
}

long ehf_with_cleanup(long (*cb)(long), long x)
{
	long v __attribute__((cleanup(ehf_cleanup))) = x;

	return cb(v) * 2;
}

long ehf_plain(long (*cb)(long), long x)
{
	long a = cb(x);
	long b = cb(a);

	return a * 3 + b;
}
