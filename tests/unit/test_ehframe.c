/*
 * Unit tests for injector/ehframe.c.
 *
 * The oracle is libgcc's own unwinder, in this process. Functions of the
 * test (ehframe_asm.S, whose copies far away do not have the original's
 * layout, and ehframe_funcs.c, built with -fexceptions) are found with
 * funcs.c in the test's own image, copied with the copier to pages near the
 * test's code, and given the .eh_frame the builder makes from the test's own
 * .eh_frame, registered with __register_frame_info(). Then:
 *   - a backtrace (_Unwind_Backtrace) from a callback the copy calls must be
 *     the backtrace through the original, frame for frame (same return
 *     addresses and CFAs but the copy's own frame, whose return address maps
 *     back to the original's), and must stop at the copy when nothing is
 *     registered;
 *   - a forced unwind (what pthread_cancel does) from the callback must pass
 *     through the copy of a function with a cleanup and run the cleanup, at
 *     the copy's landing pad.
 *
 * Every output is also parsed by libdw (dwarf_next_cfi), independently of
 * the builder: every entry frames, every FDE's CIE pointer names a CIE, the
 * CIE's fields are the original's, the FDE covers the copy.
 *
 * The CFA program's rewriting, encodings and refusals are checked on
 * hand-made .eh_frame bytes and maps, where every expected byte is written
 * out.
 */
#include <check.h>
#include <dwarf.h>
#include <elf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <inttypes.h>
#include <libelf.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>

#include "copier.h"
#include "ehframe.h"
#include "ehframe_funcs.h"
#include "funcs.h"
#include "util.h"

/* libgcc_s: not in any header. ob is libgcc's struct object, opaque, zeroed storage. */
void __register_frame_info(const void *begin, void *ob);
void *__deregister_frame_info(const void *begin);
_Unwind_Reason_Code __gcc_personality_v0(int version, _Unwind_Action actions,
					 _Unwind_Exception_Class cls, struct _Unwind_Exception *exc,
					 struct _Unwind_Context *ctx);

/*
 * realloc is wrapped at link time (the builder's only allocator) to test
 * -ENOMEM: with reallocs_left >= 0, that many succeed, then every one fails.
 */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static long reallocs_left = -1;

void *__wrap_realloc(void *p, size_t n)
{
	if (reallocs_left == 0) {
		errno = ENOMEM;
		return NULL;
	}
	if (reallocs_left > 0)
		reallocs_left--;
	return __real_realloc(p, n);
}

#define PG 4096UL
#define PAGE_BYTES (16 * PG)

static uint64_t addr_of(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ---- the test's own module and copies of its functions ---- */

static struct module_set *self_set;
static const struct module *self_mod;

static void self_open(void)
{
	ck_assert_int_eq(funcs_discover(getpid(), &self_set), 0);
	self_mod = module_set_find(self_set, addr_of((const void *)ehf_widen));
	ck_assert_ptr_nonnull(self_mod);
	ck_assert_ptr_nonnull(self_mod->eh_frame);
}

static void self_close(void)
{
	module_set_free(self_set);
	self_set = NULL;
	self_mod = NULL;
}

static struct ehframe_src self_src(void)
{
	return (struct ehframe_src){self_mod->eh_frame, self_mod->eh_frame_size,
				    self_mod->eh_frame_addr};
}

static const struct func *self_func(const void *fn)
{
	const struct func *f = module_find_func(self_mod, addr_of(fn));

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of(fn));
	ck_assert_uint_ne(f->fde_off, FUNC_NO_FDE);
	return f;
}

