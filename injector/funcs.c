/*
 * Function discovery (what and why: funcs.h).
 *
 * A module is built from one open Elf in three steps: the function symbols of
 * .symtab and .dynsym, grouped by start address (a group is one function and
 * its aliases); the FDEs of .eh_frame; then the merge, where an FDE only makes
 * a function when no sized symbol covers its start. Names are copied into one
 * pool, and the .eh_frame section into the module, so the Elf, its descriptor
 * and its mapping are released before module_open() returns: a set for a
 * process with hundreds of libraries holds no descriptors.
 */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ehenc.h"
#include "funcs.h"
#include "procstat.h"
#include "util.h"

/* The vDSO is two pages today; anything far larger is not a vDSO image. */
#define VDSO_MAX (1UL << 20)
/* A .gnu.version entry with this bit names a non-default version (memcpy@GLIBC_2.2.5). */
#define VERSYM_HIDDEN 0x8000

/* A function symbol while the module is built. */
struct sym {
	uint64_t start; /* run time */
	uint64_t size;
	const char *name; /* in the Elf's string table */
	uint32_t flags;	  /* FUNC_FROM_SYMTAB or FUNC_FROM_DYNSYM, FUNC_IFUNC, FUNC_GLOBAL */
	bool hidden;	  /* a non-default symbol version */
};

/* A name for the index while the module is built. */
struct name_ref {
	const char *name;
	size_t func;
	bool hidden;
};

/* An FDE while the module is built. */
struct fde {
	uint64_t start; /* run time */
	uint64_t end;
	uint64_t off; /* in .eh_frame */
};

struct module_text {
	uint64_t start;
	uint64_t end;
	struct module *mod;
};

struct build {
	Elf *elf;
	struct module *mod;
	uint8_t *exec_scn; /* by section index: 1 if SHF_EXECINSTR */
	size_t n_scn;
	struct sym *syms;
	size_t n_syms, cap_syms;
	struct fde *fdes;
	size_t n_fdes, cap_fdes;
	struct rangeset plt;
	struct func *funcs;
	size_t n_funcs, cap_funcs;
	struct module_got *got; /* names in the Elf's string tables */
	size_t n_got, cap_got;
};

/* Makes room for one more element of size bytes in *v. 0 or -ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	if (ncap > SIZE_MAX / size)
		return -ENOMEM;
	p = realloc(*v, ncap * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

/* qsort() wants a base that is not NULL even for no elements; an empty array here is NULL. */
static void sort(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(v, n, size, cmp);
}

/* ---- reading one module ---- */

/* True if ELF address a lies in an executable PT_LOAD segment. */
static bool in_exec_segment(const struct module *mod, uint64_t a)
{
	for (size_t i = 0; i < mod->n_segs; i++) {
		const struct module_segment *s = &mod->segs[i];

		if ((s->flags & PF_X) && a >= s->vaddr && a - s->vaddr < s->memsz)
			return true;
	}
	return false;
}

/* The versym data that belongs to the symbol table in section symtab_ndx, or NULL. */
static Elf_Data *versym_of(Elf *elf, size_t symtab_ndx)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;

		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_GNU_versym &&
		    sh.sh_link == symtab_ndx)
			return elf_getdata(scn, NULL);
	}
	return NULL;
}

static int read_symbols(struct build *b, Elf_Scn *scn, const GElf_Shdr *sh, uint32_t src)
{
	Elf_Data *data, *versym = NULL;
	size_t n;

	if (sh->sh_entsize == 0 || sh->sh_type == SHT_NOBITS)
		return 0;
	data = elf_getdata(scn, NULL);
	if (!data)
		return -EIO;
	if (src == FUNC_FROM_DYNSYM)
		versym = versym_of(b->elf, elf_ndxscn(scn));
	n = sh->sh_size / sh->sh_entsize;

	for (size_t i = 1; i < n; i++) {
		GElf_Sym s;
		GElf_Versym vs;
		unsigned type, bind;
		const char *name;
		struct sym *y;
		int r;

		if (!gelf_getsym(data, (int)i, &s))
			return -EIO;
		type = GELF_ST_TYPE(s.st_info);
		if (type != STT_FUNC && type != STT_GNU_IFUNC)
			continue;
		/* Imports (UNDEF) are not ours; ABS and XINDEX symbols are no code we can place. */
		if (s.st_shndx == SHN_UNDEF || s.st_shndx >= SHN_LORESERVE ||
		    s.st_shndx >= b->n_scn || !b->exec_scn[s.st_shndx])
			continue;
		name = elf_strptr(b->elf, sh->sh_link, s.st_name);
		if (!name || !name[0])
			continue;
		if (rangeset_contains(&b->plt, s.st_value + b->mod->bias))
			continue;

		r = grow((void **)&b->syms, &b->cap_syms, b->n_syms, sizeof(*b->syms));
		if (r < 0)
			return r;
		bind = GELF_ST_BIND(s.st_info);
		y = &b->syms[b->n_syms++];
		y->start = s.st_value + b->mod->bias;
		y->size = s.st_size;
		y->name = name;
		y->flags = src;
		if (type == STT_GNU_IFUNC)
			y->flags |= FUNC_IFUNC;
		if (bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE)
			y->flags |= FUNC_GLOBAL;
		y->hidden = versym && gelf_getversym(versym, (int)i, &vs) && (vs & VERSYM_HIDDEN);
		if (src == FUNC_FROM_SYMTAB)
			b->mod->stats.symtab_funcs++;
		else
			b->mod->stats.dynsym_funcs++;
	}
	return 0;
}

