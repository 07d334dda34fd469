/*
 * Unit tests for injector/copier.c.
 *
 * Copies are executed. The test maps pages near its own image (64 MiB away)
 * and far from it (about 1.5 GiB away, still within rel32 reach of what the
 * code refers to), copies hand-written assembly (copier_asm.S: one function
 * per relative form) and gcc's output at -O0, -O2, -O3 and -O2
 * -fcf-protection=full (copier_funcs.c) there, protects the pages r-x and
 * calls original and copy with the same inputs: every result must match.
 * Each copy is then moved with copier_relocate(), its old pages unmapped, and
 * run again.
 *
 * Every copy is also checked structurally, independently of the copier's own
 * self-check: the map tiles both functions, every record's field encodes its
 * target, Zydis decodes the same mnemonic on both sides of every map entry,
 * and every byte that no record covers is the original's.
 *
 * Refusals are checked on byte arrays at numeric addresses, without
 * executing: only reach needs real addresses, and reach is arithmetic.
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <Zydis/Zydis.h>

#include "copier.h"
#include "copier_funcs.h"
#include "util.h"

#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

#define NEAR_DIST (64 * MiB)
#define FAR_DIST (1536 * MiB)
#define MOVE_DIST (768 * MiB)

CF_DECLARE(_O0)
CF_DECLARE(_O2)
CF_DECLARE(_O3)
CF_DECLARE(_CET)

/* copier_asm.S: code as byte arrays, [NAME, NAME_end) */
#define ASM_FUNC(name) extern const uint8_t name[], name##_end[];
ASM_FUNC(cpa_helper)
ASM_FUNC(cpa_helper_alt)
ASM_FUNC(cpa_jmp8)
ASM_FUNC(cpa_jmp32)
ASM_FUNC(cpa_jcc8)
ASM_FUNC(cpa_jcc32)
ASM_FUNC(cpa_call)
ASM_FUNC(cpa_rec)
ASM_FUNC(cpa_loops)
ASM_FUNC(cpa_lx)
ASM_FUNC(cpa_jx)
ASM_FUNC(cpa_widen)
ASM_FUNC(cpa_rip_load)
ASM_FUNC(cpa_rip_store)
ASM_FUNC(cpa_rip_lea)
ASM_FUNC(cpa_rip_cmp)
ASM_FUNC(cpa_rip_sse)
ASM_FUNC(cpa_rip_avx)
ASM_FUNC(cpa_rip_push)
ASM_FUNC(cpa_rip_call)
ASM_FUNC(cpa_rip_jmp)
ASM_FUNC(cpa_fall)
ASM_FUNC(cpa_endbr)
extern long cpa_var64, cpa_store, cpa_fnptr;
extern int cpa_var32, cpa_store32;
extern unsigned char cpa_var8;

/* ---- results of a run: original and copy must produce the same digest ---- */

struct digest {
	unsigned n;
	uint64_t v[1024];
};

static void dg(struct digest *d, uint64_t x)
{
	ck_assert_uint_lt(d->n, ARRAY_SIZE(d->v));
	d->v[d->n++] = x;
}

static void dgd(struct digest *d, double x)
{
	uint64_t u;

	memcpy(&u, &x, sizeof(u));
	dg(d, u);
}

struct fcase;
typedef void runner_fn(uintptr_t fn, const struct fcase *c, struct digest *d);

struct fcase {
	const char *name;
	const void *fn;
	const void *end; /* NULL: the length comes from the symbol table */
	runner_fn *run;
	void *aux;
	uint32_t need_flags; /* COPIER_F_* every copy must have */
	bool avx512;
};

typedef long fn_l_l(long);
typedef long fn_l_ll(long, long);
typedef double fn_d_d(double);

static const long small_inputs[] = {0, 1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 31, 100};
/* clang-format off */
static const long any_inputs[] = {LONG_MIN + 1, -1000, -100, -12, -5, -2, -1, 0, 1, 2, 3,
				  7, 10, 11, 12, 100, 101, 1000, 123456789, LONG_MAX};
/* clang-format on */

static void run_small(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(small_inputs); i++)
		dg(d, ((fn_l_l *)fn)(small_inputs[i]));
}

static void run_any(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(any_inputs); i++)
		dg(d, ((fn_l_l *)fn)(any_inputs[i]));
}

static void run_widen(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	run_small(fn, c, d);
	dg(d, ((fn_l_l *)fn)(-1));
}

static void run_pairs(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	/* clang-format off */
	static const long v[] = {LONG_MIN, LONG_MIN + 1, -256, -3, -1, 0, 1, 2, 3, 127, 255, 256,
				 LONG_MAX - 1, LONG_MAX};
	/* clang-format on */

	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		for (size_t j = 0; j < ARRAY_SIZE(v); j++)
			dg(d, ((fn_l_ll *)fn)(v[i], v[j]));
}

static void run_loops(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	static const long arrays[][8] = {
	    {0, 0, 0, 5, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}, {5, 1, 2, 3, 4, 5, 6, 7},
	    {1, 2, 3, 4, 6, 7, 8, 5}, {0, 5, 0, 5, 0, 5, 0, 5},
	};

	(void)c;
	for (long n = 1; n <= 9; n++)
		for (size_t a = 0; a < ARRAY_SIZE(arrays); a++)
			dg(d, ((long (*)(long, const long *))fn)(n, arrays[a]));
}

static void run_lx(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (long n = 0; n <= 9; n++)
		dg(d, ((fn_l_l *)fn)(n));
}

static void run_endbr(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (long n = -1; n <= 6; n++)
		dg(d, ((fn_l_ll *)fn)(n, 10 * n));
}

static void run_store(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(any_inputs); i++) {
		cpa_store = 0;
		cpa_store32 = 0;
		dg(d, ((fn_l_l *)fn)(any_inputs[i]));
		dg(d, cpa_store);
		dg(d, (uint32_t)cpa_store32);
	}
}

static void run_cmp(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	static const int v32[] = {0x12345678, 0x12345679, 0};
	static const unsigned char v8[] = {5, 4, 7, 0};
	const long v64 = 0x1122334455667788L;
	const long x[] = {v64 - 1, v64, v64 + 1, 0, -1, LONG_MAX};

	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(v32); i++)
		for (size_t j = 0; j < ARRAY_SIZE(v8); j++)
			for (size_t k = 0; k < ARRAY_SIZE(x); k++) {
				cpa_var32 = v32[i];
				cpa_var8 = v8[j];
				dg(d, ((fn_l_l *)fn)(x[k]));
			}
	cpa_var32 = 0x12345678;
	cpa_var8 = 5;
}

static const double double_inputs[] = {0.0, 1.5, -2.25, 0.3, 1e10, -7.125, 3.0};

static void run_double(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(double_inputs); i++)
		dgd(d, ((fn_d_d *)fn)(double_inputs[i]));
}

static void run_fib(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (long n = 0; n <= 22; n++)
		dg(d, ((fn_l_l *)fn)(n));
}

static void run_switch(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	int ops[64];
	unsigned seed = 12345;

	(void)c;
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
			seed = seed * 1103515245u + 12345u;
			ops[i] = (int)((seed >> 16) % 12) - 1; /* -1..10: cases and default */
		}
		dg(d, ((long (*)(const int *, int, long))fn)(ops, round * 3, round - 7));
	}
}

static const char *const strings[] = {"",
				      "a",
				      "hello",
				      "hello world",
				      "xyzzy",
				      "0123456789abcdef",
				      "The quick brown fox jumps over the lazy dog"};

static void run_strlen(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		dg(d, ((size_t(*)(const char *))fn)(strings[i]));
}

static uint64_t hash_bytes(const void *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
	return h;
}

static void run_reverse(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	char buf[128];

	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++) {
		snprintf(buf, sizeof(buf), "%s", strings[i]);
		((void (*)(char *))fn)(buf);
		dg(d, hash_bytes(buf, strlen(buf)));
	}
}

static void run_hash(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		dg(d, ((unsigned (*)(const char *))fn)(strings[i]));
}

static void run_libc(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	char buf[64];

	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		for (size_t j = 0; j < ARRAY_SIZE(strings); j += 2) {
			memset(buf, 0, sizeof(buf));
			dg(d, ((int (*)(const char *, const char *, char *, size_t))fn)(
				  strings[i], strings[j], buf, sizeof(buf)));
			dg(d, hash_bytes(buf, sizeof(buf)));
		}
}

static void run_norm(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	static const double v[] = {3.0, -4.0, 12.0, 0.5, -0.25, 1e3, 7.0, -2.0};

	(void)c;
	for (int n = 1; n <= (int)ARRAY_SIZE(v); n++)
		dgd(d, ((double (*)(const double *, int))fn)(v, n));
}

