/*
 * Relocation: discover a target's functions, copy the chosen ones into its
 * region, patch their entries. Everything here runs with the world stopped
 * (the supervisor's contract), so no thread can see a half-written copy or
 * patch.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <Zydis/Zydis.h>

#include "call.h"
#include "copier.h"
#include "ehframe.h"
#include "funcs.h"
#include "log.h"
#include "mem.h"
#include "patch.h"
#include "procfs.h"
#include "region.h"
#include "stack.h"
#include "relocate.h"
#include "supervisor.h"
#include "syscall.h"
#include "target.h"
#include "util.h"

#define COPY_ALIGN 16

struct reloc_func {
	const struct module *mod;
	const struct func *fn;
	const uint8_t *code; /* the function's bytes, in a text buffer */
	uint64_t dest;	     /* where its copy goes; 0 = refused */
	size_t size;
	struct copier_result *res;
	struct inj_patch patch;
	uint32_t plt_direct; /* calls through the PLT the copy makes directly */
	uint64_t off;	     /* where the copy is in the code area's layout (dest at the start) */
};

/* A copy's outbound field that leads into the code area: key is the target's layout offset. */
struct ref_entry {
	uint64_t key;
	uint32_t func;
};

struct text_buf {
	uint64_t start, end;
	uint8_t *bytes;
};

/*
 * Unwind information for the copies, registered with the target's own
 * unwinder (libgcc_s: __register_frame_info) so that C++ exceptions,
 * pthread_cancel and backtrace() unwind through copies as through the
 * originals. Layout in the code area, after the copies:
 *
 *   [copies][int3 x 16: return address of our remote calls][.eh_frame]...[data page]
 *
 * The data page, the last page of the region, is the only writable one
 * (never executable): libgcc keeps its struct object for the copies there.
 */
struct unwind_reg {
	bool wanted; /* the process maps libgcc_s: copies need unwind info */
	const struct module *libgcc, *libc;
	uint64_t register_fn;	/* __register_frame_info(begin, object) */
	uint64_t deregister_fn; /* __deregister_frame_info(begin) */
	uint64_t object_mutex;	/* libgcc's object_mutex (a pthread_mutex_t), 0 if not found */
	uint64_t *unsafe;	/* sorted starts of libc's allocator functions */
	size_t n_unsafe;
	uint64_t trap;	   /* an int3 in the region */
	uint64_t eh_frame; /* the registered .eh_frame */
	size_t eh_frame_size;
	uint64_t object; /* libgcc's struct object, in the data page */
	bool registered;
};

/* Bytes libgcc's struct object needs at most (gcc 12: 7 words); the rest of the page is spare. */
#define UNWIND_OBJECT_BYTES 256
#define UNWIND_TRAP_BYTES 16

struct relocation {
	unsigned refs;
	struct module_set *set;
	struct reloc_func *funcs;
	size_t n;
	size_t cap;
	struct text_buf *texts;
	size_t n_texts;
	struct relocate_stats stats;
	struct unwind_reg unwind;
	/* A private copy made for a move (relocate_unshare()): the relocation
	 * that owns set and texts, which the records point into. */
	struct relocation *origin;
	/*
	 * The code area as written into the target (the copies, the trap and
	 * the .eh_frame), in the region's layout: byte 0 is the region's
	 * code_offset. Moves change it here and write only what changed.
	 */
	uint8_t *image;
	size_t image_len;
	/*
	 * For moves of a part: the copies by layout offset (indices into funcs),
	 * and (into) every field of a copy that leads into the code area, by the
	 * layout offset of its target. Both stay true wherever the pieces go. NULL:
	 * not built (every copy is looked at).
	 */
	uint32_t *copies;
	size_t n_copies;
	struct ref_entry *into;
	size_t n_into;
};

static void part_index_build(struct relocation *rel, uint64_t base, uint64_t used);

static void count_refusal(struct relocation *rel, const char *reason)
{
	struct relocate_stats *s = &rel->stats;

	for (size_t i = 0; i < s->n_refused; i++) {
		if (strcmp(s->refused[i].reason, reason) == 0) {
			s->refused[i].count++;
			return;
		}
	}
	struct relocate_refusal *v = realloc(s->refused, (s->n_refused + 1) * sizeof(*v));
	if (!v)
		return;
	s->refused = v;
	s->refused[s->n_refused++] = (struct relocate_refusal){reason, 1};
}

struct relocation *relocation_ref(struct relocation *rel)
{
	rel->refs++;
	return rel;
}

void relocation_free(struct relocation *rel)
{
	if (!rel || --rel->refs > 0)
		return;
	for (size_t i = 0; i < rel->n; i++)
		copier_result_free(rel->funcs[i].res);
	if (!rel->origin) {
		for (size_t i = 0; i < rel->n_texts; i++)
			free(rel->texts[i].bytes);
		free(rel->texts);
		module_set_free(rel->set);
	}
	free(rel->funcs);
	free(rel->stats.refused);
	free(rel->unwind.unsafe);
	free(rel->image);
	free(rel->copies);
	free(rel->into);
	relocation_free(rel->origin);
	free(rel);
}

void relocate_give_up(struct relocation *rel, const char *why)
{
	rel->stats.blocked = why;
}

const struct relocate_stats *relocate_stats(const struct relocation *rel)
{
	return &rel->stats;
}

static int add_candidate(struct relocation *rel, const struct module *mod, const struct func *fn)
{
	if (rel->n == rel->cap) {
		size_t cap = rel->cap ? rel->cap * 2 : 64;
		struct reloc_func *v = realloc(rel->funcs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		rel->funcs = v;
		rel->cap = cap;
	}
	rel->funcs[rel->n++] = (struct reloc_func){.mod = mod, .fn = fn};
	return 0;
}

/* The module whose file name starts with prefix ("libc.so"), or NULL. */
static const struct module *module_named(const struct module_set *set, const char *prefix)
{
	for (size_t i = 0; i < set->n; i++) {
		const char *base = strrchr(set->v[i]->path, '/');
		base = base ? base + 1 : set->v[i]->path;
		if (strncmp(base, prefix, strlen(prefix)) == 0)
			return set->v[i];
	}
	return NULL;
}

/*
 * libc's functions that take the allocator's locks. A thread inside one may
 * hold a lock that libgcc's registration or deregistration needs (it frees
 * its sorted FDE arrays; newer libgcc also allocates): no remote call into
 * the unwinder then.
 */
static const char *const allocator_funcs[] = {
    "malloc",	      "free",	       "calloc",    "realloc", "reallocarray", "memalign",
    "posix_memalign", "aligned_alloc", "valloc",    "pvalloc", "malloc_trim",  "malloc_stats",
    "malloc_info",    "mallinfo",      "mallinfo2", "mallopt", "fork",	       "_Fork",
};

/*
 * libgcc's object_mutex, the lock of its registered objects: the address the
 * registration loads into %rdi just before its first call, which is to
 * pthread_mutex_lock (gcc 12: `lea object_mutex(%rip),%rdi; call
 * pthread_mutex_lock@plt` in __register_frame_info_bases). 0 if the code
 * does not have that shape.
 */
static uint64_t find_object_mutex(struct target *tg, const struct module *libgcc)
{
	const struct func *fn = module_find_func_by_name(libgcc, "__register_frame_info_bases");
	ZydisDecoder dec;
	uint8_t code[256];
	uint64_t rdi = 0;
	size_t len, off = 0;

	if (!fn)
		return 0;
	len = fn->end - fn->start < sizeof(code) ? fn->end - fn->start : sizeof(code);
	if (inj_mem_read(tg->proc, fn->start, code, len) < 0 ||
	    !ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
		return 0;
	while (off < len) {
		ZydisDecodedInstruction insn;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

		if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code + off, len - off, &insn, ops)))
			return 0;
		if (insn.mnemonic == ZYDIS_MNEMONIC_LEA && ops[0].reg.value == ZYDIS_REGISTER_RDI &&
		    ops[1].mem.base == ZYDIS_REGISTER_RIP)
			rdi = fn->start + off + insn.length + (uint64_t)ops[1].mem.disp.value;
		if (insn.mnemonic == ZYDIS_MNEMONIC_CALL)
			return rdi;
		off += insn.length;
	}
	return 0;
}

/*
 * Which unwinder the process can unwind with, and whether optd can give it
 * unwind information for copies. libgcc_s can (registered objects); the
 * others (LLVM's libunwind, nongnu libunwind, libc++abi) are not handled:
 * then nothing is relocated and *ret_blocked says why.
 */