static int add_fde(struct build *b, uint64_t start, uint64_t end, uint64_t off)
{
	int r;

	r = grow((void **)&b->fdes, &b->cap_fdes, b->n_fdes, sizeof(*b->fdes));
	if (r < 0)
		return r;
	b->fdes[b->n_fdes++] = (struct fde){start, end, off};
	return 0;
}

/* The FDE encoding of the CIE at cie_off; CIEs are few, so the cache is a short list. */
struct cie_enc {
	Dwarf_Off off;
	uint8_t enc;
	bool ok;
};

static int read_fdes(struct build *b, Elf_Scn *scn, const GElf_Shdr *sh)
{
	const unsigned char *ident = (const unsigned char *)elf_getident(b->elf, NULL);
	_cleanup_free_ struct cie_enc *cies = NULL;
	size_t n_cies = 0, cap_cies = 0;
	Dwarf_Off off = 0, next;
	Elf_Data *data;
	bool keep;
	int r;

	if (sh->sh_type == SHT_NOBITS)
		return 0;
	data = elf_getdata(scn, NULL);
	if (!data || !ident)
		return -EIO;
	/* Kept for unwind info of copies (ehframe.c); an FDE of another one has no fde_off. */
	keep = !b->mod->eh_frame;
	if (keep && data->d_size) {
		b->mod->eh_frame = malloc(data->d_size);
		if (!b->mod->eh_frame)
			return -ENOMEM;
		memcpy(b->mod->eh_frame, data->d_buf, data->d_size);
		b->mod->eh_frame_size = data->d_size;
		b->mod->eh_frame_addr = sh->sh_addr + b->mod->bias;
	}

	for (; off != (Dwarf_Off)-1; off = next) {
		Dwarf_CFI_Entry ent;
		struct cie_enc *c = NULL;
		uint64_t start, end;

		r = dwarf_next_cfi(ident, data, true, off, &next, &ent);
		if (r > 0)
			break;
		if (r < 0)
			/* A malformed entry: nothing after it can be trusted. */
			break;
		if (dwarf_cfi_cie_p(&ent))
			continue;

		b->mod->stats.fdes++;
		for (size_t i = n_cies; i-- > 0;)
			if (cies[i].off == ent.fde.CIE_pointer) {
				c = &cies[i];
				break;
			}
		if (!c) {
			Dwarf_CFI_Entry cie;
			Dwarf_Off cie_next;
			struct ehenc_cie_aug aug;

			r = grow((void **)&cies, &cap_cies, n_cies, sizeof(*cies));
			if (r < 0)
				return r;
			c = &cies[n_cies++];
			c->off = ent.fde.CIE_pointer;
			c->ok = dwarf_next_cfi(ident, data, true, c->off, &cie_next, &cie) == 0 &&
				dwarf_cfi_cie_p(&cie) && ehenc_cie_aug(&cie.cie, &aug);
			c->enc = c->ok ? aug.fde_enc : DW_EH_PE_omit;
		}
		if (!c->ok ||
		    !ehenc_fde_range(c->enc, &ent.fde,
				     sh->sh_addr +
					 (uint64_t)(ent.fde.start - (const uint8_t *)data->d_buf),
				     &start, &end) ||
		    !in_exec_segment(b->mod, start) ||
		    rangeset_overlaps(&b->plt, start + b->mod->bias, end + b->mod->bias)) {
			b->mod->stats.fdes_skipped++;
			continue;
		}
		r = add_fde(b, start + b->mod->bias, end + b->mod->bias, keep ? off : FUNC_NO_FDE);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The JUMP_SLOT and GLOB_DAT relocations of a SHT_RELA section against the dynamic symbols. */
static int read_got_relocs(struct build *b, Elf_Scn *scn, const GElf_Shdr *sh)
{
	Elf_Scn *symscn = elf_getscn(b->elf, sh->sh_link);
	Elf_Data *data, *syms;
	GElf_Shdr symsh;
	size_t n;

	if (!symscn || !gelf_getshdr(symscn, &symsh) || symsh.sh_type != SHT_DYNSYM ||
	    !sh->sh_entsize)
		return 0;
	data = elf_getdata(scn, NULL);
	syms = elf_getdata(symscn, NULL);
	if (!data || !syms)
		return -EIO;
	n = sh->sh_size / sh->sh_entsize;
	for (size_t i = 0; i < n; i++) {
		GElf_Rela rela;
		GElf_Sym s;
		const char *name;
		unsigned type;
		int r;

		if (!gelf_getrela(data, (int)i, &rela))
			return -EIO;
		type = GELF_R_TYPE(rela.r_info);
		if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
			continue;
		if (!gelf_getsym(syms, (int)GELF_R_SYM(rela.r_info), &s))
			continue;
		name = elf_strptr(b->elf, symsh.sh_link, s.st_name);
		if (!name || !name[0])
			continue;
		r = grow((void **)&b->got, &b->cap_got, b->n_got, sizeof(*b->got));
		if (r < 0)
			return r;
		b->got[b->n_got++] = (struct module_got){rela.r_offset + b->mod->bias, name};
	}
	return 0;
}

static bool is_plt_name(const char *name)
{
	return !strcmp(name, ".plt") || !strcmp(name, ".plt.sec") || !strcmp(name, ".plt.got") ||
	       !strcmp(name, ".iplt");
}

/* Section facts first (executable sections, PLT), then symbols and FDEs that depend on them. */
static int read_sections(struct build *b)
{
	size_t shstrndx;
	Elf_Scn *scn = NULL;
	int r;

	if (elf_getshdrnum(b->elf, &b->n_scn) < 0 || elf_getshdrstrndx(b->elf, &shstrndx) < 0)
		return -EIO;
	if (b->n_scn == 0)
		return 0;
	b->exec_scn = calloc(b->n_scn, 1);
	if (!b->exec_scn)
		return -ENOMEM;

	while ((scn = elf_nextscn(b->elf, scn))) {
		GElf_Shdr sh;
		const char *name;
		size_t ndx = elf_ndxscn(scn);

		if (!gelf_getshdr(scn, &sh))
			return -EIO;
		if (ndx < b->n_scn && (sh.sh_flags & SHF_EXECINSTR))
			b->exec_scn[ndx] = 1;
		name = elf_strptr(b->elf, shstrndx, sh.sh_name);
		if (name && is_plt_name(name) && sh.sh_size) {
			r = rangeset_add(&b->plt, sh.sh_addr + b->mod->bias,
					 sh.sh_addr + sh.sh_size + b->mod->bias);
			if (r < 0)
				return r;
		}
	}

	while ((scn = elf_nextscn(b->elf, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			return -EIO;
		r = 0;
		if (sh.sh_type == SHT_SYMTAB)
			r = read_symbols(b, scn, &sh, FUNC_FROM_SYMTAB);
		else if (sh.sh_type == SHT_DYNSYM)
			r = read_symbols(b, scn, &sh, FUNC_FROM_DYNSYM);
		else if (sh.sh_type == SHT_RELA)
			r = read_got_relocs(b, scn, &sh);
		else if ((name = elf_strptr(b->elf, shstrndx, sh.sh_name)) &&
			 !strcmp(name, ".eh_frame"))
			r = read_fdes(b, scn, &sh);
		if (r < 0)
			return r;
	}
	return 0;
}

static unsigned leading_underscores(const char *s)
{
	unsigned n = 0;

	while (s[n] == '_')
		n++;
	return n;
}

/*
 * By start, then the name a person would look for first: a default version,
 * a sized symbol, .symtab, fewer leading underscores (memcpy before
 * __memcpy), global before local, shorter, then alphabetical so the choice
 * does not depend on symbol table order.
 */
static int sym_cmp(const void *pa, const void *pb)
{
	const struct sym *a = pa, *b = pb;
	unsigned ua, ub;
	size_t la, lb;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	if (a->hidden != b->hidden)
		return a->hidden ? 1 : -1;
	if ((a->size == 0) != (b->size == 0))
		return a->size == 0 ? 1 : -1;
	if ((a->flags & FUNC_FROM_SYMTAB) != (b->flags & FUNC_FROM_SYMTAB))
		return (a->flags & FUNC_FROM_SYMTAB) ? -1 : 1;
	ua = leading_underscores(a->name);
	ub = leading_underscores(b->name);
	if (ua != ub)
		return ua < ub ? -1 : 1;
	if ((a->flags & FUNC_GLOBAL) != (b->flags & FUNC_GLOBAL))
		return (a->flags & FUNC_GLOBAL) ? -1 : 1;
	la = strlen(a->name);
	lb = strlen(b->name);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int fde_start_cmp(const void *pa, const void *pb)
{
	const struct fde *a = pa, *b = pb;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	/* The longest first, so deduplication keeps it. */
	if (a->end != b->end)
		return a->end > b->end ? -1 : 1;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return 0;
}

static int func_start_cmp(const void *pa, const void *pb)
{
	const struct func *a = pa, *b = pb;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return 0;
}

static int name_ref_cmp(const void *pa, const void *pb)
{
	const struct name_ref *a = pa, *b = pb;
	int c = strcmp(a->name, b->name);

	if (c)
		return c;
	/* A lookup by name finds the default version first. */
	if (a->hidden != b->hidden)
		return a->hidden ? 1 : -1;
	if (a->func != b->func)
		return a->func < b->func ? -1 : 1;
	return 0;
}

static int add_func(struct build *b, uint64_t start, uint64_t end, const char *name, uint32_t flags)
{
	int r;

	r = grow((void **)&b->funcs, &b->cap_funcs, b->n_funcs, sizeof(*b->funcs));
	if (r < 0)
		return r;
	b->funcs[b->n_funcs++] = (struct func){start, end, name, flags, FUNC_NO_FDE};
	return 0;
}

/* Index in the sorted f[0..n) of the last function starting at or before addr, or n if none. */
static size_t last_at_or_before(const struct func *f, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : n;
}

/* The index of the function that starts exactly at addr, or n. */
static size_t find_start(const struct func *f, size_t n, uint64_t addr)
{
	size_t i = last_at_or_before(f, n, addr);

	return i < n && f[i].start == addr ? i : n;
}

/* Turns the symbol groups and FDEs into b->funcs, sorted, with FUNC_NESTED set. */
static int merge(struct build *b)
{
	_cleanup_free_ uint64_t *reach = NULL; /* reach[i]: the highest end among funcs[0..i] */
	size_t n_sym_funcs, n_fdes;
	uint64_t max_end = 0;
	int r;

	sort(b->syms, b->n_syms, sizeof(*b->syms), sym_cmp);
	for (size_t i = 0, j; i < b->n_syms; i = j) {
		uint64_t size = 0;
		uint32_t flags = 0;

		for (j = i; j < b->n_syms && b->syms[j].start == b->syms[i].start; j++) {
			if (b->syms[j].size > size)
				size = b->syms[j].size;
			flags |= b->syms[j].flags;
		}
		if (size == 0 || b->syms[i].start + size < b->syms[i].start)
			continue;
		r = add_func(b, b->syms[i].start, b->syms[i].start + size, b->syms[i].name, flags);
		if (r < 0)
			return r;
	}
	n_sym_funcs = b->n_funcs;

	reach = malloc((n_sym_funcs ? n_sym_funcs : 1) * sizeof(*reach));
	if (!reach)
		return -ENOMEM;
	for (size_t i = 0; i < n_sym_funcs; i++) {
		if (b->funcs[i].end > max_end)
			max_end = b->funcs[i].end;
		reach[i] = max_end;
	}

	sort(b->fdes, b->n_fdes, sizeof(*b->fdes), fde_start_cmp);
	n_fdes = 0;
	for (size_t i = 0; i < b->n_fdes; i++)
		if (n_fdes == 0 || b->fdes[n_fdes - 1].start != b->fdes[i].start)
			b->fdes[n_fdes++] = b->fdes[i];
	b->n_fdes = n_fdes;

	for (size_t i = 0; i < b->n_fdes; i++) {
		uint64_t s = b->fdes[i].start;
		size_t k = last_at_or_before(b->funcs, n_sym_funcs, s);
		const struct sym *y;
		size_t lo, hi;

		if (k < n_sym_funcs && b->funcs[k].start == s) {
			b->funcs[k].flags |= FUNC_FROM_FDE;
			b->funcs[k].fde_off = b->fdes[i].off;
			continue;
		}
		if (k < n_sym_funcs && reach[k] > s)
			continue; /* in a symbol's function: a second FDE of it */

		/* A size-less symbol here (an asm entry point) names the FDE's function. */
		lo = 0;
		hi = b->n_syms;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (b->syms[mid].start < s)
				lo = mid + 1;
			else
				hi = mid;
		}
		y = lo < b->n_syms && b->syms[lo].start == s ? &b->syms[lo] : NULL;
		r = add_func(b, s, b->fdes[i].end, y ? y->name : NULL, FUNC_FROM_FDE);
		if (r < 0)
			return r;
		b->funcs[b->n_funcs - 1].fde_off = b->fdes[i].off;
		for (size_t j = lo; y && j < b->n_syms && b->syms[j].start == s; j++)
			b->funcs[b->n_funcs - 1].flags |= b->syms[j].flags;
		b->mod->stats.fde_funcs++;
	}

	sort(b->funcs, b->n_funcs, sizeof(*b->funcs), func_start_cmp);
	max_end = 0;
	for (size_t i = 0; i < b->n_funcs; i++) {
		if (b->funcs[i].start < max_end)
			b->funcs[i].flags |= FUNC_NESTED;
		if (b->funcs[i].end > max_end)
			max_end = b->funcs[i].end;
	}
	return 0;
}

/*
 * The name index and the string pool: every symbol name at a function's start
 * goes into the index; names and function names then point into one pool.
 */
static int build_names(struct build *b)
{
	_cleanup_free_ struct name_ref *refs = NULL;
	_cleanup_free_ bool *pooled = NULL;
	struct module *mod = b->mod;
	size_t n = 0, pool_len = 0;
	char *pool;

	refs = malloc((b->n_syms ? b->n_syms : 1) * sizeof(*refs));
	pooled = calloc(b->n_funcs ? b->n_funcs : 1, sizeof(*pooled));
	if (!refs || !pooled)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_syms; i++) {
		size_t f = find_start(b->funcs, b->n_funcs, b->syms[i].start);

		if (f < b->n_funcs)
			refs[n++] = (struct name_ref){b->syms[i].name, f, b->syms[i].hidden};
	}
	sort(refs, n, sizeof(*refs), name_ref_cmp);

	mod->names = malloc((n ? n : 1) * sizeof(*mod->names));
	if (!mod->names)
		return -ENOMEM;
	mod->n_names = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && refs[i].func == refs[i - 1].func &&
		    !strcmp(refs[i].name, refs[i - 1].name))
			continue; /* the same symbol in .symtab and .dynsym */
		if (i == 0 || strcmp(refs[i].name, refs[i - 1].name))
			pool_len += strlen(refs[i].name) + 1;
		refs[mod->n_names] = refs[i];
		mod->n_names++;
	}

	mod->strings = malloc(pool_len ? pool_len : 1);
	if (!mod->strings)
		return -ENOMEM;
	pool = mod->strings;
	for (size_t i = 0; i < mod->n_names; i++) {
		struct func *f = &b->funcs[refs[i].func];

		if (i > 0 && !strcmp(refs[i].name, refs[i - 1].name)) {
			mod->names[i].name = mod->names[i - 1].name;
		} else {
			size_t len = strlen(refs[i].name) + 1;

			memcpy(pool, refs[i].name, len);
			mod->names[i].name = pool;
			pool += len;
		}
		mod->names[i].func = refs[i].func;
		if (!pooled[refs[i].func] && f->name && !strcmp(f->name, refs[i].name)) {
			f->name = mod->names[i].name;
			pooled[refs[i].func] = true;
		}
	}
	/* Every chosen name is in the index; a name left pointing into the Elf would dangle. */
	for (size_t i = 0; i < b->n_funcs; i++)
		if (!pooled[i] && b->funcs[i].name)
			return -EIO;
	return 0;
}

static int got_slot_cmp(const void *pa, const void *pb)
{
	const struct module_got *a = pa, *b = pb;

	return a->slot < b->slot ? -1 : a->slot > b->slot;
}

/* The GOT's symbols, sorted by slot, with their names copied out of the Elf. */
static int build_got(struct build *b)
{
	struct module *mod = b->mod;
	size_t pool_len = 0;
	char *pool;

	sort(b->got, b->n_got, sizeof(*b->got), got_slot_cmp);
	for (size_t i = 0; i < b->n_got; i++)
		pool_len += strlen(b->got[i].name) + 1;
	mod->got_strings = malloc(pool_len ? pool_len : 1);
	if (!mod->got_strings)
		return -ENOMEM;
	pool = mod->got_strings;
	for (size_t i = 0; i < b->n_got; i++) {
		size_t len = strlen(b->got[i].name) + 1;

		memcpy(pool, b->got[i].name, len);
		b->got[i].name = pool;
		pool += len;
	}
	mod->got = TAKE_PTR(b->got);
	mod->n_got = b->n_got;
	return 0;
}

static int read_segments(Elf *elf, struct module *mod)
{
	size_t n;

	if (elf_getphdrnum(elf, &n) < 0)
		return -EIO;
	mod->segs = calloc(n ? n : 1, sizeof(*mod->segs));
	if (!mod->segs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph))
			return -EIO;
		if (ph.p_type != PT_LOAD)
			continue;
		mod->segs[mod->n_segs++] = (struct module_segment){
		    .vaddr = ph.p_vaddr,
		    .memsz = ph.p_memsz,
		    .offset = ph.p_offset,
		    .filesz = ph.p_filesz,
		    .flags = ph.p_flags,
		};
	}
	return mod->n_segs ? 0 : -ENOEXEC;
}

