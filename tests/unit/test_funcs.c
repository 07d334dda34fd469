/*
 * Unit tests for injector/funcs.c against real processes and real files.
 *
 * The facts come from elsewhere than libelf/libdw wherever possible: the
 * addresses the probe functions have at run time (&func, dlsym, dladdr1 and
 * the link map, the child's own printout), binutils' readelf for symbol
 * sizes, section bounds, FDE ranges and build-ids, and the notes in our own
 * program headers through dl_iterate_phdr. The processes examined are the
 * test itself (PIE with symbols), children built from funcs_child.c (PIE,
 * stripped, non-PIE, deleted, replaced) and Debian's own stripped
 * python3.11 and sqlite3.
 *
 * Nothing sleeps: a child says "ready" on a pipe once it is loaded, and exits
 * when its stdin closes. A test that needs a program the machine lacks says
 * so on stderr and passes.
 */
#include <check.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "funcs.h"
#include "maps.h"
#include "util.h"

#ifndef FUNCS_CHILD
#error "FUNCS_CHILD, FUNCS_CHILD_STRIPPED and FUNCS_CHILD_NOPIE must name the helper programs"
#endif

#define PYTHON "/usr/bin/python3.11"
#define SQLITE "/usr/bin/sqlite3"

/* ---- probes in this program ---- */

/*
 * Hand-written functions whose bounds are known without any tool:
 *   test_funcs_asm_global  48 bytes, global, with CFI;
 *   test_funcs_asm_local   24 bytes, local, with CFI;
 *   test_funcs_outer       64 bytes with CFI, and inside it test_funcs_inner
 *                          at +16, 16 bytes, without CFI (an asm entry point);
 *   test_funcs_two_fdes    64 bytes, one symbol, two FDEs of 32 bytes each;
 *   test_funcs_sizeless    16 bytes of CFI but a symbol without a size.
 */
__asm__(".text\n"
	".globl test_funcs_asm_global\n"
	".type test_funcs_asm_global, @function\n"
	".p2align 4\n"
	"test_funcs_asm_global:\n"
	".cfi_startproc\n"
	".fill 47, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".size test_funcs_asm_global, .-test_funcs_asm_global\n"

	".type test_funcs_asm_local, @function\n"
	".p2align 4\n"
	"test_funcs_asm_local:\n"
	".cfi_startproc\n"
	".fill 23, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".size test_funcs_asm_local, .-test_funcs_asm_local\n"

	".globl test_funcs_outer\n"
	".type test_funcs_outer, @function\n"
	".p2align 4\n"
	"test_funcs_outer:\n"
	".cfi_startproc\n"
	".fill 16, 1, 0x90\n"
	".globl test_funcs_inner\n"
	".type test_funcs_inner, @function\n"
	"test_funcs_inner:\n"
	".fill 15, 1, 0x90\n"
	"ret\n"
	".size test_funcs_inner, .-test_funcs_inner\n"
	".fill 31, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".size test_funcs_outer, .-test_funcs_outer\n"

	".globl test_funcs_two_fdes\n"
	".type test_funcs_two_fdes, @function\n"
	".p2align 4\n"
	"test_funcs_two_fdes:\n"
	".cfi_startproc\n"
	".fill 31, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".cfi_startproc\n"
	".fill 31, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n"
	".size test_funcs_two_fdes, .-test_funcs_two_fdes\n"

	".globl test_funcs_sizeless\n"
	".type test_funcs_sizeless, @function\n"
	".p2align 4\n"
	"test_funcs_sizeless:\n"
	".cfi_startproc\n"
	".fill 15, 1, 0x90\n"
	"ret\n"
	".cfi_endproc\n");
void test_funcs_asm_global(void);
void test_funcs_outer(void);
void test_funcs_inner(void);
void test_funcs_sizeless(void);
void test_funcs_two_fdes(void);
/* A local symbol: its address comes from a global pointer the asm fills. */
__asm__(".data\n"
	".globl test_funcs_asm_local_ptr\n"
	".p2align 3\n"
	"test_funcs_asm_local_ptr:\n"
	".quad test_funcs_asm_local\n"
	".text\n");
extern void (*test_funcs_asm_local_ptr)(void);

static __attribute__((noinline)) int test_funcs_static_probe(int x)
{
	return x * 13 + 1;
}

__attribute__((noinline)) int test_funcs_global_probe(int x)
{
	return test_funcs_static_probe(x) - 2;
}

static uint64_t addr_of(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ---- oracles from binutils ---- */

struct esym {
	uint64_t addr; /* ELF address */
	uint64_t size;
	char name[512]; /* without the version */
	bool hidden;	/* name@VERSION rather than name@@VERSION */
};

struct esyms {
	struct esym *v;
	size_t n;
};

static void esyms_free(struct esyms *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* The FUNC and IFUNC symbols defined in file, as readelf lists them (.dynsym only, or both). */
static void readelf_funcs(const char *file, bool dynsym_only, struct esyms *ret)
{
	char cmd[512], line[1024];
	size_t cap = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -sW %s '%s' 2>/dev/null",
		 dynsym_only ? "--dyn-syms" : "", file);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	*ret = (struct esyms){0};
	while (fgets(line, sizeof(line), f)) {
		char size[32], type[32], bind[32], vis[32], ndx[32], name[512];
		uint64_t value;
		struct esym *e;
		char *at;

		if (sscanf(line, " %*[0-9]: %" SCNx64 " %31s %31s %31s %31s %31s %511s", &value,
			   size, type, bind, vis, ndx, name) != 7)
			continue;
		if ((strcmp(type, "FUNC") && strcmp(type, "IFUNC")) || !strcmp(ndx, "UND") ||
		    !strcmp(ndx, "ABS"))
			continue;
		if (cap == ret->n) {
			cap = cap ? cap * 2 : 256;
			ret->v = realloc(ret->v, cap * sizeof(*ret->v));
			ck_assert_ptr_nonnull(ret->v);
		}
		e = &ret->v[ret->n++];
		e->addr = value;
		e->size = strtoull(size, NULL, 0);
		at = strchr(name, '@');
		e->hidden = at && at[1] != '@';
		if (at)
			*at = '\0';
		snprintf(e->name, sizeof(e->name), "%s", name);
	}
	pclose(f);
	ck_assert_msg(ret->n > 0, "readelf found no functions in %s", file);
}

static const struct esym *esym_by_name(const struct esyms *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].hidden && !strcmp(s->v[i].name, name))
			return &s->v[i];
	return NULL;
}

/*
 * The FDE ranges of file's .eh_frame, as readelf decodes them, and each
 * FDE's offset in the section (in increasing order).
 */