static int unwind_setup(struct target *tg, struct relocation *rel, const char **ret_blocked)
{
	static const char *const others[] = {"libunwind.so", "libc++abi.so"};
	struct unwind_reg *u = &rel->unwind;
	const struct func *reg, *dereg;

	*ret_blocked = NULL;
	for (size_t k = 0; k < ARRAY_SIZE(others); k++) {
		if (module_named(rel->set, others[k])) {
			*ret_blocked = "the process maps an unwinder other than libgcc_s, which "
				       "optd cannot give unwind information for copies";
			return 0;
		}
	}
	u->libgcc = module_named(rel->set, "libgcc_s.so");
	if (!u->libgcc) {
		if (module_named(rel->set, "libstdc++.so"))
			*ret_blocked = "the process maps libstdc++ without libgcc_s";
		return 0;
	}
	reg = module_find_func_by_name(u->libgcc, "__register_frame_info");
	dereg = module_find_func_by_name(u->libgcc, "__deregister_frame_info");
	if (!reg || !dereg) {
		*ret_blocked = "libgcc_s has no __register_frame_info";
		return 0;
	}
	u->register_fn = reg->start;
	u->deregister_fn = dereg->start;
	u->object_mutex = find_object_mutex(tg, u->libgcc);
	if (!u->object_mutex)
		log_debug("%d: libgcc's object_mutex not found: no thread may be in libgcc_s",
			  tg->pid);
	u->libc = module_named(rel->set, "libc.so");
	if (u->libc) {
		u->unsafe = calloc(ARRAY_SIZE(allocator_funcs), sizeof(*u->unsafe));
		if (!u->unsafe)
			return -ENOMEM;
		for (size_t k = 0; k < ARRAY_SIZE(allocator_funcs); k++) {
			const struct func *fn =
			    module_find_func_by_name(u->libc, allocator_funcs[k]);
			if (fn)
				u->unsafe[u->n_unsafe++] = fn->start;
		}
	}
	u->wanted = true;
	return 0;
}

/* Reads every text range of mod that holds a candidate, once. */
static int read_texts(struct target *tg, struct relocation *rel)
{
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		struct text_buf *tb = NULL;

		for (size_t k = 0; k < rel->n_texts; k++)
			if (f->fn->start >= rel->texts[k].start && f->fn->end <= rel->texts[k].end)
				tb = &rel->texts[k];
		if (!tb) {
			const struct range *tr = NULL;
			for (size_t k = 0; k < f->mod->n_text; k++)
				if (f->fn->start >= f->mod->text[k].start &&
				    f->fn->end <= f->mod->text[k].end)
					tr = &f->mod->text[k];
			if (!tr)
				continue; /* spans mappings: refused below (no code) */
			struct text_buf *v = realloc(rel->texts, (rel->n_texts + 1) * sizeof(*v));
			if (!v)
				return -ENOMEM;
			rel->texts = v;
			tb = &rel->texts[rel->n_texts];
			*tb = (struct text_buf){tr->start, tr->end, malloc(tr->end - tr->start)};
			if (!tb->bytes)
				return -ENOMEM;
			rel->n_texts++;
			int r = inj_mem_read(tg->proc, tb->start, tb->bytes, tb->end - tb->start);
			if (r < 0)
				return r;
		}
		f->code = tb->bytes + (f->fn->start - tb->start);
	}
	return 0;
}

struct hot_func {
	const struct module *mod;
	const struct func *fn;
	uint64_t count;
};

static int cmp_hot(const void *a, const void *b)
{
	const struct hot_func *x = a, *y = b;

	if (x->fn != y->fn)
		return x->fn < y->fn ? -1 : 1;
	return 0;
}

static int cmp_hot_count(const void *a, const void *b)
{
	const struct hot_func *x = a, *y = b;

	return x->count > y->count ? -1 : x->count < y->count;
}

/* Adds the hottest functions as candidates; ips is sorted in place. */
static int choose_hot(struct relocation *rel, const uint64_t *ips, size_t n)
{
	_cleanup_free_ struct hot_func *hot = calloc(n ? n : 1, sizeof(*hot));
	size_t nhot = 0, k = 0;
	uint64_t covered = 0;
	int r;

	if (!hot)
		return -ENOMEM;
	rel->stats.samples = n;
	for (size_t i = 0; i < n; i++) {
		const struct module *mod = NULL;
		const struct func *fn = module_set_find_func(rel->set, ips[i], &mod);
		if (!fn)
			continue;
		hot[nhot++] = (struct hot_func){mod, fn, 1};
	}
	rel->stats.samples_in_funcs = nhot;
	/* Merge the samples of each function. */
	qsort(hot, nhot, sizeof(*hot), cmp_hot);
	for (size_t i = 0; i < nhot; i++) {
		if (k && hot[k - 1].fn == hot[i].fn)
			hot[k - 1].count++;
		else
			hot[k++] = hot[i];
	}
	qsort(hot, k, sizeof(*hot), cmp_hot_count);
	for (size_t i = 0; i < k && i < RELOCATE_HOT_MAX_FUNCS; i++) {
		if ((double)covered >= RELOCATE_HOT_COVERAGE * (double)nhot)
			break;
		covered += hot[i].count;
		if (hot[i].fn->flags & FUNC_NESTED) {
			count_refusal(rel, "nested");
			continue;
		}
		r = add_candidate(rel, hot[i].mod, hot[i].fn);
		if (r < 0)
			return r;
	}
	return 0;
}

static int plan(struct target *tg, const uint64_t *ips, size_t n_ips, struct relocation **ret,
		uint64_t *ret_bytes);

/* The length field of the CIE or FDE at off in mod's .eh_frame, 0 if none. */
static size_t cfi_entry_len(const struct module *mod, uint64_t off)
{
	uint32_t len;

	if (off == FUNC_NO_FDE || off + 4 > mod->eh_frame_size)
		return 0;
	memcpy(&len, mod->eh_frame + off, 4);
	return len == 0xffffffffu ? 0 : len;
}

/*
 * Room the unwind information of the candidates can take: an FDE for a copy
 * has absolute 8-byte pointers and re-encoded advances (at most twice the
 * original's program), one CIE per module is bounded generously, plus the
 * trap and the data page.
 */
static uint64_t unwind_bytes(const struct relocation *rel)
{
	uint64_t bytes = UNWIND_TRAP_BYTES + 4096 + 4096;

	for (size_t i = 0; i < rel->n; i++)
		bytes += 2 * cfi_entry_len(rel->funcs[i].mod, rel->funcs[i].fn->fde_off) + 64;
	return bytes + rel->set->n * 4096;
}

int relocate_plan(struct target *tg, struct relocation **ret, uint64_t *ret_bytes)
{
	return plan(tg, NULL, 0, ret, ret_bytes);
}

int relocate_plan_hot(struct target *tg, const uint64_t *ips, size_t n, struct relocation **ret,
		      uint64_t *ret_bytes)
{
	return plan(tg, ips, n, ret, ret_bytes);
}

static int plan(struct target *tg, const uint64_t *ips, size_t n_ips, struct relocation **ret,
		uint64_t *ret_bytes)
{
	const struct optd_options *opt = tg->sv->opt;
	struct relocation *rel = calloc(1, sizeof(*rel));
	const struct module *main_mod = NULL;
	struct procfs_stat ps;
	uint64_t bytes = 0;
	int r;

	if (!rel)
		return -ENOMEM;
	r = funcs_discover(tg->pid, &rel->set);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < rel->set->n; i++)
		rel->stats.found += rel->set->v[i]->n_funcs;
	if (procfs_read_stat(tg->pid, &ps) == 0)
		main_mod = module_set_find(rel->set, ps.start_code);

	rel->refs = 1;
	const char *blocked = NULL;
	r = unwind_setup(tg, rel, &blocked);
	if (r < 0)
		goto fail;
	if (blocked) {
		rel->stats.blocked = blocked;
		log_debug("%d: relocating nothing: %s", tg->pid, blocked);
		*ret = rel;
		*ret_bytes = 0;
		return 0;
	}

	if (opt->relocate == RELOCATE_HOT) {
		r = choose_hot(rel, ips, n_ips);
		if (r < 0)
			goto fail;
	} else if (opt->relocate == RELOCATE_ALL && main_mod) {
		for (size_t i = 0; i < main_mod->n_funcs; i++) {
			const struct func *fn = &main_mod->funcs[i];
			if (fn->flags & FUNC_NESTED) {
				count_refusal(rel, "nested");
				continue;
			}
			r = add_candidate(rel, main_mod, fn);
			if (r < 0)
				goto fail;
		}
	} else if (opt->relocate == RELOCATE_NAMED) {
		for (size_t k = 0; k < opt->n_relocate_names; k++) {
			const struct func *fn = NULL;
			const struct module *mod = NULL;
			for (size_t i = 0; i < rel->set->n && !fn; i++) {
				fn = module_find_func_by_name(rel->set->v[i],
							      opt->relocate_names[k]);
				mod = rel->set->v[i];
			}
			if (!fn) {
				log_warn("no function named '%s' in %d", opt->relocate_names[k],
					 tg->pid);
				count_refusal(rel, "not_found");
				continue;
			}
			r = add_candidate(rel, mod, fn);
			if (r < 0)
				goto fail;
		}
	}
	r = read_texts(tg, rel);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < rel->n; i++)
		bytes += ALIGN_UP(rel->funcs[i].fn->end - rel->funcs[i].fn->start, COPY_ALIGN);
	/* Widened branches and expansions grow copies; a quarter more is ample in practice. */
	bytes = bytes ? bytes + bytes / 4 + 65536 : 0;
	if (bytes && rel->unwind.wanted)
		bytes += unwind_bytes(rel);
	*ret_bytes = bytes ? ALIGN_UP(bytes, 4096) : 0;
	*ret = rel;
	return 0;