static void run_bump(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	long *counter = c->aux;

	*counter = 0;
	for (size_t i = 0; i < ARRAY_SIZE(any_inputs); i++) {
		dg(d, ((fn_l_l *)fn)(any_inputs[i] / 4));
		dg(d, *counter);
	}
}

static void run_goto(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	static const unsigned char progs[][12] = {
	    {3},
	    {0, 1, 2, 3},
	    {1, 1, 0, 0, 2, 1, 0, 3},
	    {2, 0, 0, 0, 1, 2, 1, 1, 0, 2, 3},
	};

	(void)c;
	for (size_t i = 0; i < ARRAY_SIZE(progs); i++)
		for (long acc = -2; acc <= 2; acc++)
			dg(d, ((long (*)(const unsigned char *, long))fn)(progs[i], acc));
}

static void run_sort(uintptr_t fn, const struct fcase *c, struct digest *d)
{
	long v[16];
	unsigned seed = 777;

	(void)c;
	for (size_t n = 0; n <= ARRAY_SIZE(v); n += 3) {
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			v[i] = (long)(seed >> 8) - 50000;
		}
		dg(d, ((long (*)(long *, size_t))fn)(v, n));
		dg(d, hash_bytes(v, n * sizeof(*v)));
	}
}

#define F_IJ COPIER_F_INDIRECT_JUMP
#define F_JT COPIER_F_JUMP_TABLE

#define ASM_CASE(name, runner, flags)                                                              \
	{                                                                                          \
#name, name, name##_end, runner, NULL, flags, false                                \
	}