static void readelf_fdes(const char *file, struct range **ret, uint64_t **ret_offs, size_t *ret_n)
{
	char cmd[512], line[1024];
	bool in_eh_frame = false;
	size_t n = 0, cap = 0;
	struct range *v = NULL;
	uint64_t *offs = NULL;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -wf '%s' 2>/dev/null", file);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		uint64_t s, e, off;
		char *pc;

		if (!strncmp(line, "Contents of the ", 16))
			in_eh_frame = strstr(line, ".eh_frame section") != NULL;
		if (!in_eh_frame || !strstr(line, " FDE ") || !(pc = strstr(line, "pc=")))
			continue;
		if (sscanf(line, "%" SCNx64, &off) != 1 ||
		    sscanf(pc, "pc=%" SCNx64 "..%" SCNx64, &s, &e) != 2)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			v = realloc(v, cap * sizeof(*v));
			offs = realloc(offs, cap * sizeof(*offs));
			ck_assert_ptr_nonnull(v);
			ck_assert_ptr_nonnull(offs);
		}
		ck_assert(n == 0 || offs[n - 1] < off);
		offs[n] = off;
		v[n++] = (struct range){s, e};
	}
	pclose(f);
	*ret = v;
	*ret_offs = offs;
	*ret_n = n;
}

/* The ELF ranges of file's sections with one of the names (NULL-terminated), as readelf lists them.
 */
static size_t readelf_sections(const char *file, const char *const *names, struct range *v,
			       size_t max)
{
	char cmd[512], line[1024];
	size_t n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -SW '%s' 2>/dev/null", file);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		char name[64], type[64];
		uint64_t addr, off, size;
		char *p = strchr(line, ']');

		if (!p || sscanf(p + 1, " %63s %63s %" SCNx64 " %" SCNx64 " %" SCNx64, name, type,
				 &addr, &off, &size) != 5)
			continue;
		for (const char *const *want = names; *want; want++)
			if (!strcmp(name, *want) && size && n < max)
				v[n++] = (struct range){addr, addr + size};
	}
	pclose(f);
	return n;
}

static size_t readelf_plt(const char *file, struct range *v, size_t max)
{
	static const char *const plt[] = {".plt", ".plt.sec", ".plt.got", ".iplt", NULL};

	return readelf_sections(file, plt, v, max);
}

/*
 * Every JUMP_SLOT and GLOB_DAT relocation readelf lists for file names the
 * symbol module_got_symbol() gives for its slot, and the module knows no
 * other slot. Returns how many there are.
 */
static size_t check_got(const struct module *mod, const char *file)
{
	char cmd[512], line[1024];
	size_t n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -rW '%s' 2>/dev/null", file);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		char type[64], name[512], *at;
		uint64_t off;
		const char *got;

		if (sscanf(line, "%" SCNx64 " %*x %63s %*x %511s", &off, type, name) != 3 ||
		    (strcmp(type, "R_X86_64_JUMP_SLOT") && strcmp(type, "R_X86_64_GLOB_DAT")))
			continue;
		at = strchr(name, '@');
		if (at)
			*at = '\0';
		got = module_got_symbol(mod, off + mod->bias);
		ck_assert_msg(got && !strcmp(got, name),
			      "%s: GOT slot %#" PRIx64 ": %s, readelf says %s", file, off,
			      got ? got : "nothing", name);
		n++;
	}
	pclose(f);
	ck_assert_uint_eq(mod->n_got, n);
	ck_assert_ptr_null(module_got_symbol(mod, mod->bias));
	return n;
}

static void readelf_build_id(const char *file, char *ret, size_t len)
{
	char cmd[512], line[512];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -n '%s' 2>/dev/null", file);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ret[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "Build ID: ");

		if (p) {
			snprintf(ret, len, "%s", p + 10);
			ret[strcspn(ret, "\n")] = '\0';
		}
	}
	pclose(f);
	ck_assert_msg(ret[0], "readelf shows no build-id in %s", file);
}

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/* ---- children ---- */

struct child {
	pid_t pid;
	int in;	   /* the write end of the child's stdin */
	FILE *out; /* the child's stdout */
	struct {
		char name[64];
		uint64_t addr;
	} probes[8];
	size_t n_probes;
};

/*
 * Starts argv[0] with pipes on its stdin and stdout, writes input (if any),
 * and reads "NAME ADDR" lines until the child prints "ready".
 */
static void child_start(struct child *c, char *const argv[], const char *input)
{
	int in[2], out[2];
	char line[256];

	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	c->pid = fork();
	ck_assert_int_ge(c->pid, 0);
	if (c->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	c->in = in[1];
	c->out = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(c->out);
	if (input)
		ck_assert_int_eq(write(c->in, input, strlen(input)), (ssize_t)strlen(input));
	while (fgets(line, sizeof(line), c->out)) {
		if (!strcmp(line, "ready\n"))
			return;
		if (c->n_probes < ARRAY_SIZE(c->probes) &&
		    sscanf(line, "%63s %" SCNx64, c->probes[c->n_probes].name,
			   &c->probes[c->n_probes].addr) == 2)
			c->n_probes++;
	}
	ck_abort_msg("%s ended before it was ready", argv[0]);
}

static uint64_t child_probe(const struct child *c, const char *name)
{
	for (size_t i = 0; i < c->n_probes; i++)
		if (!strcmp(c->probes[i].name, name))
			return c->probes[i].addr;
	ck_abort_msg("the child did not print %s", name);
	return 0;
}

/* Closes the child's stdin, which ends it; returns its wait status. */
static int child_stop(struct child *c)
{
	int status;

	close(c->in);
	fclose(c->out);
	ck_assert_int_eq(waitpid(c->pid, &status, 0), c->pid);
	return status;
}

/* ---- checks every module must pass ---- */

static void check_module(const struct module *mod)
{
	uint64_t max_end = 0;

	ck_assert_ptr_nonnull(mod->path);
	ck_assert_uint_gt(mod->n_text, 0);
	ck_assert_uint_eq(strlen(mod->build_id_hex), 2 * mod->build_id_len);
	ck_assert(mod->elf_type == ET_EXEC || mod->elf_type == ET_DYN);
	if (mod->elf_type == ET_EXEC)
		ck_assert_uint_eq(mod->bias, 0);

	for (size_t i = 0; i < mod->n_funcs; i++) {
		const struct func *f = &mod->funcs[i], *g;

		ck_assert_msg(f->start < f->end, "%s: function %zu is empty", mod->path, i);
		ck_assert(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_DYNSYM | FUNC_FROM_FDE));
		if (i > 0)
			ck_assert_msg(mod->funcs[i - 1].start < f->start,
				      "%s: functions out of order", mod->path);
		ck_assert_int_eq(!!(f->flags & FUNC_NESTED), f->start < max_end);
		if (f->end > max_end)
			max_end = f->end;
		for (size_t k = 0; k < mod->n_plt; k++)
			ck_assert_msg(
			    !range_overlaps(f->start, f->end, mod->plt[k].start, mod->plt[k].end),
			    "%s: a function overlaps the PLT", mod->path);
		ck_assert_ptr_eq(module_find_func(mod, f->start), f);
		/* The last byte finds f, or a function nested in f that holds it. */
		g = module_find_func(mod, f->end - 1);
		ck_assert_ptr_nonnull(g);
		ck_assert(g->start >= f->start && f->end - 1 < g->end);
	}
	for (size_t i = 0; i < mod->n_names; i++) {
		ck_assert_uint_lt(mod->names[i].func, mod->n_funcs);
		if (i > 0) {
			int c = strcmp(mod->names[i - 1].name, mod->names[i].name);

			ck_assert_int_le(c, 0);
			ck_assert_msg(c || mod->names[i - 1].func != mod->names[i].func,
				      "%s: %s is listed twice", mod->path, mod->names[i].name);
		}
	}
	for (size_t i = 0; i < mod->n_funcs; i++)
		if (mod->funcs[i].name)
			ck_assert_msg(module_find_func_by_name(mod, mod->funcs[i].name) != NULL,
				      "%s: %s is not in the name index", mod->path,
				      mod->funcs[i].name);
	for (size_t i = 1; i < mod->n_text; i++)
		ck_assert_uint_le(mod->text[i - 1].end, mod->text[i].start);
}