/* Fresh pages 256 MiB to 1 GiB from anchor: out of rel8 reach, within rel32 reach. */
static uint8_t *map_near(const void *anchor)
{
	for (uint64_t off = 1ULL << 28; off < 1ULL << 30; off += 1ULL << 24) {
		for (int sign = 1; sign >= -1; sign -= 2) {
			uint64_t want = ALIGN_DOWN(addr_of(anchor), PG) + sign * off;
			void *p = mmap((void *)(uintptr_t)want, PAGE_BYTES, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

			if (p == (void *)(uintptr_t)want)
				return p;
			if (p != MAP_FAILED)
				munmap(p, PAGE_BYTES);
		}
	}
	ck_abort_msg("no free pages within reach of the test's code");
	return NULL;
}

/* The exec tests' pages for copies, made and removed by their fixture. */
static uint8_t *page;

static void exec_setup(void)
{
	self_open();
	page = map_near((const void *)ehf_widen);
}

static void exec_teardown(void)
{
	munmap(page, PAGE_BYTES);
	self_close();
}

struct copy {
	const struct func *f;
	struct copier_result *res;
};

/* Copies fn to page + at. */
static struct copy copy_fn(size_t at, const void *fn)
{
	const struct func *f = self_func(fn);
	struct copier_input in = {
	    .code = fn,
	    .orig_addr = f->start,
	    .len = f->end - f->start,
	    .dest_addr = addr_of(page + at),
	    .dest_cap = PAGE_BYTES - at,
	};
	struct copier_refusal why = {0};
	struct copy c = {.f = f};

	ck_assert_msg(copier_copy(&in, page + at, &c.res, &why) == 0, "copier: %s at +%u",
		      copier_reason_to_string(why.reason), why.orig_off);
	return c;
}

static bool identity_map(const struct copier_result *r)
{
	for (size_t i = 0; i < r->n_map; i++)
		if (r->map[i].orig_len && (r->map[i].copy_off != r->map[i].orig_off ||
					   r->map[i].copy_len != r->map[i].orig_len))
			return false;
	return true;
}

/* ---- reading the output with libdw ---- */

static const unsigned char elf64_ident[EI_NIDENT] = {
    ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
};

static Elf_Data data_of(const uint8_t *buf, size_t size)
{
	return (Elf_Data){
	    .d_buf = (void *)buf, .d_type = ELF_T_BYTE, .d_size = size, .d_version = EV_CURRENT};
}

/* An FDE of the output as libdw frames it, with the fields our encoding (absptr) gives. */
struct out_fde {
	Dwarf_CIE cie;
	uint64_t pc_begin, pc_range;
	size_t aug_len;
	uint64_t lsda;
	const uint8_t *insns, *insns_end;
};

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/*
 * Walks the whole output with libdw: every entry frames, is 8-byte aligned,
 * and every FDE's CIE pointer names a CIE; the terminator ends it. Returns the
 * number of CIEs and, in fdes (up to max), the FDEs in order.
 */
static size_t parse_output(const uint8_t *buf, size_t size, struct out_fde *fdes, size_t max,
			   size_t *ret_n_fdes)
{
	Elf_Data data = data_of(buf, size);
	Dwarf_Off off = 0, next;
	size_t n_cies = 0, n_fdes = 0;

	ck_assert_uint_ge(size, 4);
	ck_assert_uint_eq(size % 8, 4);
	ck_assert_mem_eq(buf + size - 4, "\0\0\0\0", 4);
	for (;;) {
		Dwarf_CFI_Entry e, c;
		Dwarf_Off cnext;
		int r = dwarf_next_cfi(elf64_ident, &data, true, off, &next, &e);

		if (off == size - 4) {
			ck_assert_int_eq(r, 1); /* the terminator */
			break;
		}
		ck_assert_msg(r == 0, "libdw cannot read the entry at %" PRIu64 ": %s",
			      (uint64_t)off, dwarf_errmsg(-1));
		ck_assert_uint_eq(off % 8, 0);
		ck_assert_uint_le(next, size - 4);
		if (dwarf_cfi_cie_p(&e)) {
			n_cies++;
		} else {
			struct out_fde *o = n_fdes < max ? &fdes[n_fdes] : NULL;
			const uint8_t *p = e.fde.start;

			ck_assert_int_eq(
			    dwarf_next_cfi(elf64_ident, &data, true, e.fde.CIE_pointer, &cnext, &c),
			    0);
			ck_assert_msg(dwarf_cfi_cie_p(&c), "FDE at %" PRIu64 " points at no CIE",
				      (uint64_t)off);
			ck_assert_uint_lt(e.fde.CIE_pointer, off);
			ck_assert_int_eq(c.cie.augmentation[0], 'z');
			ck_assert_uint_ge(e.fde.end - p, 17);
			if (o) {
				o->cie = c.cie;
				o->pc_begin = get_u64(p);
				o->pc_range = get_u64(p + 8);
				o->aug_len = p[16];
				/* What the CIE's augmentation implies, as libdw computes it. */
				ck_assert_uint_eq(o->aug_len, c.cie.fde_augmentation_data_size);
				o->lsda = o->aug_len == 8 ? get_u64(p + 17) : 0;
				o->insns = p + 17 + o->aug_len;
				o->insns_end = e.fde.end;
			}
			n_fdes++;
		}
		off = next;
	}
	*ret_n_fdes = n_fdes;
	return n_cies;
}

/* The builder's output, in a buffer of the caller's to free. */
static uint8_t *emit(struct ehframe_builder *b, size_t *ret_size)
{
	size_t size = ehframe_size(b);
	uint8_t *buf = malloc(size);

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(ehframe_emit(b, buf, size - 1), -ENOSPC);
	ck_assert_int_eq(ehframe_emit(b, buf, size), 0);
	*ret_size = size;
	return buf;
}

/* ---- backtraces through copies ---- */

#define MAX_FRAMES 24

struct trace {
	int n;
	uint64_t ip[MAX_FRAMES], cfa[MAX_FRAMES];
};

static struct trace *cur_trace;

static _Unwind_Reason_Code collect(struct _Unwind_Context *ctx, void *arg)
{
	struct trace *t = arg;

	if (t->n == MAX_FRAMES)
		return _URC_END_OF_STACK;
	t->ip[t->n] = _Unwind_GetIP(ctx);
	t->cfa[t->n] = _Unwind_GetCFA(ctx);
	t->n++;
	return _URC_NO_REASON;
}

/* The trace of its last call is kept. */
static __attribute__((noinline)) long trace_cb(long x)
{
	cur_trace->n = 0;
	_Unwind_Backtrace(collect, cur_trace);
	__asm__ volatile("" ::: "memory"); /* no tail call: this frame stays */
	return x + 7;
}

typedef long fn_cb_l(long (*cb)(long), long x);

/* The frame between the test and the function under test, the same for original and copy. */
static __attribute__((noinline)) long call_via(fn_cb_l *fn, long (*cb)(long), long x)
{
	long r = fn(cb, x);

	__asm__ volatile("" ::: "memory");
	return r;
}

static int frame_in(const struct trace *t, uint64_t start, uint64_t end)
{
	for (int i = 0; i < t->n; i++)
		if (t->ip[i] > start && t->ip[i] <= end) /* a return address may be the end */
			return i;
	return -1;
}

/*
 * Traces from inside the original and inside the copy c, called alike, so
 * that every other frame is the same; registered says whether the copy's
 * FDE is.
 */
static void check_trace(const struct copy *c, long (*expect)(long), bool registered)
{
	const struct copier_result *r = c->res;
	struct trace t[2];
	int k[2];
	uint64_t orig_ra;

	for (int i = 0; i < 2; i++) {
		fn_cb_l *fn = (fn_cb_l *)(uintptr_t)(i ? r->dest_addr : r->orig_addr);

		memset(&t[i], 0, sizeof(t[i]));
		cur_trace = &t[i];
		ck_assert_int_eq(call_via(fn, trace_cb, 5), expect(5));
	}
	k[0] = frame_in(&t[0], r->orig_addr, r->orig_addr + r->orig_len);
	k[1] = frame_in(&t[1], r->dest_addr, r->dest_addr + r->size);
	ck_assert_int_ge(k[0], 1);
	ck_assert_int_eq(k[1], k[0]);
	/* The copy's return address is the original's, moved. */
	ck_assert_int_eq(copier_copy_to_orig(r, t[1].ip[k[1]], &orig_ra), 0);
	ck_assert_uint_eq(orig_ra, t[0].ip[k[0]]);
	if (!registered) {
		ck_assert_int_eq(t[1].n, k[1] + 1); /* the unwinder stops at the copy */
		return;
	}
	/* Past the copy: call_via, the test, and Check's own frames. */
	ck_assert_int_ge(t[0].n, k[0] + 3);
	ck_assert_int_eq(t[1].n, t[0].n);
	for (int i = 0; i < t[0].n; i++) {
		/* check_trace's call to call_via: gcc may have made one per iteration. */
		if (i == k[0] + 2)
			ck_assert_ptr_eq(module_find_func(self_mod, t[0].ip[i] - 1),
					 module_find_func(self_mod, t[1].ip[i] - 1));
		else if (i != k[0])
			ck_assert_msg(t[0].ip[i] == t[1].ip[i],
				      "frame %d: return address %#" PRIx64 ", not %#" PRIx64, i,
				      t[1].ip[i], t[0].ip[i]);
		ck_assert_msg(t[0].cfa[i] == t[1].cfa[i],
			      "frame %d: CFA %#" PRIx64 ", not %#" PRIx64, i, t[1].cfa[i],
			      t[0].cfa[i]);
	}
}

static long expect_plus1(long x)
{
	return x + 7 + 1;
}

static long expect_cleanup(long x)
{
	return (x + 7) * 2;
}

static long expect_plain(long x)
{
	return 3 * (x + 7) + (x + 7 + 7);
}

static const struct {
	const char *name;
	const void *fn;
	long (*expect)(long);
	bool same_layout; /* far away, the copy keeps the layout */
} trace_cases[] = {
    {"ehf_widen", (const void *)ehf_widen, expect_plus1, false},
    {"ehf_frame", (const void *)ehf_frame, expect_plus1, false},
    {"ehf_with_cleanup", (const void *)ehf_with_cleanup, expect_cleanup, true},
    {"ehf_plain", (const void *)ehf_plain, expect_plain, true},
};

static long object[16]; /* libgcc's struct object for our registration */

/*
 * Each function alone, with a backtrace before and after registering its
 * copy's FDE; for the asm ones the map must show the layout change (else the
 * remap is not exercised).
 */
START_TEST(test_backtrace_through_copy)
{
	uint8_t *buf;
	struct ehframe_builder *b;
	struct ehframe_src src;
	struct copy c;
	struct out_fde fde;
	enum ehframe_reason why = EHFRAME_MALFORMED;
	size_t size, n_fdes;

	src = self_src();
	c = copy_fn(64, trace_cases[_i].fn);
	ck_assert_int_eq(mprotect(page, PAGE_BYTES, PROT_READ | PROT_EXEC), 0);
	ck_assert_int_eq(identity_map(c.res), trace_cases[_i].same_layout);
	if (!trace_cases[_i].same_layout)
		ck_assert_uint_gt(c.res->size, c.res->orig_len);

	check_trace(&c, trace_cases[_i].expect, false);

	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	ck_assert_int_eq(ehframe_add(b, &src, c.f->fde_off, c.res, &why), 0);
	ck_assert_int_eq(why, EHFRAME_OK);
	ck_assert_uint_eq(ehframe_count(b), 1);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	ck_assert_uint_eq(n_fdes, 1);
	ck_assert_uint_eq(fde.pc_begin, c.res->dest_addr);
	ck_assert_uint_eq(fde.pc_range, c.res->size);
	ck_assert_uint_eq(fde.cie.code_alignment_factor, 1);
	ck_assert_int_eq(fde.cie.data_alignment_factor, -8);
	ck_assert_uint_eq(fde.cie.return_address_register, 16);

	memset(object, 0, sizeof(object));
	__register_frame_info(buf, object);
	check_trace(&c, trace_cases[_i].expect, true);
	ck_assert_ptr_eq(__deregister_frame_info(buf), object);
	check_trace(&c, trace_cases[_i].expect, false);

	free(buf);
	ehframe_builder_free(b);
	copier_result_free(c.res);
}
END_TEST

/*
 * All four copies in one section: one CIE per distinct original CIE, every
 * copy unwinds.
 */
START_TEST(test_one_section)
{
	struct copy c[ARRAY_SIZE(trace_cases)];
	struct out_fde fdes[ARRAY_SIZE(trace_cases)];
	uint64_t cies[ARRAY_SIZE(trace_cases)];
	size_t n_distinct = 0, size, n_fdes;
	struct ehframe_builder *b;
	struct ehframe_src src;
	uint8_t *buf;

	src = self_src();
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	for (size_t i = 0; i < ARRAY_SIZE(trace_cases); i++) {
		uint32_t cie_delta;
		bool seen = false;

		c[i] = copy_fn(1024 * i, trace_cases[i].fn);
		ck_assert_int_eq(ehframe_add(b, &src, c[i].f->fde_off, c[i].res, NULL), 0);
		/* The original's CIE: its CIE pointer is relative to the field. */
		memcpy(&cie_delta, src.data + c[i].f->fde_off + 4, 4);
		cies[i] = c[i].f->fde_off + 4 - cie_delta;
		for (size_t j = 0; j < i; j++)
			seen |= cies[j] == cies[i];
		n_distinct += !seen;
	}
	ck_assert_int_eq(mprotect(page, PAGE_BYTES, PROT_READ | PROT_EXEC), 0);
	/* The asm file and the -fexceptions file have different CIEs ("zR", "zPLR"). */
	ck_assert_uint_ge(n_distinct, 2);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, fdes, ARRAY_SIZE(fdes), &n_fdes), n_distinct);
	ck_assert_uint_eq(n_fdes, ARRAY_SIZE(trace_cases));
	for (size_t i = 0; i < n_fdes; i++) {
		ck_assert_uint_eq(fdes[i].pc_begin, c[i].res->dest_addr);
		ck_assert_uint_eq(fdes[i].pc_range, c[i].res->size);
	}

	memset(object, 0, sizeof(object));
	__register_frame_info(buf, object);
	for (size_t i = 0; i < ARRAY_SIZE(trace_cases); i++)
		check_trace(&c[i], trace_cases[i].expect, true);
	ck_assert_ptr_eq(__deregister_frame_info(buf), object);

	free(buf);
	ehframe_builder_free(b);
	for (size_t i = 0; i < ARRAY_SIZE(trace_cases); i++)
		copier_result_free(c[i].res);
}
END_TEST