/* Jump tables: gcc builds one for the switch at every level (checked below). */
/* clang-format off */
#define CF_CASES(S)                                                                                \
	{"cf_fib" #S, cf_fib##S, NULL, run_fib, NULL, 0, false},                                   \
	{"cf_switch" #S, cf_switch##S, NULL, run_switch, NULL, F_IJ | F_JT, false},                \
	{"cf_strlen" #S, cf_strlen##S, NULL, run_strlen, NULL, 0, false},                          \
	{"cf_reverse" #S, cf_reverse##S, NULL, run_reverse, NULL, 0, false},                       \
	{"cf_hash" #S, cf_hash##S, NULL, run_hash, NULL, 0, false},                                \
	{"cf_libc" #S, cf_libc##S, NULL, run_libc, NULL, 0, false},                                \
	{"cf_poly" #S, cf_poly##S, NULL, run_double, NULL, 0, false},                              \
	{"cf_norm" #S, cf_norm##S, NULL, run_norm, NULL, 0, false},                                \
	{"cf_callee" #S, cf_callee##S, NULL, run_any, NULL, 0, false},                             \
	{"cf_caller" #S, cf_caller##S, NULL, run_any, NULL, 0, false},                             \
	{"cf_tail" #S, cf_tail##S, NULL, run_any, NULL, 0, false},                                 \
	{"cf_bump" #S, cf_bump##S, NULL, run_bump, &cf_counter##S, 0, false},                      \
	{"cf_goto" #S, cf_goto##S, NULL, run_goto, NULL, F_IJ, false},                             \
	{"cf_cold" #S, cf_cold##S, NULL, run_any, NULL, 0, false},                                 \
	{"cf_sort" #S, cf_sort##S, NULL, run_sort, NULL, 0, false}
/* clang-format on */

static const struct fcase cases[] = {
    ASM_CASE(cpa_jmp8, run_small, 0),
    ASM_CASE(cpa_jmp32, run_small, 0),
    ASM_CASE(cpa_jcc8, run_pairs, 0),
    ASM_CASE(cpa_jcc32, run_pairs, 0),
    ASM_CASE(cpa_call, run_any, 0),
    ASM_CASE(cpa_rec, run_small, 0),
    ASM_CASE(cpa_loops, run_loops, 0),
    ASM_CASE(cpa_lx, run_lx, COPIER_F_WIDENED),
    ASM_CASE(cpa_jx, run_any, COPIER_F_WIDENED),
    ASM_CASE(cpa_widen, run_widen, COPIER_F_WIDENED),
    ASM_CASE(cpa_rip_load, run_any, 0),
    ASM_CASE(cpa_rip_store, run_store, 0),
    ASM_CASE(cpa_rip_lea, run_any, 0),
    ASM_CASE(cpa_rip_cmp, run_cmp, 0),
    ASM_CASE(cpa_rip_sse, run_double, 0),
    {"cpa_rip_avx", cpa_rip_avx, cpa_rip_avx_end, run_double, NULL, 0, true},
    ASM_CASE(cpa_rip_push, run_any, 0),
    ASM_CASE(cpa_rip_call, run_any, COPIER_F_INDIRECT_CALL),
    ASM_CASE(cpa_rip_jmp, run_any, 0),
    ASM_CASE(cpa_fall, run_any, COPIER_F_TAIL_JMP),
    ASM_CASE(cpa_endbr, run_endbr, 0),
    CF_CASES(_O0),
    CF_CASES(_O2),
    CF_CASES(_O3),
    CF_CASES(_CET),
};

/* ---- helpers ---- */

/* Length of a function: its end symbol, or its ELF symbol's size (the test exports its symbols). */
static size_t fcase_len(const struct fcase *c)
{
	const ElfW(Sym) *sym = NULL;
	Dl_info info;

	if (c->end)
		return (const uint8_t *)c->end - (const uint8_t *)c->fn;
	ck_assert_msg(dladdr1(c->fn, &info, (void **)&sym, RTLD_DL_SYMENT), "%s: no symbol",
		      c->name);
	ck_assert_msg(sym && info.dli_saddr == c->fn, "%s: no symbol of its own", c->name);
	ck_assert_uint_gt(sym->st_size, 0);
	return sym->st_size;
}

static uint8_t *map_at(uint64_t addr, size_t size)
{
	void *p = mmap((void *)addr, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (p != (void *)addr) { /* a kernel that ignores MAP_FIXED_NOREPLACE */
		munmap(p, size);
		return NULL;
	}
	return p;
}

/* Fresh read+write pages whose start is dist to dist + 512 MiB away from anchor, up or down. */
static uint8_t *map_away(uint64_t anchor, uint64_t dist, size_t size)
{
	size = ALIGN_UP(size, PAGE_SIZE_4K);
	for (uint64_t k = 0; k < 64; k++) {
		uint64_t d = dist + k * 8 * MiB;
		uint8_t *p = map_at(ALIGN_UP(anchor + d, PAGE_SIZE_4K), size);

		if (p)
			return p;
		if (anchor > d + size) {
			p = map_at(ALIGN_DOWN(anchor - d - size, PAGE_SIZE_4K), size);
			if (p)
				return p;
		}
	}
	ck_abort_msg("no free pages %" PRIu64 " MiB from %#" PRIx64, dist / MiB, anchor);
	return NULL;
}

static void make_exec(void *p, size_t size)
{
	ck_assert_int_eq(mprotect(p, ALIGN_UP(size, PAGE_SIZE_4K), PROT_READ | PROT_EXEC), 0);
}

static size_t cap_for(size_t len)
{
	/* An expanded loop is the worst growth: 2 bytes become 9. */
	return ALIGN_UP(len * 5 + 64, PAGE_SIZE_4K);
}

static ZydisMnemonic mnemonic_at(const uint8_t *p, size_t n, uint8_t *ret_len)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;

	ck_assert(
	    ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)));
	ck_assert(ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, p, n, &zi)));
	if (ret_len)
		*ret_len = zi.length;
	return zi.mnemonic;
}

static int64_t read_field(const uint8_t *p, unsigned size)
{
	if (size == 1)
		return (int8_t)p[0];
	int32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* The absolute address an instruction's relative operand names, decoded by Zydis at `at`. */
static uint64_t decoded_target(const uint8_t *p, size_t n, uint64_t at)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	uint64_t t;

	ck_assert(
	    ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)));
	ck_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, p, n, &zi, ops)));
	for (unsigned i = 0; i < zi.operand_count; i++)
		if ((ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[i].imm.is_relative) ||
		    (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
		     ops[i].mem.base == ZYDIS_REGISTER_RIP)) {
			ck_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&zi, &ops[i], at, &t)));
			return t;
		}
	ck_abort_msg("no relative operand at %#" PRIx64, at);
	return 0;
}

static const struct copier_reloc *reloc_at(const struct copier_result *r, uint32_t insn_off)
{
	for (size_t i = 0; i < r->n_relocs; i++)
		if (r->relocs[i].insn_off == insn_off)
			return &r->relocs[i];
	return NULL;
}

/*
 * What every copy must satisfy, checked from the outside: code is the
 * original's bytes, copy the copy's bytes (executing at r->dest_addr).
 */
static void check_invariants(const char *name, const uint8_t *code, size_t len, const uint8_t *copy,
			     const struct copier_result *r)
{
	uint32_t o = 0, k = 0;
	size_t covered = 0;

	ck_assert_uint_eq(r->orig_len, len);
	ck_assert_uint_ge(r->n_map, 1);
	ck_assert(r->entry_patch_off == 0 || r->entry_patch_off == 4);

	for (size_t i = 0; i < r->n_map; i++) {
		const struct copier_map_entry *e = &r->map[i];
		uint8_t ol = 0, cl = 0;

		ck_assert_msg(e->orig_off == o && e->copy_off == k, "%s: map gap at %zu", name, i);
		ck_assert_uint_gt(e->copy_len, 0);
		o += e->orig_len;
		k += e->copy_len;
		if (!e->orig_len) {
			/* The appended jump: last, and only when flagged. */
			ck_assert_uint_eq(i, r->n_map - 1);
			ck_assert(r->flags & COPIER_F_TAIL_JMP);
			ck_assert_int_eq(mnemonic_at(copy + e->copy_off, e->copy_len, &cl),
					 ZYDIS_MNEMONIC_JMP);
			continue;
		}
		/* Same instruction on both sides (a widened one keeps its mnemonic). */
		ck_assert_int_eq(mnemonic_at(code + e->orig_off, e->orig_len, &ol),
				 mnemonic_at(copy + e->copy_off, e->copy_len, &cl));
		ck_assert_uint_eq(ol, e->orig_len);

		const struct copier_reloc *rel = NULL;
		for (size_t j = 0; j < r->n_relocs; j++)
			if (r->relocs[j].field_off >= e->copy_off &&
			    r->relocs[j].field_off < e->copy_off + e->copy_len)
				rel = &r->relocs[j];
		if (!rel) {
			/* No relative operand: byte for byte. */
			ck_assert_msg(
			    e->orig_len == e->copy_len &&
				!memcmp(code + e->orig_off, copy + e->copy_off, e->orig_len),
			    "%s: instruction at +%u changed", name, e->orig_off);
			covered++;
		} else if (e->orig_len == e->copy_len) {
			/* Patched in place: only the field differs. */
			uint32_t f = rel->field_off - e->copy_off;

			ck_assert_uint_eq(cl, e->copy_len);
			ck_assert(!memcmp(code + e->orig_off, copy + e->copy_off, f));
			ck_assert(!memcmp(code + e->orig_off + f + rel->size,
					  copy + e->copy_off + f + rel->size,
					  e->orig_len - f - rel->size));
		}
	}
	ck_assert_uint_eq(o, len);
	ck_assert_uint_eq(k, r->size);
	ck_assert_uint_gt(covered, 0);

	for (size_t j = 0; j < r->n_relocs; j++) {
		const struct copier_reloc *rel = &r->relocs[j];
		uint64_t orig_end = r->orig_addr + len;

		if (j)
			ck_assert_uint_gt(rel->field_off, r->relocs[j - 1].field_off);
		ck_assert(rel->size == 1 || rel->size == 4);
		ck_assert_uint_le(rel->field_off + rel->size, rel->base_off);
		ck_assert_uint_eq(r->dest_addr + rel->base_off +
				      read_field(copy + rel->field_off, rel->size),
				  rel->target);
		/* And as the CPU sees them: Zydis on the copy, Zydis on the original. */
		ck_assert_uint_eq(decoded_target(copy + rel->insn_off, r->size - rel->insn_off,
						 r->dest_addr + rel->insn_off),
				  rel->target);
		for (size_t i = 0; i < r->n_map; i++) {
			const struct copier_map_entry *e = &r->map[i];

			if (rel->insn_off < e->copy_off ||
			    rel->insn_off >= e->copy_off + e->copy_len)
				continue;
			if (e->orig_len)
				ck_assert_uint_eq(decoded_target(code + e->orig_off, e->orig_len,
								 r->orig_addr + e->orig_off),
						  rel->orig_target);
			else
				ck_assert_uint_eq(rel->orig_target, orig_end);
		}
		switch (rel->target_kind) {
		case COPIER_TARGET_INTERNAL: {
			uint64_t back;

			ck_assert_int_eq(copier_copy_to_orig(r, rel->target, &back), 0);
			ck_assert_uint_eq(back, rel->orig_target);
			break;
		}
		case COPIER_TARGET_EXTERNAL:
			ck_assert_uint_eq(rel->size, 4); /* a move never needs re-encoding */
			ck_assert_uint_eq(rel->target, rel->orig_target);
			if (rel->kind != COPIER_RELOC_RIPMEM)
				ck_assert(rel->target < r->orig_addr || rel->target >= orig_end);
			break;
		case COPIER_TARGET_REDIRECTED:
			ck_assert_uint_eq(rel->size, 4);
			ck_assert(r->flags & COPIER_F_REDIRECTED);
			break;
		default:
			ck_abort_msg("%s: record %zu has no target kind", name, j);
		}
	}
}

static int copy_to(const void *fn, size_t len, uint64_t dest, uint8_t *out, size_t cap,
		   struct copier_result **ret, struct copier_refusal *why)
{
	struct copier_input in = {
	    .code = fn,
	    .orig_addr = (uintptr_t)fn,
	    .len = len,
	    .dest_addr = dest,
	    .dest_cap = cap,
	};

	return copier_copy(&in, out, ret, why);
}

static void copy_ok(const char *name, const void *fn, size_t len, uint8_t *dest, size_t cap,
		    struct copier_result **ret)
{
	struct copier_refusal why = {0};
	int r = copy_to(fn, len, (uintptr_t)dest, dest, cap, ret, &why);

	ck_assert_msg(r == 0, "%s: copier_copy = %d (%s at +%u, target %#" PRIx64 ")", name, r,
		      copier_reason_to_string(why.reason), why.orig_off, why.target);
}

static bool cpu_ok(const struct fcase *c)
{
	__builtin_cpu_init();
	return !c->avx512 || __builtin_cpu_supports("avx512f");
}

/* ---- executing copies ---- */

/*
 * Case _i / 2 at distance near (even _i) or far (odd): run the original,
 * copy, run the copy, compare; then move the copy and run it again.
 */
START_TEST(test_exec)
{
	const struct fcase *c = &cases[_i / 2];
	uint64_t dist = _i % 2 ? FAR_DIST : NEAR_DIST;
	size_t len = fcase_len(c), cap = cap_for(len);
	struct digest *want = calloc(1, sizeof(*want)), *got = calloc(1, sizeof(*got));
	struct copier_result *r = NULL, *dry = NULL;
	uint8_t *d1, *d2;

	ck_assert(want && got);
	d1 = map_away((uintptr_t)c->fn, dist, cap);
	copy_ok(c->name, c->fn, len, d1, cap, &r);
	check_invariants(c->name, c->fn, len, d1, r);
	ck_assert_msg((r->flags & c->need_flags) == c->need_flags, "%s: flags %#x, want %#x",
		      c->name, r->flags, c->need_flags);

	/* A dry run lays out the same copy. */
	ck_assert_int_eq(copy_to(c->fn, len, (uintptr_t)d1, NULL, cap, &dry, NULL), 0);
	ck_assert_uint_eq(dry->size, r->size);
	ck_assert_uint_eq(dry->flags, r->flags);
	ck_assert_uint_eq(dry->n_map, r->n_map);
	ck_assert_uint_eq(dry->n_relocs, r->n_relocs);
	ck_assert(!memcmp(dry->map, r->map, r->n_map * sizeof(*r->map)));
	ck_assert(!memcmp(dry->relocs, r->relocs, r->n_relocs * sizeof(*r->relocs)));
	copier_result_free(dry);

	if (getenv("COPIER_TEST_VERBOSE"))
		fprintf(stderr, "%-16s %s len %zu size %zu map %zu relocs %zu flags %#x patch %u\n",
			c->name, _i % 2 ? "far " : "near", len, r->size, r->n_map, r->n_relocs,
			r->flags, r->entry_patch_off);
	if (!cpu_ok(c)) {
		fprintf(stderr, "%s: copied, not run: no AVX-512 here\n", c->name);
		goto out;
	}
	c->run((uintptr_t)c->fn, c, want);
	make_exec(d1, cap);
	c->run((uintptr_t)d1, c, got);
	ck_assert_uint_eq(got->n, want->n);
	ck_assert_msg(!memcmp(got->v, want->v, want->n * sizeof(want->v[0])),
		      "%s: copy at %p computes other results", c->name, (void *)d1);

	/* Moved: the records alone make the copy work at its new place. */
	d2 = map_away((uintptr_t)c->fn, MOVE_DIST, cap);
	memcpy(d2, d1, r->size);
	ck_assert_int_eq(copier_relocate(d2, r, (uintptr_t)d1, (uintptr_t)d1 + r->size,
					 (int64_t)((uintptr_t)d2 - (uintptr_t)d1)),
			 0);
	ck_assert_uint_eq(r->dest_addr, (uintptr_t)d2);
	check_invariants(c->name, c->fn, len, d2, r);
	ck_assert_int_eq(munmap(d1, cap), 0);
	make_exec(d2, cap);
	memset(got, 0, sizeof(*got));
	c->run((uintptr_t)d2, c, got);
	ck_assert_msg(!memcmp(got->v, want->v, want->n * sizeof(want->v[0])),
		      "%s: moved copy at %p computes other results", c->name, (void *)d2);
	ck_assert_int_eq(munmap(d2, cap), 0);
	d1 = NULL;
out:
	if (d1)
		munmap(d1, cap);
	copier_result_free(r);
	free(want);
	free(got);
}
END_TEST

/*
 * A function written into fresh pages (not the test's image), with a constant
 * in the same pages: sum of n copies of 7 via loop, RIP-relative add.
 */
START_TEST(test_exec_mapped_bytes)
{
	static const uint8_t fn[] = {
	    0x48, 0x31, 0xc0,			      /* 0: xor rax, rax */
	    0x48, 0x89, 0xf9,			      /* 3: mov rcx, rdi */
	    0x48, 0x03, 0x05, 0xf3, 0x00, 0x00, 0x00, /* 6: add rax, [rip + 0xf3] -> 0x100 */
	    0xe2, 0xf7,				      /* 13: loop 6 */
	    0xc3,				      /* 15: ret */
	};
	const long seven = 7;
	struct copier_result *r = NULL;
	uint8_t *src, *dst;
	size_t cap = PAGE_SIZE_4K;

	src = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(src != MAP_FAILED);
	memcpy(src, fn, sizeof(fn));
	memcpy(src + 0x100, &seven, sizeof(seven));
	make_exec(src, cap);
	dst = map_away((uintptr_t)src, FAR_DIST, cap);
	copy_ok("mapped", src, sizeof(fn), dst, cap, &r);
	check_invariants("mapped", src, sizeof(fn), dst, r);
	ck_assert_uint_eq(r->size, sizeof(fn));
	ck_assert_uint_eq(r->n_relocs, 2);
	ck_assert_uint_eq(r->relocs[0].kind, COPIER_RELOC_RIPMEM);
	ck_assert_uint_eq(r->relocs[0].target, (uintptr_t)src + 0x100);
	ck_assert_uint_eq(r->relocs[1].target_kind, COPIER_TARGET_INTERNAL);
	ck_assert_uint_eq(r->relocs[1].target, (uintptr_t)dst + 6);
	make_exec(dst, cap);
	for (long n = 1; n < 6; n++) {
		ck_assert_int_eq(((fn_l_l *)(uintptr_t)src)(n), 7 * n);
		ck_assert_int_eq(((fn_l_l *)(uintptr_t)dst)(n), 7 * n);
	}
	munmap(src, cap);
	munmap(dst, cap);
	copier_result_free(r);
}
END_TEST

/* ---- layout ---- */

/* Counts map entries whose instruction grew from orig_len to copy_len. */
static unsigned count_grown(const struct copier_result *r, uint8_t orig_len, uint8_t copy_len)
{
	unsigned n = 0;

	for (size_t i = 0; i < r->n_map; i++)
		n += r->map[i].orig_len == orig_len && r->map[i].copy_len == copy_len;
	return n;
}

/* Widening cascades: E's ten je (2 -> 6), A1 jz (2 -> 6), A2 jmp (2 -> 5), then B jz. */
START_TEST(test_widen_cascade)
{
	size_t len = cpa_widen_end - cpa_widen;
	struct copier_result *r = NULL;
	uint8_t *buf = malloc(cap_for(len));
	uint64_t dest = (uintptr_t)cpa_widen + NEAR_DIST;
	unsigned internal_wide = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(copy_to(cpa_widen, len, dest, buf, cap_for(len), &r, NULL), 0);
	check_invariants("cpa_widen", cpa_widen, len, buf, r);
	ck_assert(r->flags & COPIER_F_WIDENED);
	ck_assert_uint_eq(count_grown(r, 2, 6), 12); /* ten je, A1, B */
	ck_assert_uint_eq(count_grown(r, 2, 5), 1);  /* A2 */
	ck_assert_uint_eq(r->size, len + 12 * 4 + 3);
	for (size_t i = 0; i < r->n_relocs; i++)
		if (r->relocs[i].target_kind == COPIER_TARGET_INTERNAL && r->relocs[i].size == 4)
			internal_wide++;
	ck_assert_uint_eq(internal_wide, 3);
	copier_result_free(r);
	free(buf);
}
END_TEST

/* Outbound loop/jrcxz/jecxz expand to 7 more bytes; internal ones stay rel8. */
START_TEST(test_loop_expansion)
{
	size_t len = cpa_lx_end - cpa_lx, len2 = cpa_loops_end - cpa_loops;
	struct copier_result *r = NULL;
	uint8_t *buf = malloc(cap_for(len2));

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(
	    copy_to(cpa_lx, len, (uintptr_t)cpa_lx + NEAR_DIST, buf, cap_for(len), &r, NULL), 0);
	ck_assert_uint_eq(count_grown(r, 2, 9), 2);  /* jrcxz, loop */
	ck_assert_uint_eq(count_grown(r, 3, 10), 1); /* jecxz */
	for (size_t i = 0; i < r->n_relocs; i++) {
		ck_assert_uint_eq(r->relocs[i].target_kind, COPIER_TARGET_EXTERNAL);
		ck_assert_uint_eq(r->relocs[i].size, 4);
	}
	copier_result_free(r);

	ck_assert_int_eq(
	    copy_to(cpa_loops, len2, (uintptr_t)cpa_loops + FAR_DIST, buf, cap_for(len2), &r, NULL),
	    0);
	ck_assert_uint_eq(r->size, len2);
	ck_assert(!(r->flags & COPIER_F_WIDENED));
	ck_assert(!memcmp(buf, cpa_loops, len2)); /* all relative, all internal: same bytes */
	copier_result_free(r);
	free(buf);
}
END_TEST

/* ---- redirect: calls from one copy go to another copy ---- */

struct redirect_one {
	uint64_t from, to;
	unsigned asked;
};

static uint64_t redirect_one(void *ctx, uint64_t target)
{
	struct redirect_one *m = ctx;

	m->asked++;
	return target == m->from ? m->to : 0;
}

/*
 * cpa_call's call to cpa_helper goes to a copy of cpa_helper_alt (2x + 1
 * instead of x * x + 3), so the result shows which was called. Then only the
 * callee's copy moves; the caller's copy follows it with copier_relocate().
 */
START_TEST(test_redirect_asm)
{
	size_t len = cpa_call_end - cpa_call, alt_len = cpa_helper_alt_end - cpa_helper_alt;
	struct copier_result *r = NULL, *ra = NULL;
	struct redirect_one m;
	const struct copier_reloc *rel = NULL;
	uint8_t *alt, *alt2, *d;

	alt = map_away((uintptr_t)cpa_call, NEAR_DIST, PAGE_SIZE_4K);
	copy_ok("cpa_helper_alt", cpa_helper_alt, alt_len, alt, PAGE_SIZE_4K, &ra);
	make_exec(alt, PAGE_SIZE_4K);

	m = (struct redirect_one){.from = (uintptr_t)cpa_helper, .to = (uintptr_t)alt};
	d = map_away((uintptr_t)cpa_call, FAR_DIST, PAGE_SIZE_4K);
	struct copier_input in = {
	    .code = cpa_call,
	    .orig_addr = (uintptr_t)cpa_call,
	    .len = len,
	    .dest_addr = (uintptr_t)d,
	    .dest_cap = PAGE_SIZE_4K,
	    .redirect = redirect_one,
	    .redirect_ctx = &m,
	};
	ck_assert_int_eq(copier_copy(&in, d, &r, NULL), 0);
	check_invariants("cpa_call", cpa_call, len, d, r);
	ck_assert_uint_eq(m.asked, 2); /* cpa_helper and labs@plt */
	ck_assert(r->flags & COPIER_F_REDIRECTED);
	for (size_t i = 0; i < r->n_relocs; i++)
		if (r->relocs[i].target_kind == COPIER_TARGET_REDIRECTED)
			rel = &r->relocs[i];
	ck_assert_ptr_nonnull(rel);
	ck_assert_uint_eq(rel->kind, COPIER_RELOC_CALL);
	ck_assert_uint_eq(rel->target, (uintptr_t)alt);
	ck_assert_uint_eq(rel->orig_target, (uintptr_t)cpa_helper);
	make_exec(d, PAGE_SIZE_4K);
	for (long x = -3; x <= 3; x++) {
		ck_assert_int_eq(((fn_l_l *)(uintptr_t)cpa_call)(x), x * x + 3 + labs(x) + x);
		ck_assert_int_eq(((fn_l_l *)(uintptr_t)d)(x), 2 * x + 1 + labs(x) + x);
	}

	/* The callee's copy moves, the caller's stays. */
	alt2 = map_away((uintptr_t)cpa_call, MOVE_DIST, PAGE_SIZE_4K);
	memcpy(alt2, alt, ra->size);
	ck_assert_int_eq(copier_relocate(alt2, ra, (uintptr_t)alt, (uintptr_t)alt + PAGE_SIZE_4K,
					 (int64_t)((uintptr_t)alt2 - (uintptr_t)alt)),
			 0);
	make_exec(alt2, PAGE_SIZE_4K);
	ck_assert_int_eq(mprotect(d, PAGE_SIZE_4K, PROT_READ | PROT_WRITE), 0);
	ck_assert_int_eq(copier_relocate(d, r, (uintptr_t)alt, (uintptr_t)alt + PAGE_SIZE_4K,
					 (int64_t)((uintptr_t)alt2 - (uintptr_t)alt)),
			 0);
	ck_assert_uint_eq(r->dest_addr, (uintptr_t)d);
	ck_assert_uint_eq(rel->target, (uintptr_t)alt2);
	check_invariants("cpa_call", cpa_call, len, d, r);
	ck_assert_int_eq(munmap(alt, PAGE_SIZE_4K), 0);
	make_exec(d, PAGE_SIZE_4K);
	for (long x = -3; x <= 3; x++)
		ck_assert_int_eq(((fn_l_l *)(uintptr_t)d)(x), 2 * x + 1 + labs(x) + x);
	munmap(alt2, PAGE_SIZE_4K);
	munmap(d, PAGE_SIZE_4K);
	copier_result_free(r);
	copier_result_free(ra);
}
END_TEST

struct cf_variant {
	const char *name;
	fn_l_l *callee, *callee_alt, *caller, *tail, *fib;
};

static const struct cf_variant variants[] = {
    {"O0", cf_callee_O0, cf_callee_alt_O0, cf_caller_O0, cf_tail_O0, cf_fib_O0},
    {"O2", cf_callee_O2, cf_callee_alt_O2, cf_caller_O2, cf_tail_O2, cf_fib_O2},
    {"O3", cf_callee_O3, cf_callee_alt_O3, cf_caller_O3, cf_tail_O3, cf_fib_O3},
    {"CET", cf_callee_CET, cf_callee_alt_CET, cf_caller_CET, cf_tail_CET, cf_fib_CET},
};

static long caller_with(long x, long (*callee)(long))
{
	long s = 0;

	for (long i = 0; i < 4; i++)
		s += callee(x + i) ^ i;
	return s;
}

static long alt_model(long x)
{
	return x * 7 - 2;
}

/*
 * gcc's cf_caller (a call in a loop) and cf_tail (a tail call: jmp at -O2)
 * copied with cf_callee redirected to a copy of cf_callee_alt.
 */
START_TEST(test_redirect_compiled)
{
	const struct cf_variant *v = &variants[_i];
	struct fcase fc = {.name = v->name, .fn = (void *)(uintptr_t)v->callee_alt};
	size_t alt_len = fcase_len(&fc), cap = PAGE_SIZE_4K;
	struct copier_result *ra = NULL, *r = NULL;
	struct redirect_one m;
	uint8_t *alt, *d;
	fn_l_l *funcs[] = {v->caller, v->tail};

	alt = map_away((uintptr_t)v->callee, NEAR_DIST, cap);
	copy_ok("callee_alt", (void *)(uintptr_t)v->callee_alt, alt_len, alt, cap, &ra);
	make_exec(alt, cap);
	m = (struct redirect_one){.from = (uintptr_t)v->callee, .to = (uintptr_t)alt};

	for (size_t f = 0; f < ARRAY_SIZE(funcs); f++) {
		size_t len;
		unsigned redirected = 0;

		fc.fn = (void *)(uintptr_t)funcs[f];
		len = fcase_len(&fc);
		d = map_away((uintptr_t)funcs[f], FAR_DIST, cap);
		struct copier_input in = {
		    .code = fc.fn,
		    .orig_addr = (uintptr_t)fc.fn,
		    .len = len,
		    .dest_addr = (uintptr_t)d,
		    .dest_cap = cap,
		    .redirect = redirect_one,
		    .redirect_ctx = &m,
		};
		ck_assert_int_eq(copier_copy(&in, d, &r, NULL), 0);
		check_invariants(v->name, fc.fn, len, d, r);
		for (size_t i = 0; i < r->n_relocs; i++)
			if (r->relocs[i].target_kind == COPIER_TARGET_REDIRECTED) {
				ck_assert_uint_eq(r->relocs[i].target, (uintptr_t)alt);
				redirected++;
			}
		ck_assert_uint_ge(redirected, 1);
		make_exec(d, cap);
		for (long x = -5; x <= 205; x += 10) {
			fn_l_l *copy = (fn_l_l *)(uintptr_t)d;

			if (f == 0) {
				ck_assert_int_eq(funcs[f](x), caller_with(x, v->callee));
				ck_assert_int_eq(copy(x), caller_with(x, alt_model));
			} else {
				ck_assert_int_eq(copy(x), alt_model(x > 100 ? x - 100 : x + 1));
			}
		}
		copier_result_free(r);
		ck_assert_int_eq(munmap(d, cap), 0);
	}
	munmap(alt, cap);
	copier_result_free(ra);
}
END_TEST

/* Recursion stays in the copy without a callback: the call's target is internal. */
START_TEST(test_recursion_internal)
{
	struct fcase fc = {.name = "cf_fib_O0", .fn = (void *)(uintptr_t)cf_fib_O0};
	size_t len = fcase_len(&fc);
	struct copier_result *r = NULL;
	uint8_t *buf = malloc(cap_for(len));
	uint64_t dest = (uintptr_t)cf_fib_O0 + NEAR_DIST;
	unsigned self_calls = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(copy_to(fc.fn, len, dest, buf, cap_for(len), &r, NULL), 0);
	for (size_t i = 0; i < r->n_relocs; i++)
		if (r->relocs[i].kind == COPIER_RELOC_CALL) {
			ck_assert_uint_eq(r->relocs[i].target_kind, COPIER_TARGET_INTERNAL);
			ck_assert_uint_eq(r->relocs[i].target, dest);
			ck_assert_uint_eq(r->relocs[i].orig_target, (uintptr_t)cf_fib_O0);
			self_calls++;
		}
	ck_assert_uint_eq(self_calls, 2);
	copier_result_free(r);
	free(buf);
}
END_TEST

/* Switches and computed gotos: flagged, and their targets are the original's. */
START_TEST(test_jump_table_flags)
{
	const struct {
		const void *fn;
		uint32_t want, mask;
	} t[] = {
	    {cf_switch_O0, F_IJ | F_JT, F_IJ | F_JT},
	    {cf_switch_O2, F_IJ | F_JT, F_IJ | F_JT},
	    {cf_switch_O3, F_IJ | F_JT, F_IJ | F_JT},
	    {cf_switch_CET, F_IJ | F_JT, F_IJ | F_JT},
	    {cf_goto_O0, F_IJ, F_IJ},
	    {cf_goto_O2, F_IJ, F_IJ},
	    {cf_goto_CET, F_IJ, F_IJ},
	    {cf_hash_O2, 0, F_IJ | F_JT},
	    {cpa_rip_jmp, 0, F_IJ | F_JT}, /* a tail call through a pointer variable */
	    {cpa_loops, 0, F_IJ | F_JT},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct fcase fc = {.name = "jt", .fn = t[i].fn};
		size_t len;
		struct copier_result *r = NULL;

		if (t[i].fn == cpa_rip_jmp)
			fc.end = cpa_rip_jmp_end;
		else if (t[i].fn == cpa_loops)
			fc.end = cpa_loops_end;
		len = fcase_len(&fc);
		ck_assert_int_eq(copy_to(t[i].fn, len, (uintptr_t)t[i].fn + NEAR_DIST, NULL,
					 cap_for(len), &r, NULL),
				 0);
		ck_assert_msg((r->flags & t[i].mask) == t[i].want, "case %zu: flags %#x", i,
			      r->flags);
		copier_result_free(r);
	}
}
END_TEST

/* The CET build starts with endbr64: the patch goes after it, the copy keeps it. */
START_TEST(test_endbr_patch_offset)
{
	struct fcase fc = {.name = "cf_hash_CET", .fn = (void *)(uintptr_t)cf_hash_CET};
	size_t len = fcase_len(&fc);
	struct copier_result *r = NULL;
	uint8_t *buf = malloc(cap_for(len));

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(
	    copy_to(fc.fn, len, (uintptr_t)fc.fn + NEAR_DIST, buf, cap_for(len), &r, NULL), 0);
	ck_assert_uint_eq(r->entry_patch_off, 4);
	ck_assert(!memcmp(buf, "\xf3\x0f\x1e\xfa", 4));
	copier_result_free(r);

	fc.fn = (void *)(uintptr_t)cf_hash_O2;
	len = fcase_len(&fc);
	ck_assert_int_eq(
	    copy_to(fc.fn, len, (uintptr_t)fc.fn + NEAR_DIST, buf, cap_for(len), &r, NULL), 0);
	ck_assert_uint_eq(r->entry_patch_off, 0);
	copier_result_free(r);
	free(buf);
}
END_TEST

/* ---- refusals, on byte arrays at numeric addresses ---- */

#define ORIG 0x10000000ULL
#define DEST 0x20000000ULL
#define NO_TARGET UINT64_MAX

struct refusal_case {
	const char *name;
	uint8_t code[32];
	size_t len;
	enum copier_reason reason;
	uint32_t off;
	uint64_t target; /* relative to ORIG; NO_TARGET: 0 reported */
};

/* clang-format off */
static const struct refusal_case refusal_cases[] = {
	{"branch into patch", /* xor eax; inc rax (at 2); dec rcx; jnz 2; ret */
	 {0x31, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xc9, 0x75, 0xf8, 0xc3}, 11,
	 COPIER_BRANCH_INTO_ENTRY_PATCH, 8, 2},
	{"branch into patch after endbr64", /* the same behind endbr64: jnz 6 */
	 {0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0xff, 0xc9, 0x75, 0xf8, 0xc3}, 15,
	 COPIER_BRANCH_INTO_ENTRY_PATCH, 12, 6},
	{"call into patch", /* mov rax, rdi; nop x3; call 1; ret */
	 {0x48, 0x89, 0xf8, 0x90, 0x90, 0x90, 0xe8, 0xf6, 0xff, 0xff, 0xff, 0xc3}, 12,
	 COPIER_BRANCH_INTO_ENTRY_PATCH, 6, 1},
	{"branch into an instruction", /* mov; mov; movabs rax, imm64 (at 6); jmp 8; ret */
	 {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf1, 0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 0xeb, 0xf6, 0xc3}, 19,
	 COPIER_BRANCH_INTO_INSN, 16, 8},
	{"undecodable", /* mov; mov; push es (invalid in 64-bit mode); ret */
	 {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf1, 0x06, 0xc3}, 8,
	 COPIER_UNDECODABLE, 6, NO_TARGET},
	{"truncated", /* mov; mov; movabs cut short */
	 {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf1, 0x48, 0xb8, 0x11, 0x22}, 10,
	 COPIER_UNDECODABLE, 6, NO_TARGET},
	{"call next", /* mov; call 8; pop rax; ret */
	 {0x48, 0x89, 0xf8, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x58, 0xc3}, 10,
	 COPIER_CALL_NEXT, 3, 8},
	{"return into patch", /* call rax (returns to 2); mov rdi, rax; ret */
	 {0xff, 0xd0, 0x48, 0x89, 0xc7, 0xc3}, 6,
	 COPIER_RETURN_INTO_ENTRY_PATCH, 0, NO_TARGET},
	{"load from patched bytes", /* mov rax, [rip - 7] (the function's own first bytes); ret */
	 {0x48, 0x8b, 0x05, 0xf9, 0xff, 0xff, 0xff, 0xc3}, 8,
	 COPIER_RIP_INTO_ENTRY_PATCH, 0, 0},
	{"lea into patch", /* lea rax, [rip - 5] (offset 2); ret */
	 {0x48, 0x8d, 0x05, 0xfb, 0xff, 0xff, 0xff, 0xc3}, 8,
	 COPIER_RIP_INTO_ENTRY_PATCH, 0, 2},
	{"eip-relative", /* mov rax, [eip + 0x1000]; ret */
	 {0x67, 0x48, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00, 0xc3}, 9,
	 COPIER_EIP_RELATIVE, 0, NO_TARGET},
	{"0x66 on a branch", /* mov; jmp with an operand-size prefix; ret */
	 {0x48, 0x89, 0xf8, 0x66, 0xe9, 0x00, 0x10, 0x00, 0x00, 0xc3}, 10,
	 COPIER_UNSUPPORTED, 3, NO_TARGET},
	{"too small", {0x31, 0xc0, 0xc3}, 3, COPIER_TOO_SMALL, 0, NO_TARGET},
	{"too small after endbr64",
	 {0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0xc3}, 7,
	 COPIER_TOO_SMALL, 0, NO_TARGET},
};
/* clang-format on */

START_TEST(test_refusal)
{
	const struct refusal_case *t = &refusal_cases[_i];
	struct copier_input in = {
	    .code = t->code,
	    .orig_addr = ORIG,
	    .len = t->len,
	    .dest_addr = DEST,
	    .dest_cap = 4096,
	};
	struct copier_refusal why;
	struct copier_result *r = NULL;
	uint8_t out[4096];
	int ret;

	memset(&why, 0xaa, sizeof(why));
	ret = copier_copy(&in, out, &r, &why);
	ck_assert_msg(ret == -ENOTSUP, "%s: %d", t->name, ret);
	ck_assert_ptr_null(r);
	ck_assert_msg(why.reason == t->reason, "%s: %s", t->name,
		      copier_reason_to_string(why.reason));
	ck_assert_uint_eq(why.orig_off, t->off);
	ck_assert_uint_eq(why.target, t->target == NO_TARGET ? 0 : ORIG + t->target);
	/* The same verdict without an output buffer, and with no why. */
	ck_assert_int_eq(copier_copy(&in, NULL, &r, NULL), -ENOTSUP);
}
END_TEST

/* Targets at the patch's first byte are fine (the patch sends them to the copy). */
START_TEST(test_branch_to_patch_start)
{
	static const uint8_t to0[] = {0x48, 0xff, 0xc0, 0x48, 0xff, 0xc9, 0x75, 0xf8, 0xc3};
	static const uint8_t to4[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0xff, 0xc0,
				      0x48, 0xff, 0xc9, 0x75, 0xf8, 0xc3};
	static const uint8_t lea0[] = {0x48, 0x8d, 0x05, 0xf9, 0xff, 0xff, 0xff, 0xc3};
	struct copier_input in = {.orig_addr = ORIG, .dest_addr = DEST, .dest_cap = 64};
	struct copier_result *r = NULL;
	uint8_t out[64];

	in.code = to0;
	in.len = sizeof(to0);
	ck_assert_int_eq(copier_copy(&in, out, &r, NULL), 0);
	ck_assert_uint_eq(r->relocs[0].target, DEST);
	copier_result_free(r);

	in.code = to4;
	in.len = sizeof(to4);
	ck_assert_int_eq(copier_copy(&in, out, &r, NULL), 0);
	ck_assert_uint_eq(r->entry_patch_off, 4);
	ck_assert_uint_eq(r->relocs[0].target, DEST + 4);
	copier_result_free(r);

	/* The function's own address as data: stays the original's, flagged. */
	in.code = lea0;
	in.len = sizeof(lea0);
	ck_assert_int_eq(copier_copy(&in, out, &r, NULL), 0);
	ck_assert(r->flags & COPIER_F_SELF_REFERENCE);
	ck_assert_uint_eq(r->relocs[0].target, ORIG);
	ck_assert_uint_eq(r->relocs[0].target_kind, COPIER_TARGET_EXTERNAL);
	copier_result_free(r);
}
END_TEST

/*
 * Reach, to the byte: a call rel32, a RIP-relative load and a widened jcc,
 * each at the farthest dest either side where its field still fits, and one
 * byte beyond.
 */
START_TEST(test_reach)
{
	/* mov rax, rdi; call ORIG + 8 + 0x1000; ret */
	static const uint8_t call[] = {0x48, 0x89, 0xf8, 0xe8, 0x00, 0x10, 0x00, 0x00, 0xc3};
	/* mov rax, [rip + 0x2000] (-> ORIG + 7 + 0x2000); ret */
	static const uint8_t load[] = {0x48, 0x8b, 0x05, 0x00, 0x20, 0x00, 0x00, 0xc3};
	/* mov rax, rdi; jz ORIG + 5 + 0x10 (outside); ret -> jz rel32, 6 bytes, ends at +9 */
	static const uint8_t jcc[] = {0x48, 0x89, 0xf8, 0x74, 0x10, 0xc3};
	const struct {
		const uint8_t *code;
		size_t len;
		uint64_t target;
		uint32_t end; /* copy offset the field is relative to */
		uint32_t off;
	} t[] = {
	    {call, sizeof(call), ORIG + 8 + 0x1000, 8, 3},
	    {load, sizeof(load), ORIG + 7 + 0x2000, 7, 0},
	    {jcc, sizeof(jcc), ORIG + 5 + 0x10, 9, 3},
	};
	const uint64_t base = 8 * GiB; /* room for dests on both sides */

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		uint64_t target = t[i].target + base;
		/* target - (dest + end) == INT32_MAX, and == INT32_MIN. */
		uint64_t lo = target - t[i].end - INT32_MAX;
		uint64_t hi = target - t[i].end + (1ULL << 31);
		const uint64_t dests[] = {lo, hi, lo - 1, hi + 1};

		for (size_t j = 0; j < ARRAY_SIZE(dests); j++) {
			struct copier_input in = {
			    .code = t[i].code,
			    .orig_addr = ORIG + base,
			    .len = t[i].len,
			    .dest_addr = dests[j],
			    .dest_cap = 64,
			};
			struct copier_result *r = NULL;
			struct copier_refusal why = {0};
			uint8_t out[64];
			int ret = copier_copy(&in, out, &r, &why);

			if (j < 2) {
				ck_assert_msg(ret == 0, "case %zu dest %zu: %d", i, j, ret);
				ck_assert_uint_eq(r->relocs[0].target, target);
				copier_result_free(r);
			} else {
				ck_assert_int_eq(ret, -ENOTSUP);
				ck_assert_int_eq(why.reason, COPIER_OUT_OF_REACH);
				ck_assert_uint_eq(why.orig_off, t[i].off);
				ck_assert_uint_eq(why.target, target);
			}
		}
	}
}
END_TEST

static uint64_t redirect_far(void *ctx, uint64_t target)
{
	(void)ctx;
	return target + 4 * GiB;
}

/* A real function 3 GiB from its callees, and a redirect out of reach. */
START_TEST(test_reach_real)
{
	size_t len = cpa_call_end - cpa_call;
	struct copier_input in = {
	    .code = cpa_call,
	    .orig_addr = (uintptr_t)cpa_call,
	    .len = len,
	    .dest_addr = (uintptr_t)cpa_call + 3 * GiB,
	    .dest_cap = 4096,
	};
	struct copier_result *r = NULL;
	struct copier_refusal why = {0};

	ck_assert_int_eq(copier_copy(&in, NULL, &r, &why), -ENOTSUP);
	ck_assert_int_eq(why.reason, COPIER_OUT_OF_REACH);
	ck_assert_uint_eq(why.target, (uintptr_t)cpa_helper);
	ck_assert_str_eq(copier_reason_to_string(why.reason), "out_of_reach");

	in.dest_addr = (uintptr_t)cpa_call + NEAR_DIST;
	in.redirect = redirect_far;
	ck_assert_int_eq(copier_copy(&in, NULL, &r, &why), -ENOTSUP);
	ck_assert_int_eq(why.reason, COPIER_OUT_OF_REACH);
	ck_assert_uint_eq(why.target, (uintptr_t)cpa_helper + 4 * GiB);
}
END_TEST

START_TEST(test_no_room_and_limits)
{
	size_t len = cpa_jx_end - cpa_jx;
	struct copier_result *r = NULL;
	struct copier_refusal why = {0};
	uint8_t out[256];
	uint8_t *big;

	/* cpa_jx grows (outbound rel8 become rel32): the copy needs more than len. */
	ck_assert_int_eq(copy_to(cpa_jx, len, (uintptr_t)cpa_jx + NEAR_DIST, out, len, &r, &why),
			 -ENOTSUP);
	ck_assert_int_eq(why.reason, COPIER_NO_ROOM);
	ck_assert_uint_eq(why.size_needed, len + 4 + 4 + 3);
	ck_assert_int_eq(
	    copy_to(cpa_jx, len, (uintptr_t)cpa_jx + NEAR_DIST, out, why.size_needed, &r, &why), 0);
	ck_assert_uint_eq(r->size, why.size_needed);
	copier_result_free(r);

	big = calloc(1, COPIER_MAX_LEN + 1);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(copy_to(big, COPIER_MAX_LEN + 1, DEST, NULL, 0, &r, &why), -ENOTSUP);
	ck_assert_int_eq(why.reason, COPIER_TOO_LARGE);
	free(big);

	ck_assert_int_eq(copier_copy(NULL, out, &r, &why), -EINVAL);
	ck_assert_int_eq(copy_to(cpa_jx, len, DEST, out, sizeof(out), NULL, &why), -EINVAL);
	ck_assert_int_eq(copy_to(cpa_jx, len, UINT64_MAX - 8, out, sizeof(out), &r, &why), -EINVAL);
	copier_result_free(NULL);
}
END_TEST

START_TEST(test_reason_names)
{
	for (int a = COPIER_OK; a <= COPIER_NO_ROOM; a++) {
		ck_assert_str_ne(copier_reason_to_string(a), "unknown");
		for (int b = COPIER_OK; b < a; b++)
			ck_assert_str_ne(copier_reason_to_string(a), copier_reason_to_string(b));
	}
	ck_assert_str_eq(copier_reason_to_string(COPIER_NO_ROOM + 1), "unknown");
	ck_assert_str_eq(copier_reason_to_string(-1), "unknown");
	ck_assert_str_eq(copier_reason_to_string(COPIER_BRANCH_INTO_ENTRY_PATCH),
			 "branch_into_entry_patch");
}
END_TEST

/* xbegin is a rel32 branch: patched like jmp rel32 (not executed: RTM is rare). */
START_TEST(test_xbegin)
{
	/* mov rax, rdi; xbegin +1 (internal, to the ret); nop; ret; xbegin outside; ret */
	static const uint8_t code[] = {0x48, 0x89, 0xf8, 0xc7, 0xf8, 0x01, 0x00, 0x00, 0x00,
				       0x90, 0xc3, 0xc7, 0xf8, 0x00, 0x01, 0x00, 0x00, 0xc3};
	struct copier_input in = {.code = code,
				  .orig_addr = ORIG,
				  .len = sizeof(code),
				  .dest_addr = DEST,
				  .dest_cap = 64};
	struct copier_result *r = NULL;
	uint8_t out[64];

	ck_assert_int_eq(copier_copy(&in, out, &r, NULL), 0);
	check_invariants("xbegin", code, sizeof(code), out, r);
	ck_assert_uint_eq(r->n_relocs, 2);
	ck_assert_uint_eq(r->relocs[0].kind, COPIER_RELOC_BRANCH);
	ck_assert_uint_eq(r->relocs[0].target_kind, COPIER_TARGET_INTERNAL);
	ck_assert_uint_eq(r->relocs[0].target, DEST + 10);
	ck_assert_uint_eq(r->relocs[1].target_kind, COPIER_TARGET_EXTERNAL);
	ck_assert_uint_eq(r->relocs[1].target, ORIG + 17 + 0x100);
	copier_result_free(r);
}
END_TEST

/* ---- relocation by table walk ---- */

START_TEST(test_relocate_errors)
{
	size_t len = cpa_rip_store_end - cpa_rip_store, cap = cap_for(len);
	uint64_t dest = (uintptr_t)cpa_rip_store + NEAR_DIST;
	struct copier_result *r = NULL, saved;
	struct copier_reloc *saved_relocs;
	uint8_t *buf = malloc(cap), *before = malloc(cap);

	ck_assert(buf && before);
	ck_assert_int_eq(copy_to(cpa_rip_store, len, dest, buf, cap, &r, NULL), 0);
	memcpy(before, buf, r->size);
	saved = *r;
	saved_relocs = malloc(r->n_relocs * sizeof(*saved_relocs));
	ck_assert_ptr_nonnull(saved_relocs);
	memcpy(saved_relocs, r->relocs, r->n_relocs * sizeof(*saved_relocs));

	/* 3 GiB away the data is out of reach: nothing changes. */
	ck_assert_int_eq(copier_relocate(buf, r, dest, dest + r->size, 3 * (int64_t)GiB), -ERANGE);
	ck_assert(!memcmp(buf, before, r->size));
	ck_assert_uint_eq(r->dest_addr, saved.dest_addr);
	ck_assert(!memcmp(r->relocs, saved_relocs, r->n_relocs * sizeof(*saved_relocs)));

	/* The copy half inside the moved range. */
	ck_assert_int_eq(copier_relocate(buf, r, dest + 1, dest + 4096, 4096), -EINVAL);
	ck_assert_int_eq(copier_relocate(buf, r, dest + 10, dest, 4096), -EINVAL);
	ck_assert_int_eq(copier_relocate(NULL, r, dest, dest + 4096, 4096), -EINVAL);

	/* There and back: the same bytes again. */
	ck_assert_int_eq(copier_relocate(buf, r, dest, dest + r->size, (int64_t)GiB), 0);
	ck_assert_uint_eq(r->dest_addr, dest + GiB);
	ck_assert(memcmp(buf, before, r->size));
	check_invariants("cpa_rip_store", cpa_rip_store, len, buf, r);
	ck_assert_int_eq(copier_relocate(buf, r, dest + GiB, dest + GiB + r->size, -(int64_t)GiB),
			 0);
	ck_assert(!memcmp(buf, before, r->size));
	ck_assert(!memcmp(r->relocs, saved_relocs, r->n_relocs * sizeof(*saved_relocs)));

	/* Nothing this copy refers to moved, and it did not move: no change. */
	ck_assert_int_eq(copier_relocate(buf, r, 0x1000, 0x2000, 4096), 0);
	ck_assert(!memcmp(buf, before, r->size));

	free(saved_relocs);
	copier_result_free(r);
	free(buf);
	free(before);
}
END_TEST

/* ---- address translation ---- */

START_TEST(test_map_translation)
{
	const struct {
		const uint8_t *fn, *end;
	} t[] = {{cpa_lx, cpa_lx_end}, {cpa_widen, cpa_widen_end}, {cpa_fall, cpa_fall_end}};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		size_t len = t[i].end - t[i].fn;
		uint64_t orig = (uintptr_t)t[i].fn, dest = orig + NEAR_DIST, a;
		struct copier_result *r = NULL;

		ck_assert_int_eq(copy_to(t[i].fn, len, dest, NULL, cap_for(len), &r, NULL), 0);
		for (size_t j = 0; j < r->n_map; j++) {
			const struct copier_map_entry *e = &r->map[j];

			ck_assert_int_eq(copier_copy_to_orig(r, dest + e->copy_off, &a), 0);
			ck_assert_uint_eq(a, orig + e->orig_off);
			if (!e->orig_len)
				continue;
			ck_assert_int_eq(copier_orig_to_copy(r, orig + e->orig_off, &a), 0);
			ck_assert_uint_eq(a, dest + e->copy_off);
			if (e->orig_len > 1)
				ck_assert_int_eq(copier_orig_to_copy(r, orig + e->orig_off + 1, &a),
						 -EINVAL);
			if (e->copy_len > e->orig_len) /* inside a widened form */
				ck_assert_int_eq(
				    copier_copy_to_orig(r, dest + e->copy_off + e->orig_len, &a),
				    -EINVAL);
		}
		ck_assert_int_eq(copier_orig_to_copy(r, orig - 1, &a), -ENOENT);
		ck_assert_int_eq(copier_orig_to_copy(r, orig + len, &a), -ENOENT);
		ck_assert_int_eq(copier_copy_to_orig(r, dest - 1, &a), -ENOENT);
		ck_assert_int_eq(copier_copy_to_orig(r, dest + r->size, &a), -ENOENT);
		copier_result_free(r);
	}
}
END_TEST

/* The jmp appended after cpa_fall's last instruction goes, and maps back, to where falling off the
 * original lands. */
START_TEST(test_tail_jmp)
{
	size_t len = cpa_fall_end - cpa_fall;
	uint8_t out[64];
	struct copier_result *r = NULL;
	uint64_t dest = (uintptr_t)cpa_fall + NEAR_DIST, a;

	ck_assert_int_eq(copy_to(cpa_fall, len, dest, out, sizeof(out), &r, NULL), 0);
	ck_assert(r->flags & COPIER_F_TAIL_JMP);
	ck_assert_uint_eq(r->size, len + 5);
	ck_assert_uint_eq(r->map[r->n_map - 1].orig_off, len);
	ck_assert_ptr_nonnull(reloc_at(r, len));
	ck_assert_uint_eq(reloc_at(r, len)->target, (uintptr_t)cpa_fall_end);
	ck_assert_int_eq(copier_copy_to_orig(r, dest + len, &a), 0);
	ck_assert_uint_eq(a, (uintptr_t)cpa_fall_end);
	copier_result_free(r);
}
END_TEST

/* The stub shapes ld emits, and what is not a stub. */
START_TEST(test_plt_slot)
{
	static const struct {
		const char *what;
		uint8_t code[16];
		size_t len;
		int ret;
		uint64_t slot_off; /* from the stub's address */
	} stubs[] = {
	    {".plt entry (lazy)",
	     {0xff, 0x25, 0x10, 0x20, 0x00, 0x00, 0x68, 0x03, 0x00, 0x00, 0x00, 0xe9, 0xc0, 0xff,
	      0xff, 0xff},
	     16,
	     0,
	     6 + 0x2010},
	    {".plt.sec (endbr64, bnd jmp)",
	     {0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xf0, 0xff, 0xff, 0xff, 0x0f, 0x1f, 0x44,
	      0x00, 0x00},
	     16,
	     0,
	     11 - 0x10},
	    {".plt.sec (endbr64, jmp)",
	     {0xf3, 0x0f, 0x1e, 0xfa, 0xff, 0x25, 0x00, 0x01, 0x00, 0x00, 0x66, 0x0f, 0x1f, 0x44,
	      0x00, 0x00},
	     16,
	     0,
	     10 + 0x100},
	    {".plt.got", {0xff, 0x25, 0x08, 0x00, 0x00, 0x00, 0x66, 0x90}, 8, 0, 6 + 8},
	    {"PLT0 (push first)",
	     {0xff, 0x35, 0x02, 0x20, 0x00, 0x00, 0xff, 0x25, 0x04, 0x20, 0x00, 0x00, 0x0f, 0x1f,
	      0x40, 0x00},
	     16,
	     -ENOTSUP,
	     0},
	    {"jmp through an absolute address",
	     {0xff, 0x24, 0x25, 0x00, 0x10, 0x00, 0x00},
	     7,
	     -ENOTSUP,
	     0},
	    {"jmp through rip with an index",
	     {0xff, 0x24, 0x05, 0x00, 0x10, 0x00, 0x00},
	     7,
	     -ENOTSUP,
	     0},
	    {"jmp rax", {0xff, 0xe0}, 2, -ENOTSUP, 0},
	    {"fs-relative jmp", {0x64, 0xff, 0x25, 0x08, 0x00, 0x00, 0x00}, 7, -ENOTSUP, 0},
	    {"call through the slot", {0xff, 0x15, 0x08, 0x00, 0x00, 0x00}, 6, -ENOTSUP, 0},
	    {"padding", {0xcc, 0xcc, 0xcc, 0xcc}, 4, -ENOTSUP, 0},
	    {"truncated", {0xff, 0x25, 0x08, 0x00}, 4, -ENOTSUP, 0},
	};
	const uint64_t addr = 0x7f0000401000ULL;

	for (size_t i = 0; i < sizeof(stubs) / sizeof(stubs[0]); i++) {
		uint64_t slot = 0;
		int r = copier_plt_slot(stubs[i].code, stubs[i].len, addr, &slot);
		ck_assert_msg(r == stubs[i].ret, "%s: %d, expected %d", stubs[i].what, r,
			      stubs[i].ret);
		if (r == 0)
			ck_assert_msg(slot == addr + stubs[i].slot_off, "%s: slot %#" PRIx64,
				      stubs[i].what, slot);
	}
}
END_TEST

static Suite *copier_suite(void)
{
	Suite *s = suite_create("copier");
	TCase *exec = tcase_create("exec");
	TCase *core = tcase_create("core");

	tcase_add_loop_test(exec, test_exec, 0, 2 * ARRAY_SIZE(cases));
	tcase_add_test(exec, test_exec_mapped_bytes);
	tcase_add_test(exec, test_redirect_asm);
	tcase_add_loop_test(exec, test_redirect_compiled, 0, ARRAY_SIZE(variants));
	tcase_set_timeout(exec, 60);
	suite_add_tcase(s, exec);

	tcase_add_test(core, test_widen_cascade);
	tcase_add_test(core, test_loop_expansion);
	tcase_add_test(core, test_recursion_internal);
	tcase_add_test(core, test_jump_table_flags);
	tcase_add_test(core, test_endbr_patch_offset);
	tcase_add_loop_test(core, test_refusal, 0, ARRAY_SIZE(refusal_cases));
	tcase_add_test(core, test_branch_to_patch_start);
	tcase_add_test(core, test_reach);
	tcase_add_test(core, test_reach_real);
	tcase_add_test(core, test_no_room_and_limits);
	tcase_add_test(core, test_reason_names);
	tcase_add_test(core, test_xbegin);
	tcase_add_test(core, test_relocate_errors);
	tcase_add_test(core, test_map_translation);
	tcase_add_test(core, test_tail_jmp);
	tcase_add_test(core, test_plt_slot);
	suite_add_tcase(s, core);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(copier_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