static void check_set(const struct module_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		check_module(set->v[i]);
		for (size_t j = 0; j < set->v[i]->n_text; j++)
			ck_assert_ptr_eq(module_set_find(set, set->v[i]->text[j].start), set->v[i]);
	}
}

/*
 * Every sized function symbol readelf lists is a function starting at its
 * address + bias, ending at the furthest end of the symbols there; every name
 * whose default version only one address carries finds that function.
 */
static void check_symbols(const struct module *mod, const struct esyms *syms)
{
	size_t checked = 0;

	for (size_t i = 0; i < syms->n; i++) {
		const struct esym *e = &syms->v[i];
		uint64_t end = e->addr + e->size;
		const struct func *f;
		bool unique = true;

		if (e->size == 0)
			continue;
		for (size_t j = 0; j < syms->n; j++) {
			if (syms->v[j].addr == e->addr && syms->v[j].addr + syms->v[j].size > end)
				end = syms->v[j].addr + syms->v[j].size;
			/* Another default-version symbol of this name elsewhere (statics of two
			 * files). */
			if (!syms->v[j].hidden && !strcmp(syms->v[j].name, e->name) &&
			    syms->v[j].addr != e->addr)
				unique = false;
		}
		f = module_find_func(mod, e->addr + mod->bias);
		ck_assert_msg(f && f->start == e->addr + mod->bias && f->end == end + mod->bias,
			      "%s: %s at 0x%" PRIx64 "+%" PRIu64 " is not a function of its own",
			      mod->path, e->name, e->addr, e->size);
		ck_assert(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_DYNSYM));
		ck_assert_ptr_nonnull(f->name);
		/* By name, the default version (pthread_cond_wait@@GLIBC_2.3.2). */
		if (unique && !e->hidden)
			ck_assert_msg(module_find_func_by_name(mod, e->name) == f,
				      "%s: %s is not found by name", mod->path, e->name);
		checked++;
	}
	ck_assert_uint_gt(checked, 0);
}

/*
 * Every FDE readelf decodes, but those in the PLT, is either a function with
 * exactly its bounds or lies in a function a symbol gave; the module read as
 * many FDEs as readelf did.
 */
static void check_fdes(const struct module *mod, const char *file)
{
	static const char *const eh_frame_name[] = {".eh_frame", NULL};
	struct range plt[8], *fdes, eh_frame;
	size_t n_plt = readelf_plt(file, plt, ARRAY_SIZE(plt)), n_fdes, in_plt = 0, with_fde = 0;
	uint64_t *offs;
	uint64_t plt_bytes = 0, our_plt_bytes = 0;

	for (size_t i = 0; i < n_plt; i++) {
		bool covered = false;

		plt_bytes += plt[i].end - plt[i].start;
		for (size_t k = 0; k < mod->n_plt; k++)
			covered |= mod->plt[k].start <= plt[i].start + mod->bias &&
				   plt[i].end + mod->bias <= mod->plt[k].end;
		ck_assert_msg(covered, "%s: PLT section 0x%" PRIx64 " is missed", file,
			      plt[i].start);
	}
	for (size_t k = 0; k < mod->n_plt; k++)
		our_plt_bytes += mod->plt[k].end - mod->plt[k].start;
	ck_assert_uint_eq(our_plt_bytes, plt_bytes);

	readelf_fdes(file, &fdes, &offs, &n_fdes);
	ck_assert_uint_gt(n_fdes, 0);
	ck_assert_uint_eq(mod->stats.fdes, n_fdes);
	for (size_t i = 0; i < n_fdes; i++) {
		uint64_t s = fdes[i].start + mod->bias, e = fdes[i].end + mod->bias;
		const struct func *f;
		bool plt_fde = false;

		for (size_t k = 0; k < n_plt; k++)
			plt_fde |=
			    range_overlaps(fdes[i].start, fdes[i].end, plt[k].start, plt[k].end);
		if (plt_fde) {
			in_plt++;
			continue;
		}
		f = module_find_func(mod, s);
		ck_assert_msg(f, "%s: FDE 0x%" PRIx64 "..0x%" PRIx64 " has no function", file,
			      fdes[i].start, fdes[i].end);
		ck_assert(f->flags & FUNC_FROM_FDE || f->start != s);
		if (!(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_DYNSYM)))
			ck_assert_msg(f->start == s && f->end == e,
				      "%s: FDE 0x%" PRIx64 "..0x%" PRIx64 " gave other bounds",
				      file, fdes[i].start, fdes[i].end);
		else if (f->start != s)
			ck_assert_msg(f->start < s && s < f->end,
				      "%s: FDE at 0x%" PRIx64 " misplaced", file, fdes[i].start);
	}
	ck_assert_uint_eq(mod->stats.fdes_skipped, in_plt);

	/* The section the module kept, and each function's FDE in it. */
	ck_assert_uint_eq(readelf_sections(file, eh_frame_name, &eh_frame, 1), 1);
	ck_assert_ptr_nonnull(mod->eh_frame);
	ck_assert_uint_eq(mod->eh_frame_addr, eh_frame.start + mod->bias);
	ck_assert_uint_eq(mod->eh_frame_size, eh_frame.end - eh_frame.start);
	for (size_t i = 0; i < mod->n_funcs; i++) {
		const struct func *f = &mod->funcs[i];
		size_t lo = 0, hi = n_fdes;

		if (!(f->flags & FUNC_FROM_FDE)) {
			ck_assert_msg(f->fde_off == FUNC_NO_FDE,
				      "%s: 0x%" PRIx64 " has an FDE offset but no FDE", file,
				      f->start - mod->bias);
			continue;
		}
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (offs[mid] < f->fde_off)
				lo = mid + 1;
			else
				hi = mid;
		}
		ck_assert_msg(lo < n_fdes && offs[lo] == f->fde_off,
			      "%s: 0x%" PRIx64 ": no FDE at offset 0x%" PRIx64, file,
			      f->start - mod->bias, f->fde_off);
		ck_assert_msg(fdes[lo].start + mod->bias == f->start,
			      "%s: 0x%" PRIx64 ": the FDE at 0x%" PRIx64 " starts at 0x%" PRIx64,
			      file, f->start - mod->bias, f->fde_off, fdes[lo].start);
		with_fde++;
	}
	ck_assert_uint_gt(with_fde, 0);
	free(fdes);
	free(offs);
}