fail:
	relocation_free(rel);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* True if the sorted array holds a value in [lo, hi). */
static bool any_in(const uint64_t *v, size_t n, uint64_t lo, uint64_t hi)
{
	size_t a = 0, b = n;

	while (a < b) {
		size_t mid = (a + b) / 2;
		if (v[mid] < lo)
			a = mid + 1;
		else
			b = mid;
	}
	return a < n && v[a] < hi;
}

static int cmp_orig(const void *a, const void *b)
{
	const struct reloc_func *x = a, *y = b;

	return x->fn->start < y->fn->start ? -1 : x->fn->start > y->fn->start;
}

/* Where the copy of the function that starts at addr is, or 0. */
static uint64_t copy_of(const struct relocation *rel, uint64_t addr)
{
	size_t lo = 0, hi = rel->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct reloc_func *f = &rel->funcs[mid];
		if (f->fn->start == addr)
			return f->dest;
		if (f->fn->start < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/*
 * What pass 2 of relocate_apply() redirects direct calls and jumps with:
 * calls between copies go to the copies, and calls through a PLT entry
 * whose GOT slot can no longer change go straight to the function it holds.
 */
struct redirect_ctx {
	struct relocation *rel;
	struct target *tg;
	const struct maps *maps;
	uint64_t region_start, region_end; /* every copy lies in here */
	/* PLT entries already looked at: open addressing, entry 0 = an empty cell. */
	struct plt_entry {
		uint64_t entry, resolved; /* resolved 0: not made direct */
	} * plt;
	size_t plt_cap, plt_n;
	uint32_t made_direct; /* PLT calls made direct in the function being copied */
};

static void redirect_ctx_done(struct redirect_ctx *c)
{
	free(c->plt);
}

static bool in_ranges(const struct range *v, size_t n, uint64_t addr)
{
	for (size_t i = 0; i < n; i++)
		if (addr >= v[i].start && addr < v[i].end)
			return true;
	return false;
}

/*
 * The function the PLT entry at entry leads to, when the call may skip it:
 * the entry is `jmp *slot(%rip)`, the slot lies in memory that is
 * read-only now (RELRO with immediate binding: the dynamic linker wrote it
 * before protecting it and nothing writes it again), its value is
 * executable code outside every PLT (resolved, not the lazy-binding path),
 * and rel32 reaches it from everywhere in the region. 0 otherwise.
 */
static uint64_t plt_resolve(struct redirect_ctx *c, const struct module *mod, uint64_t entry)
{
	uint8_t code[16];
	uint64_t slot, value;
	const struct maps_entry *e;
	const struct module *vmod;

	if (inj_mem_read(c->tg->proc, entry, code, sizeof(code)) < 0 ||
	    copier_plt_slot(code, sizeof(code), entry, &slot) < 0)
		return 0;
	e = maps_find(c->maps, slot);
	if (!e || (e->prot & PROT_WRITE) || slot + 8 > e->end)
		return 0;
	if (inj_mem_read(c->tg->proc, slot, &value, sizeof(value)) < 0)
		return 0;
	e = maps_find(c->maps, value);
	if (!e || !(e->prot & PROT_EXEC))
		return 0;
	if (in_ranges(mod->plt, mod->n_plt, value))
		return 0;
	vmod = module_set_find(c->rel->set, value);
	if (vmod && in_ranges(vmod->plt, vmod->n_plt, value))
		return 0;
	if ((int64_t)(value - c->region_start) > INT32_MAX - 16 ||
	    (int64_t)(value - c->region_end) < INT32_MIN + 16)
		return 0;
	return value;
}

static uint64_t plt_direct(struct redirect_ctx *c, uint64_t target)
{
	const struct module *mod = module_set_find(c->rel->set, target);
	size_t i;

	if (!mod || !in_ranges(mod->plt, mod->n_plt, target))
		return 0;
	if (c->plt_n * 2 >= c->plt_cap) {
		size_t ncap = c->plt_cap ? c->plt_cap * 2 : 256;
		struct plt_entry *v = calloc(ncap, sizeof(*v));
		if (!v)
			return 0;
		for (size_t k = 0; k < c->plt_cap; k++) {
			if (!c->plt[k].entry)
				continue;
			for (i = (c->plt[k].entry * 0x9E3779B97F4A7C15ULL) >> 40 & (ncap - 1);
			     v[i].entry; i = (i + 1) & (ncap - 1))
				;
			v[i] = c->plt[k];
		}
		free(c->plt);
		c->plt = v;
		c->plt_cap = ncap;
	}
	for (i = (target * 0x9E3779B97F4A7C15ULL) >> 40 & (c->plt_cap - 1); c->plt[i].entry;
	     i = (i + 1) & (c->plt_cap - 1))
		if (c->plt[i].entry == target)
			return c->plt[i].resolved;
	c->plt[i].entry = target;
	c->plt[i].resolved = plt_resolve(c, mod, target);
	c->plt_n++;
	return c->plt[i].resolved;
}

/* Calls between copies go to the copies; calls through the PLT, see plt_direct(). */
static uint64_t redirect_call(void *ctx, uint64_t target)
{
	struct redirect_ctx *c = ctx;
	uint64_t to = copy_of(c->rel, target);

	if (to)
		return to;
	to = plt_direct(c, target);
	if (to) {
		c->made_direct++;
		/* Through the PLT to a function that has a copy: straight to the copy. */
		uint64_t copy = copy_of(c->rel, to);
		if (copy)
			to = copy;
	}
	return to;
}

/*
 * Functions that keep their caller's return address for a later return
 * where no stack walk finds it: glibc's jmp_buf holds it mangled with the
 * pointer guard, a ucontext_t anywhere in memory. Called from a copy, that
 * address leads into the region, and stays there after the region moved or
 * was removed. A function that calls one is not copied (calls_setjmp).
 */
static const char *const context_savers[] = {"setjmp",	  "_setjmp",	"__sigsetjmp",
					     "sigsetjmp", "getcontext", "swapcontext"};

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint64_t *nv = realloc(*v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = x;
	return 0;
}

/*
 * Where a call to a context saver goes, sorted: the functions, the GOT
 * slots bound to them (a call through the GOT), and the PLT entries that
 * jump through those slots, lazily bound or not. 0, -ENOMEM.
 */
static int find_savers(struct target *tg, const struct relocation *rel, uint64_t **ret,
		       size_t *ret_n)
{
	const struct module_set *set = rel->set;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0, n_named;
	int r = 0;

	for (size_t m = 0; r == 0 && m < set->n; m++) {
		const struct module *mod = set->v[m];
		for (size_t k = 0; r == 0 && k < ARRAY_SIZE(context_savers); k++) {
			const struct func *fn = module_find_func_by_name(mod, context_savers[k]);
			if (fn)
				r = push_u64(&v, &n, &cap, fn->start);
			for (size_t g = 0; r == 0 && g < mod->n_got; g++)
				if (!strcmp(mod->got[g].name, context_savers[k]))
					r = push_u64(&v, &n, &cap, mod->got[g].slot);
		}
	}
	if (r == 0 && n)
		qsort(v, n, sizeof(*v), cmp_u64);
	n_named = n;
	/* PLT entries are 16 bytes (8 in some .plt.got): look at every 8. */
	for (size_t m = 0; r == 0 && n_named && m < set->n; m++) {
		const struct module *mod = set->v[m];
		for (size_t p = 0; r == 0 && p < mod->n_plt; p++) {
			uint64_t start = mod->plt[p].start, len = mod->plt[p].end - start, slot;
			_cleanup_free_ uint8_t *code = len <= (1u << 20) ? malloc(len) : NULL;
			if (!code || inj_mem_read(tg->proc, start, code, len) < 0)
				continue;
			for (uint64_t off = 0; r == 0 && off + 8 <= len; off += 8)
				if (copier_plt_slot(code + off, len - off, start + off, &slot) ==
					0 &&
				    any_in(v, n_named, slot, slot + 1))
					r = push_u64(&v, &n, &cap, start + off);
		}
	}
	if (r < 0) {
		free(v);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*ret = v;
	*ret_n = n;
	return 0;
}

/* The copy refers to a context saver (calls it, or takes its address). */
static bool calls_saver(const struct copier_result *res, const uint64_t *savers, size_t n)
{
	for (size_t k = 0; k < res->n_relocs; k++) {
		uint64_t t = res->relocs[k].orig_target;
		if (res->relocs[k].target_kind != COPIER_TARGET_INTERNAL &&
		    any_in(savers, n, t, t + 1))
			return true;
	}
	return false;
}

/* Drops a planned copy: its bytes in buf become int3 again and its entry is never patched. */
static void drop_copy(struct relocation *rel, struct reloc_func *f, uint8_t *buf, uint64_t base,
		      const char *reason)
{
	count_refusal(rel, reason);
	if (buf)
		memset(buf + (f->dest - base), 0xcc, f->size);
	copier_result_free(f->res);
	f->res = NULL;
	f->dest = 0;
}

static bool sorted_has(const uint64_t *v, size_t n, uint64_t x)
{
	return any_in(v, n, x, x + 1);
}

int relocate_unwinder_busy(struct target *tg, struct relocation *rel, bool unwinding_too,
			   inj_stack_translate_fn *tr, void *tr_opaque, bool *ret_busy)
{
	enum { MAX_FRAMES = 1024 };
	struct unwind_reg *u = &rel->unwind;
	_cleanup_free_ struct inj_frame *frames = NULL;
	struct inj_unwinder *uw = NULL;
	int r;

	*ret_busy = false;
	if (!u->wanted)
		return 0;
	frames = malloc(MAX_FRAMES * sizeof(*frames));
	if (!frames)
		return -ENOMEM;
	if (u->object_mutex) {
		/* pthread_mutex_t: int __lock, unsigned __count, int __owner. */
		int32_t m[3];
		r = inj_mem_read(tg->proc, u->object_mutex, m, sizeof(m));
		if (r < 0)
			return r;
		if (m[0]) {
			log_debug("%d: libgcc's object_mutex is held by thread %d", tg->pid, m[2]);
			*ret_busy = true;
			return 0;
		}
	}
	r = inj_unwinder_new(tg->proc, &uw);
	if (r < 0)
		return r;
	if (tr)
		r = inj_unwinder_set_translate(uw, tr, tr_opaque);
	for (size_t i = 0; r == 0 && i < tg->proc->nthreads && !*ret_busy; i++) {
		struct inj_thread *t = tg->proc->threads[i];
		enum inj_stack_end end;
		size_t n = 0;

		if (t->zombie)
			continue;
		if (inj_stack_walk(uw, t, frames, MAX_FRAMES, &n, &end) < 0 ||
		    end != INJ_STACK_END_OUTERMOST) {
			log_debug("thread %d of %d: stack walk ended %s after %zu frames", t->tid,
				  tg->pid, inj_stack_end_name(end), n);
			*ret_busy = true;
		}
		for (size_t k = 0; k < n && !*ret_busy; k++) {
			uint64_t ip = frames[k].ip - (k > 0 && !frames[k - 1].signal_frame);
			uint64_t orig = relocate_copy_to_orig(rel, ip);
			const struct func *fn;

			if (orig)
				ip = orig; /* a copy of a libgcc or allocator function counts too */

			if ((unwinding_too || !u->object_mutex) &&
			    module_set_find(rel->set, ip) == u->libgcc) {
				log_debug("thread %d of %d is in libgcc_s (%#" PRIx64 ")", t->tid,
					  tg->pid, ip);
				*ret_busy = true;
			} else if (u->libc && module_set_find(rel->set, ip) == u->libc &&
				   (fn = module_find_func(u->libc, ip)) &&
				   sorted_has(u->unsafe, u->n_unsafe, fn->start)) {
				log_debug("thread %d of %d is in the allocator (%s)", t->tid,
					  tg->pid, fn->name ? fn->name : "?");
				*ret_busy = true;
			}
		}
	}
	inj_unwinder_free(uw);
	return r;
}

/*
 * Builds the .eh_frame of the copies into buf after the copies (at
 * ALIGN_UP(*used, 16): the trap, then the section), refusing the copies
 * whose unwind information cannot be carried over. *used grows by what was
 * added. limit: where the data page starts, from base.
 */
static int unwind_build(struct relocation *rel, uint8_t *buf, uint64_t base, uint64_t *used,
			uint64_t limit)
{
	struct unwind_reg *u = &rel->unwind;
	_cleanup_free_ struct ehframe_src *srcs = calloc(rel->set->n, sizeof(*srcs));
	struct ehframe_builder *b = NULL;
	uint64_t at = ALIGN_UP(*used, COPY_ALIGN), eh;
	size_t size;
	int r;

	if (!srcs)
		return -ENOMEM;
	for (size_t i = 0; i < rel->set->n; i++)
		srcs[i] =
		    (struct ehframe_src){rel->set->v[i]->eh_frame, rel->set->v[i]->eh_frame_size,
					 rel->set->v[i]->eh_frame_addr};
	r = ehframe_builder_new(&b);
	if (r < 0)
		return r;
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		enum ehframe_reason why = EHFRAME_OK;
		size_t m;

		if (!f->res || f->fn->fde_off == FUNC_NO_FDE)
			continue; /* no FDE: the original cannot be unwound through either */
		for (m = 0; m < rel->set->n && rel->set->v[m] != f->mod; m++)
			;
		r = ehframe_add(b, &srcs[m], f->fn->fde_off, f->res, &why);
		if (r == -ENOTSUP) {
			drop_copy(rel, f, buf, base, ehframe_reason_to_string(why));
			continue;
		}
		if (r < 0)
			goto out;
	}
	u->trap = base + at;
	eh = at + UNWIND_TRAP_BYTES;
	size = ehframe_size(b);
	if (eh + size > limit) {
		r = -ENOSPC;
		goto out;
	}
	r = ehframe_emit(b, buf + eh, size);
	if (r < 0)
		goto out;
	u->eh_frame = base + eh;
	u->eh_frame_size = size;
	*used = eh + size;
out:
	ehframe_builder_free(b);
	return r;
}

/*
 * Registers the copies' .eh_frame with the target's libgcc: the data page
 * becomes read-write (never executable), libgcc's object is zeroed there,
 * and a thread calls __register_frame_info. The caller made sure no thread
 * can hold a lock the call takes. 0, -ESRCH, -errno.
 */
static int unwind_register(struct target *tg, struct relocation *rel)
{
	struct unwind_reg *u = &rel->unwind;
	struct inj_region *reg = tg->region;
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
	uint8_t zero[UNWIND_OBJECT_BYTES] = {0};
	uint64_t page = inj_region_addr(reg, reg->size - 4096), ret = 0;
	long res = 0;
	int r;

	if (!t)
		return -ESRCH;
	r = inj_syscall(t, SYS_mprotect, &res, (long)page, 4096L, PROT_READ | PROT_WRITE);
	if (r < 0)
		return r;
	if (res < 0)
		return (int)res;
	u->object = page;
	r = inj_mem_write(tg->proc, u->object, zero, sizeof(zero), NULL);
	if (r < 0)
		return r;
	r = inj_call(t, u->register_fn, u->trap, &ret, u->eh_frame, u->object, 0, 0, 0, 0);
	if (r < 0)
		return r;
	u->registered = true;
	reg->hdr.unwind_offset = u->eh_frame - reg->base;
	reg->hdr.unwind_size = u->eh_frame_size;
	reg->hdr.data_offset = page - reg->base;
	log_debug("%d: .eh_frame of the copies at %#" PRIx64 " (%zu bytes) registered", tg->pid,
		  u->eh_frame, u->eh_frame_size);
	return 0;
}

int relocate_unregister(struct target *tg, struct relocation *rel, inj_stack_translate_fn *tr,
			void *tr_opaque)
{
	struct unwind_reg *u = &rel->unwind;
	struct inj_thread *t;
	uint64_t ret = 0;
	bool busy;
	int r;

	uint64_t ob[4];

	if (!u->registered)
		return 0;
	/*
	 * A fork child that was created before the registration shares the
	 * record but not the registration: libgcc would abort on an unknown
	 * object. The object optd zeroed is filled in once registered.
	 */
	r = inj_mem_read(tg->proc, u->object, ob, sizeof(ob));
	if (r < 0)
		return r;
	if (!ob[0] && !ob[1] && !ob[2] && !ob[3])
		return 0;
	r = relocate_unwinder_busy(tg, rel, true, tr, tr_opaque, &busy);
	if (r < 0)
		return r;
	if (busy)
		return -EBUSY;
	t = inj_process_pick_thread(tg->proc);
	if (!t)
		return -ESRCH;
	r = inj_call(t, u->deregister_fn, u->trap, &ret, u->eh_frame, 0, 0, 0, 0, 0);
	if (r < 0)
		return r;
	if (ret != u->object) {
		log_warn("%d: libgcc did not know optd's unwind information (%#" PRIx64 ")",
			 tg->pid, ret);
		return -ENOENT;
	}
	return 0;
}

int relocate_apply(struct target *tg, struct relocation *rel)
{
	struct inj_region *reg = tg->region;
	uint64_t base = reg->base + reg->hdr.code_offset, cap = reg->hdr.code_size, used = 0;
	uint64_t limit = cap, reserve = 0;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ uint64_t *savers = NULL;
	size_t n_savers = 0;
	int r;

	if (!rel->n)
		return 0;
	if (rel->unwind.wanted) {
		bool busy;
		r = relocate_unwinder_busy(tg, rel, false, NULL, NULL, &busy);
		if (r < 0)
			return r;
		if (busy)
			return -EBUSY;
		/* The unwind information and the data page come after the copies. */
		reserve = unwind_bytes(rel);
		limit = cap - 4096;
		cap = cap > reserve ? cap - reserve : 0;
	}
	qsort(rel->funcs, rel->n, sizeof(rel->funcs[0]), cmp_orig);
	r = find_savers(tg, rel, &savers, &n_savers);
	if (r < 0)
		return r;

	/* Pass 1: where each copy goes, and which are refused. */
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		struct copier_refusal why = {0};
		struct copier_result *res = NULL;
		struct copier_input in = {
		    .code = f->code,
		    .orig_addr = f->fn->start,
		    .len = f->fn->end - f->fn->start,
		    .dest_addr = base + used,
		    .dest_cap = cap - used,
		};

		if (!f->code) {
			count_refusal(rel, "no_code");
			continue;
		}
		r = copier_copy(&in, NULL, &res, &why);
		if (r == -ENOTSUP) {
			count_refusal(rel, copier_reason_to_string(why.reason));
			continue;
		}
		if (r < 0) {
			count_refusal(rel, "copier_error");
			continue;
		}
		if (calls_saver(res, savers, n_savers)) {
			count_refusal(rel, "calls_setjmp");
			copier_result_free(res);
			continue;
		}
		f->dest = base + used;
		f->off = used;
		f->size = res->size;
		used += ALIGN_UP(res->size, COPY_ALIGN);
		copier_result_free(res);
	}
	if (!used)
		return 0;

	/* Pass 2: emit with calls between copies going straight to the copies. */
	_cleanup_(maps_freep) struct maps *maps = NULL;
	_cleanup_(redirect_ctx_done) struct redirect_ctx rc = {
	    .rel = rel, .tg = tg, .region_start = base, .region_end = base + used};
	r = maps_read(tg->pid, &maps);
	if (r < 0)
		return r;
	rc.maps = maps;
	buf = malloc(used + reserve);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0xcc, used + reserve);
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		struct copier_refusal why = {0};
		struct copier_input in = {
		    .code = f->code,
		    .orig_addr = f->fn->start,
		    .len = f->fn->end - f->fn->start,
		    .dest_addr = f->dest,
		    .dest_cap = f->size,
		    .redirect = redirect_call,
		    .redirect_ctx = &rc,
		};

		if (!f->dest)
			continue;
		rc.made_direct = 0;
		r = copier_copy(&in, buf + (f->dest - base), &f->res, &why);
		f->plt_direct = rc.made_direct;
		if (r < 0 || f->res->size != f->size)
			drop_copy(rel, f, buf, base,
				  r == -ENOTSUP ? copier_reason_to_string(why.reason)
						: "layout_changed");
	}
	bool unwind = rel->unwind.wanted;
	if (unwind) {
		r = unwind_build(rel, buf, base, &used, limit);
		if (r == -ENOSPC) {
			log_warn("%d: no room for the copies' unwind information in the region",
				 tg->pid);
			unwind = false;
		} else if (r < 0) {
			return r;
		}
	}
	/* The region is r-x: /proc/PID/mem writes through that, with every thread stopped. */
	r = inj_mem_write_ro(tg->proc, base, buf, used, NULL);
	if (r < 0)
		return r;
	free(rel->image);
	rel->image = TAKE_PTR(buf);
	rel->image_len = used;
	if (rel->unwind.wanted) {
		/* Unwind information first: once patched, copies may be unwound through. */
		const char *why = "no_room_for_unwind_info";
		if (unwind) {
			r = unwind_register(tg, rel);
			if (r == -ESRCH)
				return r;
			why = "unwind_registration_failed";
			if (r < 0)
				log_warn("%d: cannot register the copies' unwind information: %s",
					 tg->pid, strerror(-r));
		}
		if (!rel->unwind.registered) {
			for (size_t i = 0; i < rel->n; i++)
				if (rel->funcs[i].res)
					drop_copy(rel, &rel->funcs[i], NULL, base, why);
			return 0;
		}
	}

	/*
	 * A branch from anywhere (another function, a cold part) into the
	 * bytes a patch overwrites would land in the middle of our jmp: find
	 * every direct branch target in the text we read.
	 */
	_cleanup_free_ uint64_t *targets = NULL;
	size_t n_targets = 0, cap_targets = 0;
	for (size_t k = 0; k < rel->n_texts; k++) {
		r = copier_branch_targets(rel->texts[k].bytes, rel->texts[k].start,
					  rel->texts[k].end - rel->texts[k].start, &targets,
					  &n_targets, &cap_targets);
		if (r < 0)
			return r;
	}
	qsort(targets, n_targets, sizeof(*targets), cmp_u64);

	/* Entry patches: prepared, checked in one look at every thread's ip, then written. */
	_cleanup_free_ struct reloc_func **todo = calloc(rel->n ? rel->n : 1, sizeof(*todo));
	_cleanup_free_ struct inj_patch *patches = calloc(rel->n ? rel->n : 1, sizeof(*patches));
	_cleanup_free_ bool *busy = calloc(rel->n ? rel->n : 1, sizeof(*busy));
	size_t ntodo = 0;
	if (!todo || !patches || !busy)
		return -ENOMEM;
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		uint64_t off;

		if (!f->res)
			continue;
		off = f->res->entry_patch_off;
		if (any_in(targets, n_targets, f->fn->start + off + 1,
			   f->fn->start + off + INJ_PATCH_LEN)) {
			drop_copy(rel, f, NULL, base, "branch_into_entry_patch");
			continue;
		}
		if (inj_patch_prepare(f->fn->start + off, f->dest + off, f->code + off, &f->patch) <
		    0) {
			drop_copy(rel, f, NULL, base, "out_of_reach");
			continue;
		}
		todo[ntodo] = f;
		patches[ntodo++] = f->patch;
	}
	r = inj_patch_check_threads(tg->proc, patches, ntodo, busy, NULL);
	if (r < 0)
		return r;
	for (size_t k = 0; k < ntodo; k++) {
		struct reloc_func *f = todo[k];

		if (busy[k]) {
			drop_copy(rel, f, NULL, base, "thread_in_entry");
			continue;
		}
		r = inj_patch_apply(tg->proc, &f->patch, 1);
		if (r == -ESRCH)
			return r;
		if (r < 0) {
			drop_copy(rel, f, NULL, base,
				  r == -ESTALE ? "changed_under_us" : "patch_failed");
			continue;
		}
		rel->stats.relocated++;
		rel->stats.code_bytes += f->size;
		rel->stats.plt_direct += f->plt_direct;
	}

	part_index_build(rel, base, used);
	/* The header in the target says how much of the code area is used. */
	reg->hdr.code_used = used;
	reg->hdr.generation++;
	r = inj_region_write_header(tg->proc, reg);
	return r == -ESRCH ? r : 0;
}

