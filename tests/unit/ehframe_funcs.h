/* Functions test_ehframe.c copies: C ones (ehframe_funcs.c) and assembly (ehframe_asm.S). */
#pragma once

/* Adds the x it was called with when ehf_with_cleanup's frame goes, by return or by unwinding. */
extern long ehf_cleanups;
long ehf_with_cleanup(long (*cb)(long), long x); /* cb(x) * 2 */
long ehf_plain(long (*cb)(long), long x);	 /* 3 * cb(x) + cb(cb(x)) */
long ehf_widen(long (*cb)(long), long x);	 /* cb(x) + 1 */
long ehf_frame(long (*cb)(long), long x);	 /* cb(x) + 1 */