static const struct module *module_at(const struct module_set *set, uint64_t addr)
{
	const struct module *mod = module_set_find(set, addr);

	ck_assert_msg(mod, "no module holds 0x%" PRIx64, addr);
	return mod;
}

/* ---- this process ---- */

static int note_build_id_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	char *hex = data;

	(void)size;
	if (info->dlpi_name && info->dlpi_name[0])
		return 0; /* the main program has the empty name */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr),
			   *end = p + ph->p_memsz;

		if (ph->p_type != PT_NOTE)
			continue;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const unsigned char *desc =
			    (const unsigned char *)p + sizeof(*nh) + ALIGN_UP(nh->n_namesz, 4);

			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    !memcmp(p + sizeof(*nh), "GNU", 4)) {
				for (unsigned k = 0; k < nh->n_descsz; k++)
					sprintf(hex + 2 * k, "%02x", desc[k]);
				return 1;
			}
			p = (const char *)desc + ALIGN_UP(nh->n_descsz, 4);
		}
	}
	return 0;
}

START_TEST(test_self)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	struct esyms syms;
	const struct module *mod, *m2;
	const struct func *f;
	char exe[4096], hex[256] = "";
	ssize_t n;
	uint64_t outer = addr_of((void *)test_funcs_outer);

	ck_assert_int_eq(funcs_discover(getpid(), &set), 0);
	check_set(set);
	mod = module_at(set, addr_of((void *)test_funcs_global_probe));

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	ck_assert_str_eq(mod->path, exe);
	ck_assert(mod->via_map_files);
	ck_assert(!mod->deleted);
	ck_assert_uint_eq(mod->elf_type, ET_DYN);
	ck_assert_uint_ne(mod->bias, 0);
	ck_assert_uint_gt(mod->stats.symtab_funcs, 0);
	ck_assert_uint_gt(mod->n_plt, 0);

	/* The build-id as the loader mapped it. */
	dl_iterate_phdr(note_build_id_cb, hex);
	ck_assert_str_ne(hex, "");
	ck_assert_str_eq(mod->build_id_hex, hex);
	ck_assert_ptr_eq(module_set_find_build_id(set, hex), mod);

	/* Known bounds without any tool. */
	f = module_find_func(mod, addr_of((void *)test_funcs_asm_global) + 10);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of((void *)test_funcs_asm_global));
	ck_assert_uint_eq(f->end, f->start + 48);
	ck_assert_str_eq(f->name, "test_funcs_asm_global");
	ck_assert_uint_eq(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_FDE | FUNC_GLOBAL | FUNC_NESTED),
			  FUNC_FROM_SYMTAB | FUNC_FROM_FDE | FUNC_GLOBAL);

	f = module_find_func(mod, addr_of((void *)test_funcs_asm_local_ptr));
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of((void *)test_funcs_asm_local_ptr));
	ck_assert_uint_eq(f->end, f->start + 24);
	ck_assert_str_eq(f->name, "test_funcs_asm_local");
	ck_assert(!(f->flags & FUNC_GLOBAL));
	ck_assert_ptr_eq(module_find_func_by_name(mod, "test_funcs_asm_local"), f);

	/* Nesting: the inner entry point, and the outer function around it on both sides. */
	ck_assert_uint_eq(addr_of((void *)test_funcs_inner), outer + 16);
	f = module_find_func(mod, outer + 20);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(f->name, "test_funcs_inner");
	ck_assert_uint_eq(f->start, outer + 16);
	ck_assert_uint_eq(f->end, outer + 32);
	ck_assert(f->flags & FUNC_NESTED);
	ck_assert(!(f->flags & FUNC_FROM_FDE));
	for (uint64_t a = outer; a < outer + 64; a++) {
		f = module_find_func(mod, a);
		ck_assert_ptr_nonnull(f);
		ck_assert_str_eq(f->name, a >= outer + 16 && a < outer + 32 ? "test_funcs_inner"
									    : "test_funcs_outer");
	}
	f = module_find_func(mod, outer);
	ck_assert_uint_eq(f->end, outer + 64);
	ck_assert(!(f->flags & FUNC_NESTED));

	/* An FDE inside a symbol's function is part of it, not a function of its own. */
	f = module_find_func(mod, addr_of((void *)test_funcs_two_fdes) + 40);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of((void *)test_funcs_two_fdes));
	ck_assert_uint_eq(f->end, f->start + 64);
	ck_assert_str_eq(f->name, "test_funcs_two_fdes");

	/* A symbol without a size names the function its FDE bounds. */
	f = module_find_func(mod, addr_of((void *)test_funcs_sizeless) + 15);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of((void *)test_funcs_sizeless));
	ck_assert_uint_eq(f->end, f->start + 16);
	ck_assert_str_eq(f->name, "test_funcs_sizeless");
	ck_assert_uint_eq(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_FDE),
			  FUNC_FROM_SYMTAB | FUNC_FROM_FDE);
	ck_assert_uint_eq(mod->stats.fde_funcs,
			  1); /* only it: every other FDE has a sized symbol */

	/* Compiled functions against readelf, and the bias against &func. */
	readelf_funcs(exe, false, &syms);
	for (size_t i = 0; i < 2; i++) {
		const char *name = i ? "test_funcs_static_probe" : "test_funcs_global_probe";
		uint64_t a =
		    addr_of(i ? (void *)test_funcs_static_probe : (void *)test_funcs_global_probe);
		const struct esym *e = esym_by_name(&syms, name);

		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(mod->bias, a - e->addr);
		f = module_find_func_by_name(mod, name);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->start, a);
		ck_assert_uint_eq(f->end, a + e->size);
		ck_assert_str_eq(f->name, name);
		ck_assert_ptr_eq(module_set_find_func(set, a + e->size - 1, &m2), f);
		ck_assert_ptr_eq(m2, mod);
	}
	check_symbols(mod, &syms);
	esyms_free(&syms);
	check_fdes(mod, exe);

	/* The .eh_frame kept is the one the loader mapped; an entry point without CFI has no FDE.
	 */
	ck_assert_mem_eq(mod->eh_frame, (const void *)(uintptr_t)mod->eh_frame_addr,
			 mod->eh_frame_size);
	ck_assert_uint_ne(module_find_func_by_name(mod, "test_funcs_asm_global")->fde_off,
			  FUNC_NO_FDE);
	ck_assert_uint_eq(module_find_func_by_name(mod, "test_funcs_inner")->fde_off, FUNC_NO_FDE);

	/* Outside every function. */
	ck_assert_ptr_null(module_find_func(mod, 0));
	ck_assert_ptr_null(module_set_find(set, 0));
	ck_assert_ptr_null(module_set_find_func(set, 0, NULL));
}
END_TEST