/* ---- a forced unwind through a copy with a cleanup ---- */

static jmp_buf unwind_jb;
static uint64_t catcher_start, catcher_end;
static uint64_t copy_start, copy_end;
static int copy_frames; /* frames of the copy the forced unwind passed */

static _Unwind_Reason_Code stop_fn(int version, _Unwind_Action actions, _Unwind_Exception_Class cls,
				   struct _Unwind_Exception *exc, struct _Unwind_Context *ctx,
				   void *arg)
{
	uint64_t ip = _Unwind_GetIP(ctx);

	(void)version;
	(void)cls;
	(void)exc;
	(void)arg;
	if (actions & _UA_END_OF_STACK)
		longjmp(unwind_jb, 2);
	if (ip > copy_start && ip <= copy_end)
		copy_frames++;
	if (ip > catcher_start && ip <= catcher_end)
		longjmp(unwind_jb, 1);
	return _URC_NO_REASON;
}

static long unwind_cb(long x)
{
	static struct _Unwind_Exception exc;

	memset(&exc, 0, sizeof(exc));
	exc.exception_class = 0x4f50544400000000ULL; /* "OPTD\0\0\0\0" */
	_Unwind_ForcedUnwind(&exc, stop_fn, NULL);
	ck_abort_msg("_Unwind_ForcedUnwind returned");
	return x;
}

/* Runs fn(unwind_cb, x) until the forced unwind reaches this frame: 1, or 2 if it could not. */
static __attribute__((noinline)) int catcher(fn_cb_l *fn, long x)
{
	int r = setjmp(unwind_jb);

	if (r)
		return r;
	call_via(fn, unwind_cb, x);
	ck_abort_msg("the callback returned");
	return 0;
}