/*
 * The bias that mapping e implies: the PT_LOAD segment whose file bytes e maps
 * (an executable one first) tells which ELF address e->start holds. The loader
 * maps a segment from its offset rounded down to a page, so e->offset may lie
 * just below p_offset.
 */
static int bias_of(const struct module *mod, const struct maps_entry *e, uint64_t *ret)
{
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < mod->n_segs; i++) {
			const struct module_segment *s = &mod->segs[i];

			if (pass == 0 && !(s->flags & PF_X))
				continue;
			if (e->offset >= ALIGN_DOWN(s->offset, PAGE_SIZE_4K) &&
			    e->offset < s->offset + s->filesz) {
				*ret = e->start - e->offset + s->offset - s->vaddr;
				return 0;
			}
		}
	return -ENOEXEC;
}

static bool same_file(const struct maps_entry *a, const struct maps_entry *b)
{
	return a->kind == b->kind && a->dev_major == b->dev_major && a->dev_minor == b->dev_minor &&
	       a->inode == b->inode && a->path && b->path && !strcmp(a->path, b->path);
}

/* Every executable mapping of e's file at the module's bias. */
static int collect_text(struct module *mod, const struct maps *m, const struct maps_entry *e)
{
	size_t n = 0;

	mod->text = calloc(m->n ? m->n : 1, sizeof(*mod->text));
	if (!mod->text)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		const struct maps_entry *x = &m->v[i];
		uint64_t bias;

		if (x != e && (e->kind == MAPS_VDSO || !(x->prot & PROT_EXEC) || !same_file(x, e) ||
			       bias_of(mod, x, &bias) < 0 || bias != mod->bias))
			continue;
		mod->text[n++] = (struct range){x->start, x->end};
	}
	mod->n_text = n;
	return 0;
}