static int libc_path_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (info->dlpi_name && strstr(info->dlpi_name, "/libc.so.")) {
		snprintf(data, 4096, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

START_TEST(test_libc)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	/* libc's own symbols, not a sanitizer's interceptors of the same name. */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	void *qsort_p = libc ? dlsym(libc, "qsort") : NULL;
	void *getpid_p = libc ? dlsym(libc, "getpid") : NULL;
	void *memcpy_p = libc ? dlsym(libc, "memcpy") : NULL;
	struct link_map *lm = NULL;
	const ElfW(Sym) *sym = NULL;
	const struct module *mod;
	const struct func *f, *resolver;
	struct esyms syms;
	Dl_info info;
	char path[4096] = "", hex[128];
	size_t named = 0;

	ck_assert_ptr_nonnull(qsort_p);
	ck_assert_ptr_nonnull(getpid_p);
	ck_assert_ptr_nonnull(memcpy_p);
	ck_assert_int_eq(funcs_discover(getpid(), &set), 0);
	mod = module_at(set, addr_of(qsort_p));
	dl_iterate_phdr(libc_path_cb, path);
	ck_assert_str_ne(path, "");

	/* The dynamic linker's own view: bias (l_addr) and the symbol's size. */
	ck_assert_int_ne(dladdr1(qsort_p, &info, (void **)&lm, RTLD_DL_LINKMAP), 0);
	ck_assert_uint_eq(mod->bias, lm->l_addr);
	ck_assert_int_ne(dladdr1(qsort_p, &info, (void **)&sym, RTLD_DL_SYMENT), 0);
	f = module_find_func(mod, addr_of(qsort_p));
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of(qsort_p));
	ck_assert_uint_eq(f->end, addr_of(qsort_p) + sym->st_size);
	ck_assert_str_eq(f->name, "qsort");
	ck_assert(f->flags & FUNC_FROM_DYNSYM);
	ck_assert_ptr_eq(module_find_func_by_name(mod, "qsort"), f);

	/* getpid and __getpid are one function; the name without underscores wins. */
	ck_assert_int_ne(dladdr1(getpid_p, &info, (void **)&sym, RTLD_DL_SYMENT), 0);
	f = module_find_func(mod, addr_of(getpid_p));
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, addr_of(getpid_p));
	ck_assert_uint_eq(f->end, addr_of(getpid_p) + sym->st_size);
	ck_assert_str_eq(f->name, "getpid");
	ck_assert_ptr_eq(module_find_func_by_name(mod, "__getpid"), f);

	/*
	 * memcpy is an IFUNC: the symbol is the resolver, and what dlsym gives
	 * is the implementation the resolver chose, which only an FDE bounds.
	 */
	resolver = module_find_func_by_name(mod, "memcpy");
	ck_assert_ptr_nonnull(resolver);
	ck_assert(resolver->flags & FUNC_IFUNC);
	f = module_find_func(mod, addr_of(memcpy_p));
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_ne(f, resolver);
	ck_assert_uint_eq(f->start, addr_of(memcpy_p));
	ck_assert(f->flags & FUNC_FROM_FDE);

	readelf_build_id(path, hex, sizeof(hex));
	ck_assert_str_eq(mod->build_id_hex, hex);
	readelf_funcs(path, true, &syms);
	check_symbols(mod, &syms);
	/* The default version's memcpy, not memcpy@GLIBC_2.2.5. */
	for (size_t i = 0; i < syms.n; i++)
		if (!strcmp(syms.v[i].name, "memcpy") && !syms.v[i].hidden)
			ck_assert_uint_eq(resolver->start, syms.v[i].addr + mod->bias);
	esyms_free(&syms);
	check_fdes(mod, path);
	ck_assert_uint_gt(check_got(mod, path), 0);
	ck_assert_uint_gt(mod->n_funcs, 1000);
	for (size_t i = 0; i < mod->n_funcs; i++)
		named += mod->funcs[i].name != NULL;
	fprintf(stderr,
		"funcs: libc: %zu functions (%zu named, %zu from FDEs only), %zu names, "
		"%zu .dynsym function symbols, %zu FDEs\n",
		mod->n_funcs, named, mod->stats.fde_funcs, mod->n_names, mod->stats.dynsym_funcs,
		mod->stats.fdes);
	dlclose(libc);
}
END_TEST

START_TEST(test_vdso)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	uint64_t base = getauxval(AT_SYSINFO_EHDR);
	const struct module *mod;
	const struct func *f;

	if (!base) {
		fprintf(stderr, "funcs: skipped test_vdso: no vDSO in this process\n");
		return;
	}
	ck_assert_int_eq(funcs_discover(getpid(), &set), 0);
	mod = module_at(set, base);
	ck_assert_str_eq(mod->path, "[vdso]");
	ck_assert(mod->from_memory);
	ck_assert(!mod->via_map_files);
	/* The image starts at ELF address 0, at the address the kernel passes in the aux vector. */
	ck_assert_uint_eq(mod->bias, base);
	ck_assert_uint_gt(mod->build_id_len, 0);
	f = module_find_func_by_name(mod, "__vdso_clock_gettime");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_eq(module_find_func_by_name(mod, "clock_gettime"), f);
	ck_assert_uint_ge(f->start, mod->text[0].start);
	ck_assert_uint_le(f->end, mod->text[mod->n_text - 1].end);
	ck_assert(f->flags & FUNC_FROM_FDE);
}
END_TEST

/* ---- children built from funcs_child.c ---- */

/* The probes of funcs_child, with sizes from the file that has the symbols. */
static void check_child_probes(const struct module_set *set, const struct child *c,
			       const char *symbols_file, bool named, const struct module **ret_mod)
{
	static const char *const probes[] = {"funcs_child_static", "funcs_child_global",
					     "funcs_child_asm", "main"};
	struct esyms syms;
	const struct module *mod = module_at(set, child_probe(c, "main"));

	readelf_funcs(symbols_file, false, &syms);
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		const struct esym *e = esym_by_name(&syms, probes[i]);
		uint64_t a = child_probe(c, probes[i]);
		const struct func *f = module_find_func(mod, a);

		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(a - mod->bias, e->addr);
		ck_assert_msg(f, "%s not found", probes[i]);
		ck_assert_uint_eq(f->start, a);
		ck_assert_uint_eq(f->end, a + e->size);
		ck_assert(f->flags & FUNC_FROM_FDE);
		if (named) {
			ck_assert_str_eq(f->name, probes[i]);
			ck_assert(f->flags & FUNC_FROM_SYMTAB);
		} else {
			ck_assert_ptr_null(f->name);
			ck_assert_uint_eq(f->flags & (FUNC_FROM_SYMTAB | FUNC_FROM_DYNSYM), 0);
		}
	}
	ck_assert_uint_eq(child_probe(c, "funcs_child_asm") + 32,
			  module_find_func(mod, child_probe(c, "funcs_child_asm"))->end);
	esyms_free(&syms);
	*ret_mod = mod;
}