START_TEST(test_forced_unwind_cleanup)
{
	const struct func *cf;
	struct ehframe_builder *b;
	struct ehframe_src src;
	struct out_fde fde;
	uint8_t *buf;
	struct copy c;
	size_t size, n_fdes;

	src = self_src();
	cf = module_find_func(self_mod, addr_of((const void *)catcher));
	ck_assert_ptr_nonnull(cf);
	catcher_start = cf->start;
	catcher_end = cf->end;

	c = copy_fn(0, (const void *)ehf_with_cleanup);
	ck_assert_int_eq(mprotect(page, PAGE_BYTES, PROT_READ | PROT_EXEC), 0);
	ck_assert(identity_map(c.res));
	copy_start = c.res->dest_addr;
	copy_end = c.res->dest_addr + c.res->size;

	/* The original: the cleanup runs as the unwind passes. */
	ehf_cleanups = 0;
	ck_assert_int_eq(catcher(ehf_with_cleanup, 11), 1);
	ck_assert_int_eq(ehf_cleanups, 11);

	/* The copy without unwind info: the unwinder cannot pass it. */
	ehf_cleanups = 0;
	copy_frames = 0;
	ck_assert_int_eq(catcher((fn_cb_l *)(uintptr_t)c.res->dest_addr, 12), 2);
	ck_assert_int_eq(ehf_cleanups, 0);

	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	ck_assert_int_eq(ehframe_add(b, &src, c.f->fde_off, c.res, NULL), 0);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	/* An LSDA, the original's; a personality through its slot (DW.ref.__gcc_personality_v0). */
	ck_assert_str_eq(fde.cie.augmentation, "zPLR");
	ck_assert_uint_eq(fde.cie.augmentation_data[0], DW_EH_PE_indirect | DW_EH_PE_absptr);
	ck_assert_uint_eq(fde.cie.augmentation_data[9], DW_EH_PE_absptr);
	ck_assert_uint_eq(fde.cie.augmentation_data[10], DW_EH_PE_absptr);
	ck_assert_uint_eq(*(const uint64_t *)(uintptr_t)get_u64(fde.cie.augmentation_data + 1),
			  addr_of((const void *)__gcc_personality_v0));
	ck_assert_uint_ne(fde.lsda, 0);

	memset(object, 0, sizeof(object));
	__register_frame_info(buf, object);
	ehf_cleanups = 0;
	copy_frames = 0;
	ck_assert_int_eq(catcher((fn_cb_l *)(uintptr_t)c.res->dest_addr, 13), 1);
	/* Twice: to find its landing pad, and from its call to _Unwind_Resume after the cleanup. */
	ck_assert_int_eq(copy_frames, 2);
	ck_assert_int_eq(ehf_cleanups, 13);
	/* And a normal return still runs it once. */
	ehf_cleanups = 0;
	ck_assert_int_eq(((fn_cb_l *)(uintptr_t)c.res->dest_addr)(expect_plus1, 3), 22);
	ck_assert_int_eq(ehf_cleanups, 3);
	ck_assert_ptr_eq(__deregister_frame_info(buf), object);

	free(buf);
	ehframe_builder_free(b);
	copier_result_free(c.res);
}
END_TEST

/* ---- refusals on real functions ---- */

/* A copy of r whose instruction i became 4 bytes longer (as if widened). */
static struct copier_result *widen_at(const struct copier_result *r, size_t i)
{
	struct copier_result *w = malloc(sizeof(*w));

	ck_assert_ptr_nonnull(w);
	*w = *r;
	w->map = malloc(r->n_map * sizeof(*w->map));
	ck_assert_ptr_nonnull(w->map);
	memcpy(w->map, r->map, r->n_map * sizeof(*w->map));
	w->relocs = NULL;
	w->n_relocs = 0;
	ck_assert_uint_lt(i, w->n_map);
	w->map[i].copy_len += 4;
	for (size_t j = i + 1; j < w->n_map; j++)
		w->map[j].copy_off += 4;
	w->size += 4;
	return w;
}