static int read_build_id(Elf *elf, struct module *mod)
{
	const void *id = NULL;
	ssize_t len = dwelf_elf_gnu_build_id(elf, &id);

	if (len <= 0 || !id)
		len = 0;
	mod->build_id = malloc(len ? (size_t)len : 1);
	mod->build_id_hex = malloc(2 * (size_t)len + 1);
	if (!mod->build_id || !mod->build_id_hex)
		return -ENOMEM;
	if (len)
		memcpy(mod->build_id, id, (size_t)len);
	mod->build_id_len = (size_t)len;
	for (size_t i = 0; i < (size_t)len; i++)
		snprintf(mod->build_id_hex + 2 * i, 3, "%02x", mod->build_id[i]);
	mod->build_id_hex[2 * len] = '\0';
	return 0;
}

static int read_module(Elf *elf, const struct maps *m, const struct maps_entry *e,
		       struct module *mod)
{
	struct build b = {.elf = elf, .mod = mod, .plt = RANGESET_INIT};
	GElf_Ehdr eh;
	int r;

	if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh))
		return -ENOEXEC;
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
		return -ENOEXEC;
	mod->elf_type = eh.e_type;

	r = read_segments(elf, mod);
	if (r < 0)
		return r;
	r = bias_of(mod, e, &mod->bias);
	if (r < 0)
		return r;
	r = collect_text(mod, m, e);
	if (r < 0)
		return r;
	r = read_build_id(elf, mod);
	if (r < 0)
		return r;

	r = read_sections(&b);
	if (r >= 0)
		r = merge(&b);
	if (r >= 0)
		r = build_names(&b);
	if (r >= 0)
		r = build_got(&b);
	if (r >= 0) {
		mod->plt = malloc((b.plt.n ? b.plt.n : 1) * sizeof(*mod->plt));
		if (!mod->plt)
			r = -ENOMEM;
	}
	if (r >= 0) {
		if (b.plt.n)
			memcpy(mod->plt, b.plt.v, b.plt.n * sizeof(*mod->plt));
		mod->n_plt = b.plt.n;
		mod->funcs = TAKE_PTR(b.funcs);
		mod->n_funcs = b.n_funcs;
	}
	free(b.exec_scn);
	free(b.syms);
	free(b.fdes);
	free(b.funcs);
	free(b.got);
	rangeset_free(&b.plt);
	return r;
}