START_TEST(test_stripped_child)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	char *const argv[] = {FUNCS_CHILD_STRIPPED, NULL};
	const struct module *mod;
	struct child c;
	char hex[128];

	child_start(&c, argv, NULL);
	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	check_set(set);
	check_child_probes(set, &c, FUNCS_CHILD, false, &mod);
	ck_assert_str_eq(mod->path, FUNCS_CHILD_STRIPPED);
	ck_assert_uint_eq(mod->elf_type, ET_DYN);
	ck_assert_uint_eq(mod->stats.symtab_funcs, 0);
	ck_assert_uint_eq(mod->n_names, 0);
	/* strip keeps the note: a stripped file and its original share the key. */
	readelf_build_id(FUNCS_CHILD, hex, sizeof(hex));
	ck_assert_str_eq(mod->build_id_hex, hex);
	check_fdes(mod, FUNCS_CHILD_STRIPPED);
	/* The child is discovered, not disturbed. */
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

START_TEST(test_nopie_child)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	char *const argv[] = {FUNCS_CHILD_NOPIE, NULL};
	const struct module *mod;
	struct child c;
	struct esyms syms;

	child_start(&c, argv, NULL);
	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	check_set(set);
	check_child_probes(set, &c, FUNCS_CHILD_NOPIE, true, &mod);
	ck_assert_uint_eq(mod->elf_type, ET_EXEC);
	ck_assert_uint_eq(mod->bias, 0);
	readelf_funcs(FUNCS_CHILD_NOPIE, false, &syms);
	check_symbols(mod, &syms);
	esyms_free(&syms);
	check_fdes(mod, FUNCS_CHILD_NOPIE);
	ck_assert_uint_gt(check_got(mod, FUNCS_CHILD_NOPIE), 0);
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

/* Copies src to a new executable file in the temporary folder; its name goes to path. */
static void copy_executable(const char *src, char *path, size_t len)
{
	char buf[65536];
	int in, out;
	ssize_t n;

	snprintf(path, len, "%s/optd-funcs-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	out = mkostemp(path, O_CLOEXEC);
	ck_assert_int_ge(out, 0);
	in = open(src, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(in, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(fchmod(out, 0755), 0);
	close(in);
	close(out);
}

START_TEST(test_deleted_child)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	const struct module *mod;
	char path[4096], hex[128];
	struct child c;

	copy_executable(FUNCS_CHILD, path, sizeof(path));
	{
		char *const argv[] = {path, NULL};

		child_start(&c, argv, NULL);
	}
	ck_assert_int_eq(unlink(path), 0);

	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	check_set(set);
	check_child_probes(set, &c, FUNCS_CHILD, true, &mod);
	ck_assert_str_eq(mod->path, path);
	ck_assert(mod->deleted);
	ck_assert(mod->via_map_files);
	readelf_build_id(FUNCS_CHILD, hex, sizeof(hex));
	ck_assert_str_eq(mod->build_id_hex, hex);
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

/* Another file now at the path: the mapped one is still what is read. */
START_TEST(test_replaced_child)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	const struct module *mod;
	char path[4096], other[4096], hex[128], other_hex[128];
	struct child c;

	copy_executable(FUNCS_CHILD, path, sizeof(path));
	copy_executable(FUNCS_CHILD_NOPIE, other, sizeof(other));
	{
		char *const argv[] = {path, NULL};

		child_start(&c, argv, NULL);
	}
	ck_assert_int_eq(rename(other, path), 0);

	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	check_child_probes(set, &c, FUNCS_CHILD, true, &mod);
	ck_assert(mod->deleted);
	readelf_build_id(FUNCS_CHILD, hex, sizeof(hex));
	readelf_build_id(FUNCS_CHILD_NOPIE, other_hex, sizeof(other_hex));
	ck_assert_str_ne(hex, other_hex);
	ck_assert_str_eq(mod->build_id_hex, hex);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

/* ---- Debian's own stripped binaries ---- */

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

START_TEST(test_python)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	char *const argv[] = {PYTHON, "-c",
			      "import sys; print('ready', flush=True); sys.stdin.read()", NULL};
	const struct module *mod = NULL;
	const struct func *f;
	const struct esym *e;
	struct esyms syms;
	struct child c;
	size_t total = 0;
	double best = 1e9;

	/* scripts/install-deps.sh installs it: its absence is a broken setup, not a skip. */
	ck_assert_msg(executable(PYTHON), "%s is not installed (scripts/install-deps.sh)", PYTHON);
	child_start(&c, argv, NULL);
	for (int run = 0; run < 5; run++) {
		struct timespec t0;
		double ms;

		module_set_free(TAKE_PTR(set));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
		ms = ms_since(&t0);
		if (ms < best)
			best = ms;
	}
	check_set(set);
	for (size_t i = 0; i < set->n; i++) {
		total += set->v[i]->n_funcs;
		if (!strcmp(set->v[i]->path, PYTHON))
			mod = set->v[i];
	}
	ck_assert_ptr_nonnull(mod);
	fprintf(
	    stderr,
	    "funcs: python3.11: %zu modules, %zu functions, discovery %.2f ms (best of 5); "
	    "python3.11 itself: %zu functions, %zu from .dynsym, %zu from FDEs only, %zu FDEs\n",
	    set->n, total, best, mod->n_funcs, mod->stats.dynsym_funcs, mod->stats.fde_funcs,
	    mod->stats.fdes);

	ck_assert_uint_eq(mod->elf_type, ET_EXEC);
	ck_assert_uint_eq(mod->bias, 0);
	ck_assert_uint_eq(mod->stats.symtab_funcs, 0);
	ck_assert_uint_gt(mod->n_funcs, 5000);
	ck_assert_uint_gt(mod->stats.fde_funcs, 1000);

	readelf_funcs(PYTHON, true, &syms);
	e = esym_by_name(&syms, "PyRun_SimpleStringFlags");
	ck_assert_ptr_nonnull(e);
	f = module_find_func_by_name(mod, "PyRun_SimpleStringFlags");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, e->addr + mod->bias);
	ck_assert_uint_eq(f->end, e->addr + e->size + mod->bias);
	check_symbols(mod, &syms);
	esyms_free(&syms);
	check_fdes(mod, PYTHON);
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

START_TEST(test_sqlite3)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	_cleanup_(maps_freep) struct maps *m = NULL;
	char *const argv[] = {SQLITE, NULL};
	const struct module *mod = NULL, *exe = NULL;
	const struct func *f;
	const struct esym *e;
	struct esyms syms;
	struct child c;
	uint64_t load = 0;

	ck_assert_msg(executable(SQLITE), "%s is not installed (scripts/install-deps.sh)", SQLITE);
	/* .system runs a shell that writes to the pipe at once, past sqlite3's stdio buffer. */
	child_start(&c, argv, ".system echo ready\n");
	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	check_set(set);
	for (size_t i = 0; i < set->n; i++) {
		if (strstr(set->v[i]->path, "/libsqlite3.so"))
			mod = set->v[i];
		if (!strcmp(set->v[i]->path, SQLITE))
			exe = set->v[i];
	}
	ck_assert_ptr_nonnull(exe);
	ck_assert_uint_eq(exe->elf_type, ET_DYN);
	ck_assert_uint_eq(exe->stats.symtab_funcs, 0);
	ck_assert_uint_gt(exe->n_funcs, 50);
	if (!mod) {
		fprintf(stderr,
			"funcs: test_sqlite3: sqlite3 is linked statically, no library to check\n");
		ck_assert_int_eq(child_stop(&c), 0);
		return;
	}

	/* The library's first page (offset 0) is mapped at its load address: ELF address 0. */
	ck_assert_int_eq(maps_read(c.pid, &m), 0);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].path && !strcmp(m->v[i].path, mod->path) && m->v[i].offset == 0) {
			load = m->v[i].start;
			break;
		}
	ck_assert_uint_eq(mod->bias, load);

	readelf_funcs(mod->path, true, &syms);
	e = esym_by_name(&syms, "sqlite3_open");
	ck_assert_ptr_nonnull(e);
	f = module_find_func_by_name(mod, "sqlite3_open");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->start, e->addr + load);
	ck_assert_uint_eq(f->end, e->addr + e->size + load);
	ck_assert_ptr_eq(module_set_find_func(set, e->addr + load + 1, NULL), f);
	check_symbols(mod, &syms);
	esyms_free(&syms);
	check_fdes(mod, mod->path);
	fprintf(stderr,
		"funcs: sqlite3: %zu modules; libsqlite3: %zu functions, %zu from FDEs only\n",
		set->n, mod->n_funcs, mod->stats.fde_funcs);
	ck_assert_int_eq(child_stop(&c), 0);
}
END_TEST