START_TEST(test_refusals_real)
{
	struct ehframe_builder *b;
	struct ehframe_src src;
	struct copy cl, pl;
	struct copier_result *w, shifted;
	enum ehframe_reason why;
	size_t before;

	src = self_src();
	cl = copy_fn(0, (const void *)ehf_with_cleanup);
	pl = copy_fn(1024, (const void *)ehf_plain);
	ck_assert_int_eq(ehframe_builder_new(&b), 0);

	/* An LSDA's call sites are offsets: a copy with another layout cannot use it. */
	w = widen_at(cl.res, 1);
	why = EHFRAME_OK;
	ck_assert_int_eq(ehframe_add(b, &src, cl.f->fde_off, w, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_LSDA_LAYOUT);
	ck_assert_str_eq(ehframe_reason_to_string(why), "lsda_layout");
	copier_result_free(w);
	/* Without an LSDA, the same change is only remapped. */
	w = widen_at(pl.res, 1);
	ck_assert_int_eq(ehframe_add(b, &src, pl.f->fde_off, w, &why), 0);
	copier_result_free(w);
	ck_assert_uint_eq(ehframe_count(b), 1);
	before = ehframe_size(b);

	/* The FDE must start at the copied function and cover it. */
	shifted = *pl.res;
	shifted.orig_addr++;
	ck_assert_int_eq(ehframe_add(b, &src, pl.f->fde_off, &shifted, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_FDE_MISMATCH);
	ck_assert_int_eq(ehframe_add(b, &src, cl.f->fde_off, pl.res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_FDE_MISMATCH);
	shifted = *pl.res;
	shifted.orig_len--;
	ck_assert_int_eq(ehframe_add(b, &src, pl.f->fde_off, &shifted, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_FDE_MISMATCH);
	/* An offset that is a CIE (0 is one in any .eh_frame), or none. */
	ck_assert_int_eq(ehframe_add(b, &src, 0, pl.res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_MALFORMED);
	ck_assert_int_eq(ehframe_add(b, &src, src.size - 2, pl.res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_MALFORMED);
	ck_assert_int_eq(ehframe_add(b, &src, FUNC_NO_FDE, pl.res, &why), -ENOTSUP);
	ck_assert_int_eq(ehframe_add(NULL, &src, pl.f->fde_off, pl.res, &why), -EINVAL);
	/* Refusals left the builder as it was. */
	ck_assert_uint_eq(ehframe_count(b), 1);
	ck_assert_uint_eq(ehframe_size(b), before);

	ehframe_builder_free(b);
	copier_result_free(cl.res);
	copier_result_free(pl.res);
}
END_TEST

/* ---- hand-made CFI ---- */

#define FK_ADDR 0x10000ULL	  /* where the hand-made .eh_frame "is" */
#define FK_FUNC 0x400000ULL	  /* the original function */
#define FK_DEST 0x7f0000001000ULL /* its copy */

/* A hand-made .eh_frame: a CIE at 0 and one FDE after it. */
struct fake {
	uint8_t b[512];
	size_t n;
};

static void fk_put(struct fake *f, const void *v, size_t n)
{
	ck_assert_uint_le(f->n + n, sizeof(f->b));
	memcpy(f->b + f->n, v, n);
	f->n += n;
}

/* Appends v in its own type's size. */
#define fk_val(f, type, v)                                                                         \
	do {                                                                                       \
		type v_ = (type)(v);                                                               \
		fk_put((f), &v_, sizeof(v_));                                                      \
	} while (0)
#define fk_u8(f, v) fk_val(f, uint8_t, v)
#define fk_u32(f, v) fk_val(f, uint32_t, v)
#define fk_u64(f, v) fk_val(f, uint64_t, v)

static void fk_len(struct fake *f, size_t start)
{
	uint32_t len = (uint32_t)(f->n - start - 4);

	memcpy(f->b + start, &len, 4);
}

/*
 * The CIE: version 1, aug, code alignment caf, data alignment -8, return
 * address register 16, augmentation data and initial instructions as given.
 */
static void fk_cie(struct fake *f, const char *aug, uint8_t caf, const uint8_t *augdata,
		   size_t n_augdata, const uint8_t *insns, size_t n_insns)
{
	f->n = 0;
	fk_u32(f, 0);
	fk_u32(f, 0);
	fk_u8(f, 1);
	fk_put(f, aug, strlen(aug) + 1);
	fk_u8(f, caf);
	fk_u8(f, 0x78); /* SLEB128 -8 */
	fk_u8(f, 16);
	if (aug[0] == 'z') {
		fk_u8(f, (uint8_t)n_augdata);
		fk_put(f, augdata, n_augdata);
	}
	fk_put(f, insns, n_insns);
	fk_len(f, 0);
}

/*
 * The FDE for [start, start + len): enc is the CIE's 'R' (DW_EH_PE_pcrel |
 * sdata4 or absptr); augdata NULL for a CIE without 'z'. Returns its offset.
 */
static uint64_t fk_fde(struct fake *f, uint8_t enc, uint64_t start, uint32_t len,
		       const uint8_t *augdata, size_t n_augdata, const uint8_t *insns,
		       size_t n_insns)
{
	size_t off = f->n;

	fk_u32(f, 0);
	fk_u32(f, (uint32_t)(f->n - 0)); /* back to the CIE at 0 */
	if (enc == (DW_EH_PE_pcrel | DW_EH_PE_sdata4)) {
		fk_u32(f, (uint32_t)(start - (FK_ADDR + f->n)));
		fk_u32(f, len);
	} else {
		ck_assert_uint_eq(enc, DW_EH_PE_absptr);
		fk_u64(f, start);
		fk_u64(f, len);
	}
	if (augdata) {
		fk_u8(f, (uint8_t)n_augdata);
		fk_put(f, augdata, n_augdata);
	}
	fk_put(f, insns, n_insns);
	fk_len(f, off);
	return off;
}

static const uint8_t std_cie_insns[] = {0x0c, 0x07, 0x08, 0x90,
					0x01}; /* def_cfa rsp+8; rip at cfa-8 */
static const uint8_t aug_pcrel[] = {DW_EH_PE_pcrel | DW_EH_PE_sdata4};
static const uint8_t aug_abs[] = {DW_EH_PE_absptr};

/*
 * Maps of a 5-byte original: push (1), je rel8 (2), push (1), ret (1). The
 * widened copy has a 6-byte jcc rel32; the tail variant has a jmp appended
 * at the end, as after a last instruction that falls through.
 */
static const struct copier_map_entry map_identity[] = {
    {0, 0, 1, 1}, {1, 1, 2, 2}, {3, 3, 1, 1}, {4, 4, 1, 1}};
static const struct copier_map_entry map_widened[] = {
    {0, 0, 1, 1}, {1, 1, 2, 6}, {3, 7, 1, 1}, {4, 8, 1, 1}};
static const struct copier_map_entry map_tail[] = {
    {0, 0, 1, 1}, {1, 1, 2, 6}, {3, 7, 1, 1}, {4, 8, 1, 1}, {5, 9, 0, 5}};
/* Instruction 1 of the copy is far away: advances of every size. */
#define MAP_FAR(d)                                                                                 \
	(const struct copier_map_entry[])                                                          \
	{                                                                                          \
		{0, 0, 1, 1}, {1, (d), 4, 4},                                                      \
	}

struct prog_case {
	const char *name;
	const struct copier_map_entry *map;
	size_t n_map;
	uint32_t orig_len, size;
	uint8_t enc; /* the FDE's pointer encoding */
	uint8_t in[40];
	size_t n_in;
	enum ehframe_reason want;
	uint8_t out[40]; /* the copy's program, when accepted */
	size_t n_out;
	const uint8_t *cie_insns; /* NULL: std_cie_insns */
	size_t n_cie_insns;
};

#define P(...) {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__})
#define IDENTITY map_identity, ARRAY_SIZE(map_identity), 5, 5
#define WIDENED map_widened, ARRAY_SIZE(map_widened), 5, 9
#define TAIL map_tail, ARRAY_SIZE(map_tail), 5, 14
#define FAR(d) MAP_FAR(d), 2, 5, (d) + 4
#define PCREL (DW_EH_PE_pcrel | DW_EH_PE_sdata4)
#define NONE {0}, 0
#define NO_CIE NULL, 0
#define U64(v)                                                                                     \
	(uint8_t)(v), (uint8_t)((v) >> 8), (uint8_t)((v) >> 16), (uint8_t)((v) >> 24),             \
	    (uint8_t)((v) >> 32), (uint8_t)((v) >> 40), (uint8_t)((v) >> 48), (uint8_t)((v) >> 56)

/* clang-format off */
static const struct prog_case prog_cases[] = {
	/* Locations: the same, moved past a widened branch, the end, the appended jmp. */
	{"identity", IDENTITY, PCREL, P(0x41, 0x0e, 0x10, 0x43, 0x0e, 0x18), EHFRAME_OK,
	 P(0x41, 0x0e, 0x10, 0x43, 0x0e, 0x18), NO_CIE},
	{"widened", WIDENED, PCREL, P(0x41, 0x0e, 0x10, 0x43, 0x0e, 0x18, 0x41, 0x0e, 0x08),
	 EHFRAME_OK, P(0x41, 0x0e, 0x10, 0x47, 0x0e, 0x18, 0x41, 0x0e, 0x08), NO_CIE},
	{"end", WIDENED, PCREL, P(0x45, 0x0e, 0x10), EHFRAME_OK, P(0x49, 0x0e, 0x10), NO_CIE},
	{"end_tail_jmp", TAIL, PCREL, P(0x44, 0x0e, 0x10, 0x41, 0x0e, 0x08), EHFRAME_OK,
	 P(0x48, 0x0e, 0x10, 0x41, 0x0e, 0x08), NO_CIE},
	{"past_end", WIDENED, PCREL, P(0x46, 0x0e, 0x10), EHFRAME_MALFORMED, NONE, NO_CIE},
	{"mid_insn", WIDENED, PCREL, P(0x42, 0x0e, 0x10), EHFRAME_CFI_MID_INSN, NONE, NO_CIE},
	{"mid_insn_loc1", WIDENED, PCREL, P(0x02, 0x02, 0x0e, 0x10), EHFRAME_CFI_MID_INSN, NONE, NO_CIE},
	/* Each advance in the smallest form that holds it, whatever the original used. */
	{"loc1_in", WIDENED, PCREL, P(0x02, 0x03, 0x0e, 0x10), EHFRAME_OK, P(0x47, 0x0e, 0x10), NO_CIE},
	{"loc2_in", WIDENED, PCREL, P(0x03, 0x03, 0x00, 0x0e, 0x10), EHFRAME_OK, P(0x47, 0x0e, 0x10), NO_CIE},
	{"loc4_in", WIDENED, PCREL, P(0x04, 0x03, 0x00, 0x00, 0x00, 0x0e, 0x10), EHFRAME_OK,
	 P(0x47, 0x0e, 0x10), NO_CIE},
	{"far_63", FAR(63), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK, P(0x7f, 0x0e, 0x10), NO_CIE},
	{"far_64", FAR(64), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK, P(0x02, 0x40, 0x0e, 0x10), NO_CIE},
	{"far_255", FAR(255), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK, P(0x02, 0xff, 0x0e, 0x10), NO_CIE},
	{"far_256", FAR(256), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK,
	 P(0x03, 0x00, 0x01, 0x0e, 0x10), NO_CIE},
	{"far_65535", FAR(65535), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK,
	 P(0x03, 0xff, 0xff, 0x0e, 0x10), NO_CIE},
	{"far_65536", FAR(65536), PCREL, P(0x41, 0x0e, 0x10), EHFRAME_OK,
	 P(0x04, 0x00, 0x00, 0x01, 0x00, 0x0e, 0x10), NO_CIE},
	/* set_loc: in the FDE's encoding in, absolute out. */
	{"set_loc", WIDENED, DW_EH_PE_absptr, P(0x01, U64(FK_FUNC + 3), 0x0e, 0x10, 0x41, 0x0e, 0x08),
	 EHFRAME_OK, P(0x01, U64(FK_DEST + 7), 0x0e, 0x10, 0x41, 0x0e, 0x08), NO_CIE},
	{"set_loc_mid_insn", WIDENED, DW_EH_PE_absptr, P(0x01, U64(FK_FUNC + 2)),
	 EHFRAME_CFI_MID_INSN, NONE, NO_CIE},
	{"set_loc_outside", WIDENED, DW_EH_PE_absptr, P(0x01, U64(FK_FUNC + 6)), EHFRAME_MALFORMED,
	 NONE, NO_CIE},
	/* Every other instruction is kept byte for byte. */
	{"kept", WIDENED, PCREL,
	 P(0x00, 0x05, 0x03, 0x02, 0x06, 0x03, 0x07, 0x03, 0x08, 0x03, 0x09, 0x03, 0x05, 0x0a,
	   0x0b, 0x0c, 0x06, 0x10, 0x0d, 0x06, 0x0e, 0x20, 0x11, 0x03, 0x7e, 0x12, 0x07, 0x10,
	   0x13, 0x7e, 0x14, 0x03, 0x02, 0x15, 0x03, 0x7e, 0x2e, 0x10),
	 EHFRAME_OK,
	 P(0x00, 0x05, 0x03, 0x02, 0x06, 0x03, 0x07, 0x03, 0x08, 0x03, 0x09, 0x03, 0x05, 0x0a,
	   0x0b, 0x0c, 0x06, 0x10, 0x0d, 0x06, 0x0e, 0x20, 0x11, 0x03, 0x7e, 0x12, 0x07, 0x10,
	   0x13, 0x7e, 0x14, 0x03, 0x02, 0x15, 0x03, 0x7e, 0x2e, 0x10), NO_CIE},
	{"kept_primary", WIDENED, PCREL, P(0x83, 0x02, 0xc3, 0x2f, 0x03, 0x02, 0x90, 0x01),
	 EHFRAME_OK, P(0x83, 0x02, 0xc3, 0x2f, 0x03, 0x02, 0x90, 0x01), NO_CIE},
	/* Expressions: kept when they do not read rip. */
	{"expr_rsp", WIDENED, PCREL,
	 P(0x0f, 0x03, 0x77, 0x08, 0x06, 0x10, 0x03, 0x02, 0x77, 0x08, 0x16, 0x10, 0x02, 0x77,
	   0x08, 0x0f, 0x07, 0x92, 0x07, 0x00, 0x30, 0x2f, 0x00, 0x00),
	 EHFRAME_OK,
	 P(0x0f, 0x03, 0x77, 0x08, 0x06, 0x10, 0x03, 0x02, 0x77, 0x08, 0x16, 0x10, 0x02, 0x77,
	   0x08, 0x0f, 0x07, 0x92, 0x07, 0x00, 0x30, 0x2f, 0x00, 0x00), NO_CIE},
	{"expr_breg16", WIDENED, PCREL, P(0x0f, 0x02, 0x80, 0x00), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"expr_reg16", WIDENED, PCREL, P(0x10, 0x03, 0x01, 0x60), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"expr_regx16", WIDENED, PCREL, P(0x16, 0x03, 0x02, 0x90, 0x10), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"expr_bregx16", WIDENED, PCREL, P(0x0f, 0x03, 0x92, 0x10, 0x00), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"def_cfa_rip", WIDENED, PCREL, P(0x0c, 0x10, 0x08), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"def_cfa_sf_rip", WIDENED, PCREL, P(0x12, 0x10, 0x01), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"def_cfa_register_rip", WIDENED, PCREL, P(0x0d, 0x10), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	{"register_in_rip", WIDENED, PCREL, P(0x09, 0x03, 0x10), EHFRAME_CFI_USES_IP, NONE, NO_CIE},
	/* A branch into an operand (there, breg16) is refused, not followed. */
	{"expr_bra_into_operand", WIDENED, PCREL,
	 P(0x0f, 0x07, 0x30, 0x28, 0x01, 0x00, 0x0a, 0x80, 0x00), EHFRAME_MALFORMED, NONE, NO_CIE},
	{"expr_unknown_op", WIDENED, PCREL, P(0x0f, 0x01, 0xe0), EHFRAME_UNSUPPORTED_CFI, NONE, NO_CIE},
	{"expr_truncated", WIDENED, PCREL, P(0x0f, 0x02, 0x77), EHFRAME_MALFORMED, NONE, NO_CIE},
	{"unknown_opcode", WIDENED, PCREL, P(0x2d), EHFRAME_UNSUPPORTED_CFI, NONE, NO_CIE},
	{"unknown_opcode_17", WIDENED, PCREL, P(0x17), EHFRAME_UNSUPPORTED_CFI, NONE, NO_CIE},
	{"truncated_operand", WIDENED, PCREL, P(0x0e), EHFRAME_MALFORMED, NONE, NO_CIE},
	{"truncated_uleb", WIDENED, PCREL, P(0x0e, 0x80), EHFRAME_MALFORMED, NONE, NO_CIE},
	/* The CIE's initial instructions: no location, no rip. */
	{"cie_advance", WIDENED, PCREL, P(0x00), EHFRAME_UNSUPPORTED_CFI, NONE,
	 (const uint8_t[]){0x0c, 0x07, 0x08, 0x41}, 4},
	{"cie_rip", WIDENED, PCREL, P(0x00), EHFRAME_CFI_USES_IP, NONE,
	 (const uint8_t[]){0x0c, 0x10, 0x08}, 3},
};
/* clang-format on */

static struct copier_result fake_result(const struct prog_case *pc)
{
	return (struct copier_result){
	    .orig_addr = FK_FUNC,
	    .orig_len = pc->orig_len,
	    .dest_addr = FK_DEST,
	    .size = pc->size,
	    .n_map = pc->n_map,
	    .map = (struct copier_map_entry *)pc->map,
	};
}

/* The program of the only FDE in the output, after libdw's and our checks; padding is nops. */
static void check_program(const uint8_t *buf, size_t size, const uint8_t *want, size_t n_want,
			  uint64_t dest, uint64_t range)
{
	struct out_fde fde;
	size_t n_fdes;

	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	ck_assert_uint_eq(n_fdes, 1);
	ck_assert_uint_eq(fde.pc_begin, dest);
	ck_assert_uint_eq(fde.pc_range, range);
	ck_assert_uint_ge((size_t)(fde.insns_end - fde.insns), n_want);
	ck_assert_mem_eq(fde.insns, want, n_want);
	for (const uint8_t *p = fde.insns + n_want; p < fde.insns_end; p++)
		ck_assert_uint_eq(*p, DW_CFA_nop);
	ck_assert_uint_lt((size_t)(fde.insns_end - fde.insns) - n_want, 8);
}

START_TEST(test_program)
{
	const struct prog_case *pc = &prog_cases[_i];
	struct copier_result res = fake_result(pc);
	struct ehframe_src src;
	struct ehframe_builder *b;
	enum ehframe_reason why = EHFRAME_OK;
	struct fake f;
	uint64_t fde_off;
	int r;

	fk_cie(&f, "zR", 1, pc->enc == PCREL ? aug_pcrel : aug_abs, 1,
	       pc->cie_insns ? pc->cie_insns : std_cie_insns,
	       pc->cie_insns ? pc->n_cie_insns : sizeof(std_cie_insns));
	fde_off =
	    fk_fde(&f, pc->enc, FK_FUNC, pc->orig_len, (const uint8_t[]){0}, 0, pc->in, pc->n_in);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};

	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	r = ehframe_add(b, &src, fde_off, &res, &why);
	ck_assert_msg(why == pc->want, "%s: %s, not %s", pc->name, ehframe_reason_to_string(why),
		      ehframe_reason_to_string(pc->want));
	if (pc->want == EHFRAME_OK) {
		uint8_t *buf;
		size_t size;

		ck_assert_int_eq(r, 0);
		buf = emit(b, &size);
		check_program(buf, size, pc->out, pc->n_out, FK_DEST, pc->size);
		free(buf);
	} else {
		ck_assert_int_eq(r, -ENOTSUP);
		ck_assert_uint_eq(ehframe_count(b), 0);
		ck_assert_uint_eq(ehframe_size(b), 4);
	}
	ehframe_builder_free(b);
}
END_TEST

/* A code alignment factor of 4: advances are in units of 4, and must stay whole units. */
START_TEST(test_code_alignment)
{
	static const struct copier_map_entry map4[] = {{0, 0, 4, 4}, {4, 8, 4, 4}, {8, 12, 4, 4}};
	static const struct copier_map_entry map_odd[] = {{0, 0, 4, 6}, {4, 6, 4, 4}};
	struct copier_result res = {.orig_addr = FK_FUNC,
				    .orig_len = 12,
				    .dest_addr = FK_DEST,
				    .size = 16,
				    .n_map = ARRAY_SIZE(map4),
				    .map = (struct copier_map_entry *)map4};
	static const uint8_t in[] = {0x41, 0x0e, 0x10, 0x41, 0x0e, 0x18};
	static const uint8_t out[] = {0x42, 0x0e, 0x10, 0x41, 0x0e, 0x18};
	struct ehframe_builder *b;
	struct ehframe_src src;
	enum ehframe_reason why;
	struct out_fde fde;
	struct fake f;
	uint64_t fde_off;
	uint8_t *buf;
	size_t size, n_fdes;

	fk_cie(&f, "zR", 4, aug_pcrel, 1, std_cie_insns, sizeof(std_cie_insns));
	fde_off = fk_fde(&f, PCREL, FK_FUNC, 12, (const uint8_t[]){0}, 0, in, sizeof(in));
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), 0);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	ck_assert_uint_eq(fde.cie.code_alignment_factor, 4);
	ck_assert_mem_eq(fde.insns, out, sizeof(out));
	free(buf);

	/* 6 bytes are not a whole number of units of 4. */
	fk_cie(&f, "zR", 4, aug_pcrel, 1, std_cie_insns, sizeof(std_cie_insns));
	fde_off = fk_fde(&f, PCREL, FK_FUNC, 8, (const uint8_t[]){0}, 0, in, 3);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	res.orig_len = 8;
	res.size = 10;
	res.n_map = ARRAY_SIZE(map_odd);
	res.map = (struct copier_map_entry *)map_odd;
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_UNSUPPORTED_CFI);
	ehframe_builder_free(b);
}
END_TEST

/*
 * The augmentation: 'P' (indirect, kept as such), 'L' and 'S' carried over,
 * pcrel pointers made absolute; letters and encodings not understood refused.
 */
START_TEST(test_augmentation)
{
	struct copier_result res = {.orig_addr = FK_FUNC,
				    .orig_len = 5,
				    .dest_addr = FK_DEST,
				    .size = 5,
				    .n_map = ARRAY_SIZE(map_identity),
				    .map = (struct copier_map_entry *)map_identity};
	const uint64_t slot = 0x600000, lsda = 0x500000;
	uint8_t cie_aug[1 + 4 + 1 + 1], fde_aug[4];
	struct ehframe_builder *b;
	struct ehframe_src src;
	enum ehframe_reason why;
	struct out_fde fde;
	struct fake f;
	uint64_t fde_off, aug_addr;
	uint8_t *buf;
	size_t size, n_fdes;
	int32_t rel;

	/* "zPLRS" with P = indirect|pcrel|sdata4, L = pcrel|sdata4, R = pcrel|sdata4. */
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	/* The CIE's augmentation data starts after length, id, version, "zPLRS\0", 1, -8, 16, size.
	 */
	aug_addr = FK_ADDR + 4 + 4 + 1 + 6 + 1 + 1 + 1 + 1;
	cie_aug[0] = DW_EH_PE_indirect | PCREL;
	rel = (int32_t)(slot - (aug_addr + 1));
	memcpy(cie_aug + 1, &rel, 4);
	cie_aug[5] = PCREL;
	cie_aug[6] = PCREL;
	fk_cie(&f, "zPLRS", 1, cie_aug, sizeof(cie_aug), std_cie_insns, sizeof(std_cie_insns));
	/* The FDE's LSDA field follows length, CIE pointer, pc_begin, pc_range and its size. */
	rel = (int32_t)(lsda - (FK_ADDR + f.n + 4 + 4 + 4 + 4 + 1));
	memcpy(fde_aug, &rel, 4);
	fde_off =
	    fk_fde(&f, PCREL, FK_FUNC, 5, fde_aug, sizeof(fde_aug), (const uint8_t[]){0x41}, 1);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), 0);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	ck_assert_str_eq(fde.cie.augmentation, "zPLRS");
	ck_assert_uint_eq(fde.cie.augmentation_data_size, 1 + 8 + 1 + 1);
	ck_assert_uint_eq(fde.cie.augmentation_data[0], DW_EH_PE_indirect);
	ck_assert_uint_eq(get_u64(fde.cie.augmentation_data + 1), slot);
	ck_assert_uint_eq(fde.cie.augmentation_data[9], DW_EH_PE_absptr);
	ck_assert_uint_eq(fde.cie.augmentation_data[10], DW_EH_PE_absptr);
	ck_assert_uint_eq(fde.lsda, lsda);
	ck_assert_uint_eq(fde.insns[0], 0x41);
	ck_assert_mem_eq(fde.cie.initial_instructions, std_cie_insns, sizeof(std_cie_insns));
	free(buf);

	/* A null LSDA (raw 0) stays null, and so does not stop a layout change. */
	memset(fde_aug, 0, sizeof(fde_aug));
	fde_off =
	    fk_fde(&f, PCREL, FK_FUNC, 5, fde_aug, sizeof(fde_aug), (const uint8_t[]){0x41}, 1);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	res.size = 9;
	res.map = (struct copier_map_entry *)map_widened;
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), 0);
	/* The same CIE: no second one. */
	buf = emit(b, &size);
	{
		struct out_fde two[2];

		ck_assert_uint_eq(parse_output(buf, size, two, 2, &n_fdes), 1);
		ck_assert_uint_eq(n_fdes, 2);
		ck_assert_uint_eq(two[1].lsda, 0);
	}
	free(buf);
	ehframe_builder_free(b);

	/* Not understood: an unknown letter, a datarel pointer. */
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	fk_cie(&f, "zRX", 1, aug_pcrel, 1, std_cie_insns, sizeof(std_cie_insns));
	fde_off = fk_fde(&f, PCREL, FK_FUNC, 5, (const uint8_t[]){0}, 0, (const uint8_t[]){0}, 1);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_UNSUPPORTED_AUG);
	fk_cie(&f, "zR", 1, (const uint8_t[]){DW_EH_PE_datarel | DW_EH_PE_sdata4}, 1, std_cie_insns,
	       sizeof(std_cie_insns));
	fde_off = fk_fde(&f, PCREL, FK_FUNC, 5, (const uint8_t[]){0}, 0, (const uint8_t[]){0}, 1);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), -ENOTSUP);
	ck_assert_int_eq(why, EHFRAME_UNSUPPORTED_AUG);

	/* No augmentation at all: absptr FDEs, accepted, given "zR". */
	fk_cie(&f, "", 1, NULL, 0, std_cie_insns, sizeof(std_cie_insns));
	fde_off = fk_fde(&f, DW_EH_PE_absptr, FK_FUNC, 5, NULL, 0, (const uint8_t[]){0x41}, 1);
	src = (struct ehframe_src){f.b, f.n, FK_ADDR};
	ck_assert_int_eq(ehframe_add(b, &src, fde_off, &res, &why), 0);
	buf = emit(b, &size);
	ck_assert_uint_eq(parse_output(buf, size, &fde, 1, &n_fdes), 1);
	ck_assert_str_eq(fde.cie.augmentation, "zR");
	ck_assert_uint_eq(fde.pc_begin, FK_DEST);
	free(buf);
	ehframe_builder_free(b);
}
END_TEST