/*
 * A zombie keeps its /proc/PID but has no address space left: for reading its
 * mappings it is as gone as a reaped process.
 */
static bool process_alive(pid_t pid)
{
	char path[64], state[8];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return procstat_field(path, 3, state, sizeof(state)) == 0 && state[0] != 'Z' &&
	       state[0] != 'X';
}

/*
 * map_files gives the mapped file itself, deleted or replaced, but needs
 * CAP_CHECKPOINT_RESTORE (CAP_SYS_ADMIN before 5.9). /proc/PID/root/PATH needs
 * only the right to read the target's root, and resolves the path in the
 * target's mount namespace; it is used only while its inode is still the
 * mapped one. The device is not compared: maps shows the superblock's device,
 * which stat() does not on btrfs subvolumes and overlayfs.
 */
static int open_mapped_file(pid_t pid, const struct maps_entry *e, bool *ret_via_map_files)
{
	_cleanup_free_ char *path = NULL;
	char mf[96];
	struct stat st;
	int fd;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, e->start,
		 e->end);
	fd = open(mf, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		*ret_via_map_files = true;
		return fd;
	}

	if (asprintf(&path, "/proc/%d/root%s", (int)pid, e->path) < 0)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return process_alive(pid) ? negerrno() : -ESRCH;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != e->inode) {
		close(fd);
		return -ESTALE;
	}
	*ret_via_map_files = false;
	return fd;
}