/* ---- what cannot be read, and bad arguments ---- */

START_TEST(test_skipped)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	char path[4096];
	void *anon, *text;
	bool saw_anon = false, saw_text = false;
	int fd;

	anon = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(anon, MAP_FAILED);
	/* A file that is not ELF, mapped executable. */
	snprintf(path, sizeof(path), "/tmp/optd-funcs-text-XXXXXX");
	fd = mkostemp(path, O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "not an ELF file\n", 16), 16);
	text = mmap(NULL, 16, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	ck_assert_ptr_ne(text, MAP_FAILED);
	close(fd);

	ck_assert_int_eq(funcs_discover(getpid(), &set), 0);
	for (size_t i = 0; i < set->n_skipped; i++) {
		const struct module_skip *s = &set->skipped[i];

		if (s->start == addr_of(anon)) {
			saw_anon = true;
			ck_assert_ptr_null(s->path);
			ck_assert_int_eq(s->err, -ENODATA);
		}
		if (s->start == addr_of(text)) {
			saw_text = true;
			ck_assert_str_eq(s->path, path);
			ck_assert_int_eq(s->err, -ENOEXEC);
		}
	}
	ck_assert(saw_anon);
	ck_assert(saw_text);
	ck_assert_ptr_null(module_set_find(set, addr_of(anon)));
	unlink(path);
}
END_TEST

START_TEST(test_errors)
{
	_cleanup_(maps_freep) struct maps *m = NULL;
	struct module_set *set = NULL;
	struct module *mod = NULL;
	const struct maps_entry *stack;
	pid_t pid;
	int status;

	ck_assert_int_eq(funcs_discover(0, &set), -EINVAL);
	ck_assert_int_eq(funcs_discover(getpid(), NULL), -EINVAL);

	/* A reaped child is gone. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(funcs_discover(pid, &set), -ESRCH);
	ck_assert_ptr_null(set);

	/* Only executable file or vDSO mappings make modules. */
	ck_assert_int_eq(maps_read(getpid(), &m), 0);
	stack = maps_find_kind(m, MAPS_STACK);
	ck_assert_ptr_nonnull(stack);
	ck_assert_int_eq(module_open(getpid(), m, stack, &mod), -EINVAL);
	ck_assert_ptr_null(mod);

	module_free(NULL);
	module_set_free(NULL);
	ck_assert_ptr_null(module_find_func(NULL, 0x1000));
	ck_assert_ptr_null(module_find_func_by_name(NULL, "main"));
	ck_assert_ptr_null(module_set_find(NULL, 0x1000));
	ck_assert_ptr_null(module_set_find_build_id(NULL, "00"));
}
END_TEST

/*
 * A process that is gone by the time its files are opened: first a zombie
 * (its /proc/PID is there, its address space is not), then reaped.
 */
START_TEST(test_gone)
{
	_cleanup_(maps_freep) struct maps *m = NULL;
	char *const argv[] = {FUNCS_CHILD, NULL};
	struct module_set *set = NULL;
	struct module *mod = NULL;
	const struct maps_entry *e, *vdso;
	struct child c;
	siginfo_t si;
	int status;

	child_start(&c, argv, NULL);
	ck_assert_int_eq(maps_read(c.pid, &m), 0);
	e = maps_find(m, child_probe(&c, "main"));
	ck_assert_ptr_nonnull(e);
	vdso = maps_find_kind(m, MAPS_VDSO);
	ck_assert_int_eq(module_open(c.pid, m, e, &mod), 0);
	module_free(TAKE_PTR(mod));
	if (vdso) {
		ck_assert_int_eq(module_open(c.pid, m, vdso, &mod), 0);
		module_free(TAKE_PTR(mod));
	}

	close(c.in);
	fclose(c.out);
	ck_assert_int_eq(waitid(P_PID, (id_t)c.pid, &si, WEXITED | WNOWAIT), 0);
	for (int reaped = 0; reaped < 2; reaped++) {
		ck_assert_int_eq(module_open(c.pid, m, e, &mod), -ESRCH);
		ck_assert_ptr_null(mod);
		if (vdso)
			ck_assert_int_eq(module_open(c.pid, m, vdso, &mod), -ESRCH);
		ck_assert_int_eq(funcs_discover(c.pid, &set), -ESRCH);
		ck_assert_ptr_null(set);
		if (!reaped)
			ck_assert_int_eq(waitpid(c.pid, &status, 0), c.pid);
	}
}
END_TEST

/*
 * Without CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN, /proc/PID/map_files is
 * closed: files are opened through /proc/PID/root/PATH, and only while the
 * inode there is the mapped one. The test drops the two capabilities from
 * its effective set (Check runs each test in a process of its own).
 */