/* A failed allocation leaves the builder as it was, in the new-CIE path and the other. */
START_TEST(test_enomem)
{
	struct copier_result res = {.orig_addr = FK_FUNC,
				    .orig_len = 5,
				    .dest_addr = FK_DEST,
				    .size = 9,
				    .n_map = ARRAY_SIZE(map_widened),
				    .map = (struct copier_map_entry *)map_widened};
	static const uint8_t in[] = {0x41, 0x0e, 0x10, 0x43, 0x0e, 0x18};
	struct ehframe_builder *b;
	struct ehframe_src src[2];
	struct fake f[2];
	uint64_t fde_off[2];
	uint8_t *before, *after;
	size_t size, size2, failures = 0;
	int r;

	/* Two sections at two addresses: two original CIEs (absolute pointers: any address). */
	for (int i = 0; i < 2; i++) {
		fk_cie(&f[i], "zR", 1, aug_abs, 1, std_cie_insns, sizeof(std_cie_insns));
		fde_off[i] = fk_fde(&f[i], DW_EH_PE_absptr, FK_FUNC, 5, (const uint8_t[]){0}, 0, in,
				    sizeof(in));
		src[i] = (struct ehframe_src){f[i].b, f[i].n, FK_ADDR + 0x1000 * (uint64_t)i};
	}
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	ck_assert_int_eq(ehframe_add(b, &src[0], fde_off[0], &res, NULL), 0);
	before = emit(b, &size);
	for (int i = 0; i < 2; i++) {
		for (long k = 0;; k++) {
			reallocs_left = k;
			r = ehframe_add(b, &src[i], fde_off[i], &res, NULL);
			reallocs_left = -1;
			if (r == 0)
				break;
			ck_assert_int_eq(r, -ENOMEM);
			failures++;
			ck_assert_uint_eq(ehframe_count(b), (size_t)i + 1);
			after = emit(b, &size2);
			ck_assert_uint_eq(size2, size);
			ck_assert_mem_eq(after, before, size);
			free(after);
		}
		ck_assert_uint_eq(ehframe_count(b), (size_t)i + 2);
		free(before);
		before = emit(b, &size);
	}
	ck_assert_uint_gt(failures, 2);
	{
		struct out_fde fdes[3];
		size_t n_fdes;

		ck_assert_uint_eq(parse_output(before, size, fdes, 3, &n_fdes), 2);
		ck_assert_uint_eq(n_fdes, 3);
	}
	free(before);
	ehframe_builder_free(b);
}
END_TEST