/* The bytes of [start, end) of the target, read through /proc/PID/mem. */
static int read_memory(pid_t pid, uint64_t start, uint64_t end, char **ret)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = end - start, done = 0;
	char path[64];

	if (end <= start || len > VDSO_MAX)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return process_alive(pid) ? negerrno() : -ESRCH;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(start + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return process_alive(pid) ? negerrno() : -ESRCH;
		if (n == 0) /* no address space behind it: the process is exiting or gone */
			return process_alive(pid) ? -EIO : -ESRCH;
		done += (size_t)n;
	}
	*ret = TAKE_PTR(buf);
	return 0;
}

int module_open(pid_t pid, const struct maps *m, const struct maps_entry *e, struct module **ret)
{
	_cleanup_(module_freep) struct module *mod = NULL;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *image = NULL;
	Elf *elf;
	int r;

	if (pid <= 0 || !m || !e || !ret || !(e->prot & PROT_EXEC) || !e->path ||
	    (e->kind != MAPS_FILE && e->kind != MAPS_VDSO))
		return -EINVAL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EIO;

	mod = calloc(1, sizeof(*mod));
	if (!mod)
		return -ENOMEM;
	mod->path = strdup(e->path);
	if (!mod->path)
		return -ENOMEM;
	mod->deleted = e->deleted;
	mod->dev_major = e->dev_major;
	mod->dev_minor = e->dev_minor;
	mod->inode = e->inode;

	if (e->kind == MAPS_VDSO) {
		r = read_memory(pid, e->start, e->end, &image);
		if (r < 0)
			return r;
		mod->from_memory = true;
		elf = elf_memory(image, e->end - e->start);
	} else {
		fd = open_mapped_file(pid, e, &mod->via_map_files);
		if (fd < 0)
			return fd;
		elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	}
	if (!elf)
		return -ENOEXEC;
	r = read_module(elf, m, e, mod);
	elf_end(elf);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(mod);
	return 0;
}