int relocate_undo(struct target *tg, struct relocation *rel)
{
	int first = 0;

	for (size_t i = 0; i < rel->n; i++) {
		/* A copy: the record stays "applied" for fork children that inherited the patch. */
		struct inj_patch p = rel->funcs[i].patch;
		int r;
		if (!p.applied)
			continue;
		r = inj_patch_undo(tg->proc, &p, 1);
		if (r == -ESRCH)
			return r;
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

uint64_t relocate_copy_to_orig(const struct relocation *rel, uint64_t ip)
{
	for (size_t i = 0; i < rel->n; i++) {
		const struct reloc_func *f = &rel->funcs[i];
		uint64_t orig;
		if (f->res && ip >= f->dest && ip < f->dest + f->size &&
		    copier_copy_to_orig(f->res, ip, &orig) == 0)
			return orig;
	}
	return 0;
}

int relocate_write_perf_map(const struct relocation *rel, const char *path)
{
	_cleanup_fclose_ FILE *f = NULL;

	if (!rel->stats.relocated)
		return 0;
	f = fopen(path, "we");
	if (!f)
		return negerrno();
	for (size_t i = 0; i < rel->n; i++) {
		const struct reloc_func *fr = &rel->funcs[i];
		const char *base;

		if (!fr->res || !fr->patch.applied)
			continue;
		if (fr->fn->name) {
			fprintf(f, "%" PRIx64 " %zx %s\n", fr->dest, fr->size, fr->fn->name);
		} else {
			base = strrchr(fr->mod->path, '/');
			fprintf(f, "%" PRIx64 " %zx %s+%#" PRIx64 "\n", fr->dest, fr->size,
				base ? base + 1 : fr->mod->path, fr->fn->start - fr->mod->bias);
		}
	}
	return fflush(f) == 0 ? 0 : negerrno();
}

/* ---- moves of the region (the guard) ---- */

static struct copier_result *result_dup(const struct copier_result *r)
{
	struct copier_result *d = malloc(sizeof(*d));

	if (!d)
		return NULL;
	*d = *r;
	d->map = malloc((r->n_map ? r->n_map : 1) * sizeof(*d->map));
	d->relocs = malloc((r->n_relocs ? r->n_relocs : 1) * sizeof(*d->relocs));
	if (!d->map || !d->relocs) {
		free(d->map);
		free(d->relocs);
		free(d);
		return NULL;
	}
	memcpy(d->map, r->map, r->n_map * sizeof(*d->map));
	memcpy(d->relocs, r->relocs, r->n_relocs * sizeof(*d->relocs));
	return d;
}

int relocate_unshare(struct relocation **relp)
{
	struct relocation *rel = *relp, *c;

	if (rel->refs == 1)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = *rel;
	c->refs = 1;
	c->origin = rel->origin ? rel->origin : rel;
	c->origin->refs++; /* keeps the modules and texts the records point into */
	c->image = NULL;
	c->copies = NULL;
	c->into = NULL;
	c->n = 0; /* until the records are copied */
	c->funcs = calloc(rel->n ? rel->n : 1, sizeof(*c->funcs));
	c->stats.refused =
	    malloc((rel->stats.n_refused ? rel->stats.n_refused : 1) * sizeof(*c->stats.refused));
	c->unwind.unsafe =
	    malloc((rel->unwind.n_unsafe ? rel->unwind.n_unsafe : 1) * sizeof(*c->unwind.unsafe));
	if (!c->funcs || !c->stats.refused || !c->unwind.unsafe)
		goto fail;
	if (rel->image && !(c->image = malloc(rel->image_len)))
		goto fail;
	if (rel->image)
		memcpy(c->image, rel->image, rel->image_len);
	if (rel->copies && !(c->copies = malloc((rel->n_copies ?: 1) * sizeof(*c->copies))))
		goto fail;
	if (rel->into && !(c->into = malloc((rel->n_into ?: 1) * sizeof(*c->into))))
		goto fail;
	if (rel->copies)
		memcpy(c->copies, rel->copies, rel->n_copies * sizeof(*c->copies));
	if (rel->into)
		memcpy(c->into, rel->into, rel->n_into * sizeof(*c->into));
	memcpy(c->stats.refused, rel->stats.refused,
	       rel->stats.n_refused * sizeof(*c->stats.refused));
	memcpy(c->unwind.unsafe, rel->unwind.unsafe,
	       rel->unwind.n_unsafe * sizeof(*c->unwind.unsafe));
	for (size_t i = 0; i < rel->n; i++) {
		c->funcs[i] = rel->funcs[i];
		c->funcs[i].res = NULL;
		c->n = i + 1;
		if (rel->funcs[i].res && !(c->funcs[i].res = result_dup(rel->funcs[i].res)))
			goto fail;
	}
	c->cap = rel->n;
	rel->refs--;
	*relp = c;
	return 0;

fail:
	relocation_free(c);
	return -ENOMEM;
}

static bool moved_in(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v >= lo && v < hi;
}

static int cmp_ref(const void *a, const void *b)
{
	const struct ref_entry *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/*
 * Builds rel->copies and rel->refs once the copies are in place (code area
 * at base, used bytes). Without memory they stay NULL, and moves look at
 * every copy.
 */
static void part_index_build(struct relocation *rel, uint64_t base, uint64_t used)
{
	size_t nc = 0, nr = 0;

	free(rel->copies);
	free(rel->into);
	rel->copies = NULL;
	rel->into = NULL;
	for (size_t i = 0; i < rel->n; i++) {
		const struct copier_result *res = rel->funcs[i].res;
		nc += res != NULL;
		for (size_t k = 0; res && k < res->n_relocs; k++)
			nr += res->relocs[k].target_kind != COPIER_TARGET_INTERNAL &&
			      moved_in(res->relocs[k].target, base, base + used);
	}
	rel->copies = malloc((nc ?: 1) * sizeof(*rel->copies));
	rel->into = malloc((nr ?: 1) * sizeof(*rel->into));
	if (!rel->copies || !rel->into) {
		free(rel->copies);
		free(rel->into);
		rel->copies = NULL;
		rel->into = NULL;
		return;
	}
	nc = nr = 0;
	for (size_t i = 0; i < rel->n; i++) {
		const struct copier_result *res = rel->funcs[i].res;
		if (!res)
			continue;
		/* funcs is in layout order (pass 1 placed the copies in its order). */
		rel->copies[nc++] = (uint32_t)i;
		for (size_t k = 0; k < res->n_relocs; k++)
			if (res->relocs[k].target_kind != COPIER_TARGET_INTERNAL &&
			    moved_in(res->relocs[k].target, base, base + used))
				rel->into[nr++] =
				    (struct ref_entry){res->relocs[k].target - base, (uint32_t)i};
	}
	qsort(rel->into, nr, sizeof(*rel->into), cmp_ref);
	rel->n_copies = nc;
	rel->n_into = nr;
}

/*
 * The copies that a move of the part [start, end) of the region (current
 * addresses, in one piece) concerns: those in it, then those outside that
 * refer into it, each once. *ret (malloc'd) gets indices into funcs; NULL
 * with *ret_n 0 and 0 when there is no index (look at every copy).
 * 0 or -ENOMEM.
 */
static int part_copies(const struct relocation *rel, const struct inj_region *reg, uint64_t start,
		       uint64_t end, uint32_t **ret, size_t *ret_n)
{
	const struct optd_region_piece *pc = inj_region_piece_at(reg, start);
	uint64_t code = reg->hdr.code_offset, ls, le;
	size_t lo = 0, hi, n = 0, first;
	uint32_t *v;
	_cleanup_free_ uint8_t *seen = NULL;

	*ret = NULL;
	*ret_n = 0;
	if (!rel->copies || !pc)
		return 0;
	/* The part in the code area's layout (the header page before it holds no copy). */
	ls = pc->off + (start - pc->addr);
	le = ls + (end - start);
	ls = ls > code ? ls - code : 0;
	le = le > code ? le - code : 0;
	v = malloc((rel->n_copies + rel->n_into + 1) * sizeof(*v));
	seen = calloc(rel->n ?: 1, 1);
	if (!v || !seen) {
		free(v);
		return -ENOMEM;
	}
	/* In the part: a run of copies in layout order. */
	hi = rel->n_copies;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rel->funcs[rel->copies[mid]].off < ls)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < rel->n_copies && rel->funcs[rel->copies[lo]].off < le; lo++) {
		v[n++] = rel->copies[lo];
		seen[rel->copies[lo]] = 1;
	}
	/* Outside, referring in. */
	lo = 0;
	hi = rel->n_into;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rel->into[mid].key < ls)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (first = lo; first < rel->n_into && rel->into[first].key < le; first++) {
		uint32_t f = rel->into[first].func;
		if (seen[f] || !rel->funcs[f].res)
			continue;
		seen[f] = 1;
		v[n++] = f;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static void widen(uint64_t *lo, uint64_t *hi, uint64_t start, uint64_t end)
{
	*lo = start < *lo ? start : *lo;
	*hi = end > *hi ? end : *hi;
}

int relocate_reach_part(const struct relocation *rel, const struct inj_region *reg, uint64_t start,
			uint64_t end, uint64_t *ret_lo, uint64_t *ret_hi)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	_cleanup_free_ uint32_t *which = NULL;
	size_t n;
	int r;

	r = part_copies(rel, reg, start, end, &which, &n);
	if (r < 0)
		return r;
	for (size_t j = 0; j < (which ? n : rel->n); j++) {
		const struct reloc_func *f = &rel->funcs[which ? which[j] : j];
		bool inside;

		if (!f->res)
			continue;
		inside = f->dest >= start && f->dest < end;
		/* The entry patch's jmp reaches the copy from the original. */
		if (inside)
			widen(&lo, &hi, f->fn->start, f->fn->end);
		for (size_t k = 0; k < f->res->n_relocs; k++) {
			const struct copier_reloc *c = &f->res->relocs[k];
			bool to_part = c->target >= start && c->target < end;

			if (c->target_kind == COPIER_TARGET_INTERNAL || inside == to_part)
				continue;
			if (inside)
				widen(&lo, &hi, c->target, c->target + 1);
			else /* a copy that stays refers into the part */
				widen(&lo, &hi, f->dest, f->dest + f->size);
		}
	}
	if (lo >= hi)
		return -ENOENT;
	*ret_lo = lo;
	*ret_hi = hi;
	return 0;
}

int relocate_atoms(const struct relocation *rel, uint64_t *lo, uint64_t *hi)
{
	const struct unwind_reg *u = &rel->unwind;
	bool changed;
	int rounds = 0;

	do {
		changed = false;
		for (size_t i = 0; i <= rel->n; i++) {
			uint64_t s, e;
			if (i < rel->n) {
				if (!rel->funcs[i].res)
					continue;
				s = rel->funcs[i].dest;
				e = s + rel->funcs[i].size;
			} else {
				/* The trap and the .eh_frame after the copies stay together. */
				if (!u->eh_frame)
					continue;
				s = u->trap && u->trap < u->eh_frame ? u->trap : u->eh_frame;
				e = u->eh_frame + u->eh_frame_size;
			}
			if (s < *lo && e > *lo) {
				*lo = ALIGN_DOWN(s, 4096);
				changed = true;
			}
			if (s < *hi && e > *hi) {
				*hi = ALIGN_UP(e, 4096);
				changed = true;
			}
		}
	} while (changed && ++rounds < 64);
	return changed ? -ELOOP : 0;
}

/*
 * The RIP-relative data that fn of libgcc refers to: where libgcc keeps its
 * lists of registered objects (and its lock). Up to max addresses.
 */
static size_t rip_data_refs(struct target *tg, const struct func *fn, uint64_t *out, size_t max)
{
	ZydisDecoder dec;
	uint8_t code[1024];
	size_t len, off = 0, n = 0;

	if (!fn)
		return 0;
	len = fn->end - fn->start < sizeof(code) ? fn->end - fn->start : sizeof(code);
	if (inj_mem_read(tg->proc, fn->start, code, len) < 0 ||
	    !ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
		return 0;
	while (off < len && n < max) {
		ZydisDecodedInstruction insn;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

		if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code + off, len - off, &insn, ops)))
			break;
		for (unsigned k = 0; k < insn.operand_count_visible && n < max; k++) {
			uint64_t a;
			if (ops[k].type != ZYDIS_OPERAND_TYPE_MEMORY ||
			    ops[k].mem.base != ZYDIS_REGISTER_RIP ||
			    !ZYAN_SUCCESS(
				ZydisCalcAbsoluteAddress(&insn, &ops[k], fn->start + off, &a)))
				continue;
			if (module_set_find(tg->rel->set, a))
				continue; /* code or read-only data of a module */
			out[n++] = a;
		}
		off += insn.length;
	}
	return n;
}

