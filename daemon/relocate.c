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
#include <unistd.h>

#include "copier.h"
#include "funcs.h"
#include "log.h"
#include "mem.h"
#include "patch.h"
#include "procfs.h"
#include "relocate.h"
#include "supervisor.h"
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
};

struct text_buf {
	uint64_t start, end;
	uint8_t *bytes;
};

struct relocation {
	struct module_set *set;
	struct reloc_func *funcs;
	size_t n;
	size_t cap;
	struct text_buf *texts;
	size_t n_texts;
	struct relocate_stats stats;
	char perf_map[64];
};

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

void relocate_forget_perf_map(struct relocation *rel)
{
	if (rel->perf_map[0])
		unlink(rel->perf_map);
	rel->perf_map[0] = 0;
}

void relocation_free(struct relocation *rel)
{
	if (!rel)
		return;
	for (size_t i = 0; i < rel->n; i++)
		copier_result_free(rel->funcs[i].res);
	for (size_t i = 0; i < rel->n_texts; i++)
		free(rel->texts[i].bytes);
	free(rel->texts);
	free(rel->funcs);
	free(rel->stats.refused);
	module_set_free(rel->set);
	free(rel);
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

/* An unwinder in the process could walk through copies, which have no unwind information yet. */
static const char *unwinder_of(const struct module_set *set)
{
	static const char *const unwinders[] = {"libgcc_s.so", "libstdc++.so", "libunwind.so",
						"libc++abi.so"};

	for (size_t i = 0; i < set->n; i++) {
		const char *base = strrchr(set->v[i]->path, '/');
		base = base ? base + 1 : set->v[i]->path;
		for (size_t k = 0; k < ARRAY_SIZE(unwinders); k++)
			if (strncmp(base, unwinders[k], strlen(unwinders[k])) == 0)
				return unwinders[k];
	}
	return NULL;
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

	const char *unwinder = unwinder_of(rel->set);
	if (unwinder) {
		rel->stats.blocked = "the process can unwind through relocated frames (it maps an "
				     "unwinder) and copies have no unwind information yet";
		log_debug("%d maps %s: relocating nothing", tg->pid, unwinder);
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
	*ret_bytes = bytes ? ALIGN_UP(bytes + bytes / 4 + 65536, 4096) : 0;
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

/* The copy of the function that starts at target, for calls between copies. */
static uint64_t redirect_to_copy(void *ctx, uint64_t target)
{
	struct relocation *rel = ctx;
	size_t lo = 0, hi = rel->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct reloc_func *f = &rel->funcs[mid];
		if (f->fn->start == target)
			return f->dest ? f->dest : 0;
		if (f->fn->start < target)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

int relocate_apply(struct target *tg, struct relocation *rel)
{
	struct inj_region *reg = tg->region;
	uint64_t base = reg->base + reg->hdr.code_offset, cap = reg->hdr.code_size, used = 0;
	_cleanup_free_ uint8_t *buf = NULL;
	int r;

	if (!rel->n)
		return 0;
	qsort(rel->funcs, rel->n, sizeof(rel->funcs[0]), cmp_orig);

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
		f->dest = base + used;
		f->size = res->size;
		used += ALIGN_UP(res->size, COPY_ALIGN);
		copier_result_free(res);
	}
	if (!used)
		return 0;

	/* Pass 2: emit with calls between copies going straight to the copies. */
	buf = malloc(used);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0xcc, used);
	for (size_t i = 0; i < rel->n; i++) {
		struct reloc_func *f = &rel->funcs[i];
		struct copier_refusal why = {0};
		struct copier_input in = {
		    .code = f->code,
		    .orig_addr = f->fn->start,
		    .len = f->fn->end - f->fn->start,
		    .dest_addr = f->dest,
		    .dest_cap = f->size,
		    .redirect = redirect_to_copy,
		    .redirect_ctx = rel,
		};

		if (!f->dest)
			continue;
		r = copier_copy(&in, buf + (f->dest - base), &f->res, &why);
		if (r < 0 || f->res->size != f->size) {
			count_refusal(rel, r == -ENOTSUP ? copier_reason_to_string(why.reason)
							 : "layout_changed");
			memset(buf + (f->dest - base), 0xcc, f->size);
			copier_result_free(f->res);
			f->res = NULL;
			f->dest = 0;
		}
	}
	/* The region is r-x: /proc/PID/mem writes through that, with every thread stopped. */
	r = inj_mem_write(tg->proc, base, buf, used, NULL);
	if (r < 0)
		return r;

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
			count_refusal(rel, "branch_into_entry_patch");
			f->res = (copier_result_free(f->res), NULL);
			continue;
		}
		if (inj_patch_prepare(f->fn->start + off, f->dest + off, f->code + off, &f->patch) <
		    0) {
			count_refusal(rel, "out_of_reach");
			f->res = (copier_result_free(f->res), NULL);
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
			count_refusal(rel, "thread_in_entry");
			f->res = (copier_result_free(f->res), NULL);
			continue;
		}
		r = inj_patch_apply(tg->proc, &f->patch, 1);
		if (r == -ESRCH)
			return r;
		if (r < 0) {
			count_refusal(rel, r == -ESTALE ? "changed_under_us" : "patch_failed");
			f->res = (copier_result_free(f->res), NULL);
			continue;
		}
		rel->stats.relocated++;
		rel->stats.code_bytes += f->size;
	}

	/* The header in the target says how much of the code area is used. */
	reg->hdr.code_used = used;
	reg->hdr.generation++;
	r = inj_mem_write(tg->proc, reg->base, &reg->hdr, sizeof(reg->hdr), NULL);
	return r == -ESRCH ? r : 0;
}

int relocate_undo(struct target *tg, struct relocation *rel)
{
	int first = 0;

	for (size_t i = 0; i < rel->n; i++) {
		int r;
		if (!rel->funcs[i].patch.applied)
			continue;
		r = inj_patch_undo(tg->proc, &rel->funcs[i].patch, 1);
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

int relocate_write_perf_map(struct relocation *rel, pid_t pid)
{
	_cleanup_fclose_ FILE *f = NULL;

	if (!rel->stats.relocated)
		return 0;
	snprintf(rel->perf_map, sizeof(rel->perf_map), "/tmp/perf-%d.map", pid);
	f = fopen(rel->perf_map, "we");
	if (!f) {
		rel->perf_map[0] = 0;
		return negerrno();
	}
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