START_TEST(test_reason_names)
{
	static const char *const names[] = {
	    "ok",	    "malformed",    "unsupported_aug", "unsupported_cfi",
	    "fde_mismatch", "cfi_mid_insn", "cfi_uses_ip",     "lsda_layout",
	};
	struct ehframe_builder *b;
	uint8_t out[4];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		ck_assert_str_eq(ehframe_reason_to_string((enum ehframe_reason)i), names[i]);
	/* An empty section is the terminator alone. */
	ck_assert_int_eq(ehframe_builder_new(&b), 0);
	ck_assert_uint_eq(ehframe_size(b), 4);
	memset(out, 0xff, sizeof(out));
	ck_assert_int_eq(ehframe_emit(b, out, sizeof(out)), 0);
	ck_assert_mem_eq(out, "\0\0\0\0", 4);
	ehframe_builder_free(b);
	ehframe_builder_free(NULL);
}
END_TEST

static Suite *ehframe_suite(void)
{
	Suite *s = suite_create("ehframe");
	TCase *exec = tcase_create("exec");
	TCase *core = tcase_create("core");

	tcase_add_checked_fixture(exec, exec_setup, exec_teardown);
	tcase_add_loop_test(exec, test_backtrace_through_copy, 0, ARRAY_SIZE(trace_cases));
	tcase_add_test(exec, test_one_section);
	tcase_add_test(exec, test_forced_unwind_cleanup);
	tcase_add_test(exec, test_refusals_real);
	suite_add_tcase(s, exec);

	tcase_add_loop_test(core, test_program, 0, ARRAY_SIZE(prog_cases));
	tcase_add_test(core, test_code_alignment);
	tcase_add_test(core, test_augmentation);
	tcase_add_test(core, test_enomem);
	tcase_add_test(core, test_reason_names);
	suite_add_tcase(s, core);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ehframe_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