START_TEST(test_without_map_files)
{
	_cleanup_(module_set_freep) struct module_set *set = NULL, *set2 = NULL;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2], saved[2];
	const struct module *mod;
	const struct module_skip *skip = NULL;
	char mf[128], path[4096], other[4096];
	struct child c, c2;
	char hex[128];

	ck_assert_int_eq(syscall(SYS_capget, &hdr, data), 0);
	memcpy(saved, data, sizeof(saved));
	data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
	data[CAP_CHECKPOINT_RESTORE / 32].effective &= ~(1u << (CAP_CHECKPOINT_RESTORE % 32));
	ck_assert_int_eq(syscall(SYS_capset, &hdr, data), 0);

	copy_executable(FUNCS_CHILD, path, sizeof(path));
	copy_executable(FUNCS_CHILD_NOPIE, other, sizeof(other));
	{
		char *const argv[] = {path, NULL};
		char *const argv2[] = {FUNCS_CHILD_STRIPPED, NULL};

		child_start(&c, argv, NULL);
		child_start(&c2, argv2, NULL);
	}
	/* The kernel says no to map_files now, or this test tests nothing. */
	{
		_cleanup_(maps_freep) struct maps *m = NULL;
		const struct maps_entry *e;
		int fd;

		ck_assert_int_eq(maps_read(c2.pid, &m), 0);
		e = maps_find(m, child_probe(&c2, "main"));
		snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)c2.pid,
			 e->start, e->end);
		fd = open(mf, O_RDONLY | O_CLOEXEC);
		ck_assert_int_lt(fd, 0);
		ck_assert_int_eq(errno, EPERM);
	}

	ck_assert_int_eq(funcs_discover(c2.pid, &set2), 0);
	check_set(set2);
	check_child_probes(set2, &c2, FUNCS_CHILD, false, &mod);
	ck_assert(!mod->via_map_files);
	readelf_build_id(FUNCS_CHILD, hex, sizeof(hex));
	ck_assert_str_eq(mod->build_id_hex, hex);
	ck_assert_int_eq(child_stop(&c2), 0);

	/* Replaced: the path holds another file, which must not be read as the mapped one. */
	ck_assert_int_eq(rename(other, path), 0);
	ck_assert_int_eq(funcs_discover(c.pid, &set), 0);
	ck_assert_ptr_null(module_set_find(set, child_probe(&c, "main")));
	for (size_t i = 0; i < set->n_skipped; i++)
		if (set->skipped[i].start <= child_probe(&c, "main") &&
		    child_probe(&c, "main") < set->skipped[i].end)
			skip = &set->skipped[i];
	ck_assert_ptr_nonnull(skip);
	ck_assert_int_eq(skip->err, -ESTALE);
	ck_assert_str_eq(skip->path, path);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(child_stop(&c), 0);
	/* For runs without fork (CK_FORK=no), where the next test shares this process. */
	ck_assert_int_eq(syscall(SYS_capset, &hdr, saved), 0);
}
END_TEST

/* module_open() on one mapping gathers the same module funcs_discover() does. */
START_TEST(test_module_open)
{
	_cleanup_(maps_freep) struct maps *m = NULL;
	_cleanup_(module_freep) struct module *mod = NULL;
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	const struct module *same;
	const struct maps_entry *e;

	ck_assert_int_eq(maps_read(getpid(), &m), 0);
	e = maps_find(m, addr_of((void *)test_funcs_global_probe));
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(module_open(getpid(), m, e, &mod), 0);
	check_module(mod);
	ck_assert_int_eq(funcs_discover(getpid(), &set), 0);
	same = module_at(set, e->start);
	ck_assert_uint_eq(mod->bias, same->bias);
	ck_assert_uint_eq(mod->n_funcs, same->n_funcs);
	ck_assert_uint_eq(mod->n_names, same->n_names);
	ck_assert_str_eq(mod->build_id_hex, same->build_id_hex);
	for (size_t i = 0; i < mod->n_funcs; i++) {
		ck_assert_uint_eq(mod->funcs[i].start, same->funcs[i].start);
		ck_assert_uint_eq(mod->funcs[i].end, same->funcs[i].end);
		ck_assert_uint_eq(mod->funcs[i].flags, same->funcs[i].flags);
	}
}
END_TEST

/*
 * A program that changes the protection of part of its own text (as JITs and
 * hot-patchers do) splits the mapping in /proc/PID/maps: the pieces map the
 * same segment at other file offsets, and must all join the one module.
 */
START_TEST(test_split_text)
{
	_cleanup_(module_set_freep) struct module_set *before = NULL, *after = NULL;
	_cleanup_(maps_freep) struct maps *m = NULL;
	const struct maps_entry *e;
	const struct module *mod, *mod2;
	uint64_t page;
	size_t in_page = 0;

	ck_assert_int_eq(funcs_discover(getpid(), &before), 0);
	mod = module_at(before, addr_of((void *)test_funcs_global_probe));
	ck_assert_int_eq(maps_read(getpid(), &m), 0);
	e = maps_find(m, addr_of((void *)test_funcs_global_probe));
	ck_assert_uint_ge(e->end - e->start, 3 * 4096);
	/* A page that neither starts nor ends the mapping, away from this function. */
	page = ALIGN_DOWN(e->start + (e->end - e->start) / 2, 4096);
	if (page <= addr_of((void *)test_split_text_fn) &&
	    addr_of((void *)test_split_text_fn) < page + 4096)
		page += 4096;
	ck_assert_uint_lt(page + 4096, e->end);
	ck_assert_int_eq(
	    mprotect((void *)(uintptr_t)page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC), 0);

	ck_assert_int_eq(funcs_discover(getpid(), &after), 0);
	ck_assert_int_eq(mprotect((void *)(uintptr_t)page, 4096, PROT_READ | PROT_EXEC), 0);
	check_set(after);
	ck_assert_uint_eq(after->n, before->n);
	mod2 = module_at(after, page + 4096);
	ck_assert_ptr_eq(module_at(after, page), mod2);
	ck_assert_ptr_eq(module_at(after, e->start), mod2);
	ck_assert_uint_eq(mod2->n_text, mod->n_text + 2);
	ck_assert_uint_eq(mod2->bias, mod->bias);
	ck_assert_uint_eq(mod2->n_funcs, mod->n_funcs);
	for (size_t i = 0; i < mod->n_funcs; i++) {
		ck_assert_uint_eq(mod2->funcs[i].start, mod->funcs[i].start);
		ck_assert_uint_eq(mod2->funcs[i].end, mod->funcs[i].end);
		in_page += mod->funcs[i].start >= page;
	}
	ck_assert_uint_gt(in_page, 0);
}
END_TEST

static Suite *funcs_suite(void)
{
	Suite *s = suite_create("funcs");
	TCase *self = tcase_create("self");
	TCase *children = tcase_create("children");
	TCase *debian = tcase_create("debian");

	tcase_add_test(self, test_self);
	tcase_add_test(self, test_libc);
	tcase_add_test(self, test_vdso);
	tcase_add_test(self, test_skipped);
	tcase_add_test(self, test_errors);
	tcase_add_test(self, test_module_open);
	tcase_add_test(self, test_split_text);
	tcase_set_timeout(self, 60);
	suite_add_tcase(s, self);

	tcase_add_test(children, test_stripped_child);
	tcase_add_test(children, test_nopie_child);
	tcase_add_test(children, test_deleted_child);
	tcase_add_test(children, test_replaced_child);
	tcase_add_test(children, test_gone);
	tcase_add_test(children, test_without_map_files);
	tcase_set_timeout(children, 60);
	suite_add_tcase(s, children);

	tcase_add_test(debian, test_python);
	tcase_add_test(debian, test_sqlite3);
	tcase_set_timeout(debian, 120);
	suite_add_tcase(s, debian);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(funcs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