void module_free(struct module *mod)
{
	if (!mod)
		return;
	free(mod->path);
	free(mod->build_id);
	free(mod->build_id_hex);
	free(mod->text);
	free(mod->plt);
	free(mod->segs);
	free(mod->funcs);
	free(mod->names);
	free(mod->strings);
	free(mod->got);
	free(mod->got_strings);
	free(mod->eh_frame);
	free(mod);
}

const struct func *module_find_func(const struct module *mod, uint64_t addr)
{
	size_t i;

	if (!mod)
		return NULL;
	i = last_at_or_before(mod->funcs, mod->n_funcs, addr);
	if (i >= mod->n_funcs)
		return NULL;
	/*
	 * Only a nested function can hide an earlier one that reaches further:
	 * an earlier function that covers addr also covers the start of every
	 * function between it and addr, which are therefore all nested.
	 */
	for (;;) {
		const struct func *f = &mod->funcs[i];

		if (addr < f->end)
			return f;
		if (!(f->flags & FUNC_NESTED) || i == 0)
			return NULL;
		i--;
	}
}

const struct func *module_find_func_by_name(const struct module *mod, const char *name)
{
	size_t lo = 0, hi;

	if (!mod || !name)
		return NULL;
	hi = mod->n_names;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(mod->names[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < mod->n_names && !strcmp(mod->names[lo].name, name))
		return &mod->funcs[mod->names[lo].func];
	return NULL;
}

const char *module_got_symbol(const struct module *mod, uint64_t slot)
{
	const struct module_got key = {.slot = slot}, *g;

	if (!mod || !mod->n_got)
		return NULL;
	g = bsearch(&key, mod->got, mod->n_got, sizeof(*mod->got), got_slot_cmp);
	return g ? g->name : NULL;
}

/* ---- the set of a process's modules ---- */

static int add_skip(struct module_set *set, size_t *cap, const struct maps_entry *e, int err)
{
	struct module_skip *s;
	int r;

	r = grow((void **)&set->skipped, cap, set->n_skipped, sizeof(*set->skipped));
	if (r < 0)
		return r;
	s = &set->skipped[set->n_skipped];
	*s = (struct module_skip){.start = e->start, .end = e->end, .err = err};
	if (e->path) {
		s->path = strdup(e->path);
		if (!s->path)
			return -ENOMEM;
	}
	set->n_skipped++;
	return 0;
}

static int text_cmp(const void *pa, const void *pb)
{
	const struct module_text *a = pa, *b = pb;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return 0;
}

static int build_index(struct module_set *set)
{
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++)
		n += set->v[i]->n_text;
	set->index = malloc((n ? n : 1) * sizeof(*set->index));
	if (!set->index)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++)
		for (size_t j = 0; j < set->v[i]->n_text; j++)
			set->index[set->n_index++] = (struct module_text){
			    set->v[i]->text[j].start, set->v[i]->text[j].end, set->v[i]};
	sort(set->index, set->n_index, sizeof(*set->index), text_cmp);
	return 0;
}