/* libgcc's struct object (gcc 12, x86-64): word offsets. */
enum { OB_PC_BEGIN = 0, OB_U = 3, OB_S = 4, OB_NEXT = 5, OB_WORDS = 6 };

/* libgcc's sorted vector of FDE pointers, and each one's pc_begin. */
struct fde_sort {
	uint64_t pc, fde;
};

static int cmp_fde_sort(const void *a, const void *b)
{
	const struct fde_sort *x = a, *y = b;

	return x->pc < y->pc ? -1 : x->pc > y->pc;
}

/*
 * Part of the region moved while libgcc holds a record of the copies'
 * unwind information: fix the record (its .eh_frame and, once libgcc sorted
 * it, the vector of FDE pointers in libgcc's heap memory, sorted again by
 * pc because only some copies may have moved, and the lowest pc), then, if
 * the record itself moved, every list link that pointed to its old address.
 * eh is the .eh_frame as it is now, at u->eh_frame. Every thread is
 * stopped, and libgcc's lock is free, so no list is half changed.
 */
static int unwind_moved(struct target *tg, struct relocation *rel, uint64_t old_object, uint64_t lo,
			uint64_t hi, int64_t delta, const uint8_t *eh)
{
	struct unwind_reg *u = &rel->unwind;
	const struct module_set *set = rel->set;
	uint64_t ob[OB_WORDS], heads[32], lock = 0;
	size_t nheads;
	int r, fixed = 0;

	if (u->object_mutex &&
	    inj_mem_read(tg->proc, u->object_mutex, &lock, sizeof(uint32_t)) == 0 && (uint32_t)lock)
		log_warn("%d: optd's pages moved while a thread held libgcc's lock: an unwind in "
			 "progress may not find the copies",
			 tg->pid);
	r = inj_mem_read(tg->proc, u->object, ob, sizeof(ob));
	if (r < 0)
		return r;
	if (ob[OB_S] & 1) {
		/* Sorted: u is a struct fde_vector {orig_data, count, array[count]}. */
		uint64_t hdr[2];
		r = inj_mem_read(tg->proc, ob[OB_U], hdr, sizeof(hdr));
		if (r < 0)
			return r;
		if (hdr[1] > u->eh_frame_size / 16 + 1)
			return -EINVAL; /* not a vector of our FDEs */
		_cleanup_free_ uint64_t *v = malloc((hdr[1] + 2) * sizeof(*v));
		_cleanup_free_ struct fde_sort *fs = malloc((hdr[1] + 1) * sizeof(*fs));
		if (!v || !fs)
			return -ENOMEM;
		r = inj_mem_read(tg->proc, ob[OB_U], v, (hdr[1] + 2) * sizeof(*v));
		if (r < 0)
			return r;
		if (moved_in(v[0], lo, hi))
			v[0] += (uint64_t)delta;
		for (uint64_t i = 0; i < hdr[1]; i++) {
			uint64_t fde = v[i + 2], pc;
			if (moved_in(fde, lo, hi))
				fde += (uint64_t)delta;
			if (fde < u->eh_frame || fde + 16 > u->eh_frame + u->eh_frame_size)
				return -EINVAL;
			memcpy(&pc, eh + (fde - u->eh_frame) + 8, sizeof(pc));
			fs[i] = (struct fde_sort){pc, fde};
		}
		qsort(fs, hdr[1], sizeof(*fs), cmp_fde_sort);
		for (uint64_t i = 0; i < hdr[1]; i++)
			v[i + 2] = fs[i].fde;
		if (hdr[1])
			ob[OB_PC_BEGIN] = fs[0].pc;
		r = inj_mem_write(tg->proc, ob[OB_U], v, (hdr[1] + 2) * sizeof(*v), NULL);
		if (r < 0)
			return r;
	} else {
		if (moved_in(ob[OB_U], lo, hi))
			ob[OB_U] += (uint64_t)delta;
		if (ob[OB_PC_BEGIN] != UINT64_MAX && moved_in(ob[OB_PC_BEGIN], lo, hi))
			ob[OB_PC_BEGIN] += (uint64_t)delta;
	}
	r = inj_mem_write(tg->proc, u->object, ob, sizeof(ob), NULL);
	if (r < 0 || u->object == old_object)
		return r;

	/* The links: the list heads libgcc's deregistration reads, and the objects on them. */
	nheads =
	    rip_data_refs(tg, module_find_func_by_name(u->libgcc, "__deregister_frame_info_bases"),
			  heads, ARRAY_SIZE(heads));
	for (size_t i = 0; i < nheads; i++) {
		uint64_t link = heads[i], v;
		for (int steps = 0; steps < 100000; steps++) {
			if (inj_mem_read(tg->proc, link, &v, sizeof(v)) < 0 || !v)
				break;
			if (v == old_object) {
				v = u->object;
				r = inj_mem_write(tg->proc, link, &v, sizeof(v), NULL);
				if (r < 0)
					return r;
				fixed++;
				break;
			}
			/* Only follow what looks like an object on a list: not code, not a lock. */
			if (v == u->object || module_set_find(set, v) || v == u->object_mutex)
				break;
			link = v + OB_NEXT * 8;
		}
	}
	if (!fixed)
		log_warn("%d: libgcc's list did not lead to optd's unwind record", tg->pid);
	return 0;
}

/* Byte ranges of the code image that a move changed, to write back. */
struct dirty {
	uint64_t *v; /* start, end pairs, image offsets */
	size_t n, cap;
};

static int dirty_add(struct dirty *d, uint64_t start, uint64_t end)
{
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 256;
		uint64_t *v = realloc(d->v, ncap * 2 * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = ncap;
	}
	d->v[2 * d->n] = start;
	d->v[2 * d->n + 1] = end;
	d->n++;
	return 0;
}

static int cmp_span(const void *a, const void *b)
{
	return cmp_u64(a, b);
}

/*
 * Writes the dirty ranges of the image to where their bytes are now, in as
 * few writes as the pieces allow: ranges less than a page apart join.
 */
static int dirty_write(struct target *tg, const struct relocation *rel, struct dirty *d)
{
	const struct inj_region *reg = tg->region;
	uint64_t code = reg->hdr.code_offset;

	qsort(d->v, d->n, 2 * sizeof(*d->v), cmp_span);
	for (size_t i = 0; i < d->n;) {
		uint64_t start = d->v[2 * i], end = d->v[2 * i + 1];
		uint64_t at = inj_region_addr(reg, code + start);
		const struct optd_region_piece *pc = inj_region_piece_at(reg, at);
		int r;

		if (!pc)
			return -EINVAL;
		for (i++; i < d->n && d->v[2 * i] < end + 4096; i++) {
			uint64_t e = d->v[2 * i + 1] > end ? d->v[2 * i + 1] : end;
			if (at + (e - start) > pc->addr + pc->len)
				break; /* the next range is in another piece */
			end = e;
		}
		r = inj_mem_write_ro(tg->proc, at, rel->image + start, end - start, NULL);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Points every applied entry patch whose copy is in [lo, hi) at its copy's
 * entry (f->dest), all sites read at once. A patch that cannot follow is
 * reported and left. 0, -ESRCH, -ENOMEM.
 */
static int retarget_entries(struct target *tg, struct relocation *rel, uint64_t lo, uint64_t hi)
{
	_cleanup_free_ struct inj_patch **patches = malloc((rel->n ?: 1) * sizeof(*patches));
	_cleanup_free_ struct reloc_func **funcs = malloc((rel->n ?: 1) * sizeof(*funcs));
	_cleanup_free_ uint64_t *targets = malloc((rel->n ?: 1) * sizeof(*targets));
	_cleanup_free_ int *results = malloc((rel->n ?: 1) * sizeof(*results));
	size_t n = 0;
	int r;

	if (!patches || !funcs || !targets || !results)
		return -ENOMEM;
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		if (!f->res || !f->patch.applied || !moved_in(f->dest, lo, hi))
			continue;
		funcs[n] = f;
		patches[n] = &f->patch;
		targets[n++] = f->dest + f->res->entry_patch_off;
	}
	r = inj_patch_retarget_all(tg->proc, patches, targets, n, results);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		if (results[k] == -ESRCH)
			return -ESRCH;
		if (results[k] < 0)
			log_warn("%d: the entry of %s could not follow its copy: %s", tg->pid,
				 funcs[k]->fn->name ? funcs[k]->fn->name : "?",
				 strerror(-results[k]));
	}
	return 0;
}