int funcs_discover(pid_t pid, struct module_set **ret)
{
	_cleanup_(maps_freep) struct maps *m = NULL;
	_cleanup_(module_set_freep) struct module_set *set = NULL;
	struct rangeset done = RANGESET_INIT;
	size_t cap = 0, cap_skip = 0;
	int r;

	if (pid <= 0 || !ret)
		return -EINVAL;
	r = maps_read(pid, &m);
	if (r < 0)
		return r;
	if (m->n == 0 && !process_alive(pid))
		return -ESRCH; /* a zombie */
	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;

	for (size_t i = 0; i < m->n; i++) {
		const struct maps_entry *e = &m->v[i];
		struct module *mod = NULL;

		/* [vsyscall] is the kernel's fixed legacy page: no ELF image, never optimized. */
		if (!(e->prot & PROT_EXEC) || e->kind == MAPS_VSYSCALL ||
		    rangeset_contains(&done, e->start))
			continue;
		if (e->kind != MAPS_FILE && e->kind != MAPS_VDSO) {
			r = add_skip(set, &cap_skip, e, -ENODATA);
			if (r < 0)
				goto out;
			continue;
		}

		r = module_open(pid, m, e, &mod);
		if (r == -ESRCH || r == -ENOMEM)
			goto out;
		if (r < 0) {
			r = add_skip(set, &cap_skip, e, r);
			if (r < 0)
				goto out;
			continue;
		}
		r = grow((void **)&set->v, &cap, set->n, sizeof(*set->v));
		if (r < 0) {
			module_free(mod);
			goto out;
		}
		set->v[set->n++] = mod;
		for (size_t j = 0; j < mod->n_text; j++) {
			r = rangeset_add(&done, mod->text[j].start, mod->text[j].end);
			if (r < 0)
				goto out;
		}
	}
	r = build_index(set);
	if (r >= 0)
		*ret = TAKE_PTR(set);
out:
	rangeset_free(&done);
	return r < 0 ? r : 0;
}

void module_set_free(struct module_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		module_free(set->v[i]);
	for (size_t i = 0; i < set->n_skipped; i++)
		free(set->skipped[i].path);
	free(set->v);
	free(set->skipped);
	free(set->index);
	free(set);
}

const struct module *module_set_find(const struct module_set *set, uint64_t addr)
{
	size_t lo = 0, hi;

	if (!set)
		return NULL;
	hi = set->n_index;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (set->index[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && addr < set->index[lo - 1].end)
		return set->index[lo - 1].mod;
	return NULL;
}

const struct func *module_set_find_func(const struct module_set *set, uint64_t addr,
					const struct module **ret_mod)
{
	const struct module *mod = module_set_find(set, addr);
	const struct func *f = module_find_func(mod, addr);

	if (f && ret_mod)
		*ret_mod = mod;
	return f;
}

const struct module *module_set_find_build_id(const struct module_set *set, const char *hex)
{
	if (!set || !hex || !hex[0])
		return NULL;
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->v[i]->build_id_hex, hex))
			return set->v[i];
	return NULL;
}