/* Whether a copy's relocation records lead into [lo, hi). */
static bool refers_into(const struct copier_result *res, uint64_t lo, uint64_t hi)
{
	for (size_t k = 0; k < res->n_relocs; k++)
		if (res->relocs[k].target_kind != COPIER_TARGET_INTERNAL &&
		    moved_in(res->relocs[k].target, lo, hi))
			return true;
	return false;
}

/* The image offset of target address addr in the code area, or -1. */
static int64_t image_off(const struct inj_region *reg, const struct relocation *rel, uint64_t addr,
			 size_t len)
{
	const struct optd_region_piece *pc = inj_region_piece_at(reg, addr);
	uint64_t off;

	if (!pc || addr + len > pc->addr + pc->len)
		return -1;
	off = pc->off + (addr - pc->addr);
	if (off < reg->hdr.code_offset || off - reg->hdr.code_offset + len > rel->image_len)
		return -1;
	return (int64_t)(off - reg->hdr.code_offset);
}

int relocate_moved(struct target *tg, struct relocation *rel, uint64_t old_start, uint64_t old_end,
		   int64_t delta)
{
	struct inj_region *reg = tg->region;
	struct unwind_reg *u = &rel->unwind;
	uint64_t old_object = u->object;
	struct dirty d = {0};
	uint8_t *eh = NULL;
	_cleanup_free_ uint32_t *which = NULL;
	size_t n;
	int r = 0;

	if (!rel->image)
		return 0;
	/* The part is at its new place in the pieces already. */
	r = part_copies(rel, reg, old_start + (uint64_t)delta, old_end + (uint64_t)delta, &which,
			&n);
	for (size_t j = 0; r == 0 && j < (which ? n : rel->n); j++) {
		struct reloc_func *f = &rel->funcs[which ? which[j] : j];
		bool moves;
		int64_t off;

		if (!f->res)
			continue;
		moves = moved_in(f->dest, old_start, old_end);
		/* Without the index, find the copies that refer into the part here. */
		if (!moves && !which && !refers_into(f->res, old_start, old_end))
			continue;
		off = image_off(reg, rel, moves ? f->dest + (uint64_t)delta : f->dest, f->size);
		if (off < 0) {
			r = -EINVAL;
			break;
		}
		r = copier_relocate(rel->image + off, f->res, old_start, old_end, delta);
		if (r == 0)
			r = dirty_add(&d, (uint64_t)off, (uint64_t)off + f->size);
		f->dest = f->res->dest_addr;
	}
	/* The copies' FDEs hold absolute pc_begin pointers (ehframe.h). */
	if (r == 0 && u->eh_frame) {
		int64_t off;
		bool changed = false;

		if (moved_in(u->eh_frame, old_start, old_end))
			u->eh_frame += (uint64_t)delta;
		off = image_off(reg, rel, u->eh_frame, u->eh_frame_size);
		if (off < 0)
			r = -EINVAL;
		else
			eh = rel->image + off;
		for (uint64_t o = 0; eh && o + 8 <= u->eh_frame_size;) {
			uint32_t len, id;
			memcpy(&len, eh + o, 4);
			if (!len || len == UINT32_MAX || o + 4 + len > u->eh_frame_size)
				break;
			memcpy(&id, eh + o + 4, 4);
			if (id && len >= 12) {
				uint64_t pc;
				memcpy(&pc, eh + o + 8, 8);
				if (moved_in(pc, old_start, old_end)) {
					pc += (uint64_t)delta;
					memcpy(eh + o + 8, &pc, 8);
					changed = true;
				}
			}
			o += 4 + len;
		}
		if (changed)
			r = dirty_add(&d, (uint64_t)off, (uint64_t)off + u->eh_frame_size);
	}
	if (u->trap && moved_in(u->trap, old_start, old_end))
		u->trap += (uint64_t)delta;
	if (r == 0)
		r = dirty_write(tg, rel, &d);
	free(d.v);
	if (r < 0)
		return r;
	r = retarget_entries(tg, rel, old_start + (uint64_t)delta, old_end + (uint64_t)delta);
	if (r < 0)
		return r;
	if (u->object && moved_in(u->object, old_start, old_end))
		u->object += (uint64_t)delta;
	if (u->registered)
		return unwind_moved(tg, rel, old_object, old_start, old_end, delta, eh);
	return 0;
}
