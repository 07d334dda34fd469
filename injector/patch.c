/*
 * Entry patches. See patch.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "patch.h"
#include "ptrace.h"
#include "util.h"

/* -ERESTART* codes as syscall results (include/linux/errno.h). */
static bool may_restart(const struct user_regs_struct *r)
{
	long ax = (long)r->rax;

	return (long)r->orig_rax >= 0 && (ax == -512 || ax == -513 || ax == -514 || ax == -516);
}

int inj_patch_prepare(uint64_t addr, uint64_t target, const uint8_t orig[INJ_PATCH_LEN],
		      struct inj_patch *ret)
{
	int64_t rel = (int64_t)(target - (addr + INJ_PATCH_LEN));
	int32_t rel32 = (int32_t)rel;

	if ((int64_t)rel32 != rel)
		return -ERANGE;
	*ret = (struct inj_patch){.addr = addr, .target = target};
	memcpy(ret->orig, orig, INJ_PATCH_LEN);
	ret->jmp[0] = 0xe9;
	memcpy(&ret->jmp[1], &rel32, sizeof(rel32));
	return 0;
}

int inj_patch_check_threads(struct inj_process *proc, const struct inj_patch *patches, size_t n,
			    bool *busy, pid_t *ret_tid)
{
	_cleanup_free_ uint64_t *ips = NULL;
	_cleanup_free_ pid_t *owners = NULL;
	size_t nips = 0;

	if (busy)
		memset(busy, 0, n * sizeof(*busy));
	if (!proc->nthreads || !n)
		return 0;
	ips = calloc(proc->nthreads * 2, sizeof(*ips));
	owners = calloc(proc->nthreads * 2, sizeof(*owners));
	if (!ips || !owners)
		return -ENOMEM;

	/* One GETREGS per thread; then every site against every ip. */
	for (size_t i = 0; i < proc->nthreads; i++) {
		struct inj_thread *t = proc->threads[i];
		struct user_regs_struct regs;
		int r;

		if (t->zombie)
			continue;
		if (t->stop == INJ_RUNNING)
			return -EBUSY; /* the contract: every thread stopped */
		r = inj_thread_getregs(t, &regs);
		if (r < 0)
			return r;
		ips[nips] = regs.rip;
		owners[nips++] = t->tid;
		/* Re-executed syscall instructions start 2 bytes back. */
		if (may_restart(&regs) || t->stop == INJ_STOP_SYSCALL_ENTRY ||
		    t->stop == INJ_STOP_SECCOMP) {
			ips[nips] = regs.rip - 2;
			owners[nips++] = t->tid;
		}
	}

	int nbusy = 0;
	for (size_t k = 0; k < n; k++) {
		bool hit = false;
		for (size_t i = 0; i < nips && !hit; i++) {
			if (ips[i] >= patches[k].addr && ips[i] < patches[k].addr + INJ_PATCH_LEN) {
				hit = true;
				if (!nbusy && ret_tid)
					*ret_tid = owners[i];
			}
		}
		if (busy)
			busy[k] = hit;
		nbusy += hit;
	}
	return nbusy;
}

/*
 * The current bytes at n patch sites (patches[k]), read together, in *ret
 * (malloc'd, n * INJ_PATCH_LEN bytes).
 */
static int read_sites(struct inj_process *proc, const struct inj_patch *patches, size_t n,
		      uint8_t **ret)
{
	_cleanup_free_ struct inj_mem_span *spans = malloc((n ? n : 1) * sizeof(*spans));
	_cleanup_free_ uint8_t *cur = malloc((n ? n : 1) * INJ_PATCH_LEN);
	int r;

	if (!spans || !cur)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++)
		spans[k] =
		    (struct inj_mem_span){patches[k].addr, INJ_PATCH_LEN, cur + k * INJ_PATCH_LEN};
	r = inj_mem_read_spans(proc, spans, n);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(cur);
	return 0;
}

int inj_patch_apply(struct inj_process *proc, struct inj_patch *patches, size_t n)
{
	size_t done = 0;
	int r = 0;

	/* Verify every site first: a site that changed (self-modifying code, a
	 * library reloaded) must not be overwritten with a jump computed for
	 * bytes that are no longer there. */
	{
		_cleanup_free_ uint8_t *cur = NULL;

		r = read_sites(proc, patches, n, &cur);
		if (r < 0)
			return r;
		for (size_t k = 0; k < n; k++)
			if (memcmp(cur + k * INJ_PATCH_LEN, patches[k].orig, INJ_PATCH_LEN) != 0)
				return -ESTALE;
	}
	for (; done < n; done++) {
		r = inj_mem_write_ro(proc, patches[done].addr, patches[done].jmp, INJ_PATCH_LEN,
				     NULL);
		if (r < 0)
			goto out_undo;
		patches[done].applied = true;
	}
	return 0;

out_undo:
	while (done-- > 0) {
		if (inj_mem_write_ro(proc, patches[done].addr, patches[done].orig, INJ_PATCH_LEN,
				     NULL) == 0)
			patches[done].applied = false;
	}
	return r;
}

int inj_patch_undo(struct inj_process *proc, struct inj_patch *patches, size_t n)
{
	_cleanup_free_ uint8_t *sites = NULL;
	int first = 0, rr;

	/* Every site at once; if that fails, each one on its own below. */
	rr = read_sites(proc, patches, n, &sites);
	for (size_t k = 0; k < n; k++) {
		uint8_t cur[INJ_PATCH_LEN];
		int r = 0;

		if (!patches[k].applied)
			continue;
		if (rr == 0)
			memcpy(cur, sites + k * INJ_PATCH_LEN, sizeof(cur));
		else
			r = inj_mem_read(proc, patches[k].addr, cur, sizeof(cur));
		if (r == 0 && memcmp(cur, patches[k].jmp, sizeof(cur)) != 0)
			r = -ESTALE; /* someone else rewrote it: not ours to restore */
		if (r == 0)
			r = inj_mem_write_ro(proc, patches[k].addr, patches[k].orig, INJ_PATCH_LEN,
					     NULL);
		if (r == 0)
			patches[k].applied = false;
		else if (!first)
			first = r;
	}
	return first;
}

/*
 * The patch that replaces p to jump to target, if p's site holds cur (its
 * jmp): 0 and *ret; -EINVAL (not applied), -ERANGE, -ESTALE.
 */
static int retargeted(const struct inj_patch *p, const uint8_t *cur, uint64_t target,
		      struct inj_patch *ret)
{
	int r;

	if (!p->applied)
		return -EINVAL;
	r = inj_patch_prepare(p->addr, target, p->orig, ret);
	if (r < 0)
		return r;
	if (memcmp(cur, p->jmp, INJ_PATCH_LEN) != 0)
		return -ESTALE;
	ret->applied = true;
	return 0;
}

int inj_patch_retarget(struct inj_process *proc, struct inj_patch *p, uint64_t target)
{
	uint8_t cur[INJ_PATCH_LEN];
	struct inj_patch np;
	int r;

	if (!p->applied)
		return -EINVAL;
	r = inj_mem_read(proc, p->addr, cur, sizeof(cur));
	if (r < 0)
		return r;
	r = retargeted(p, cur, target, &np);
	if (r < 0)
		return r;
	r = inj_mem_write_ro(proc, p->addr, np.jmp, INJ_PATCH_LEN, NULL);
	if (r < 0)
		return r;
	*p = np;
	return 0;
}

/* Patches this close together are read and rewritten as one range. */
#define SPAN_MAX 4096

struct site {
	size_t k;	     /* index into the caller's arrays */
	size_t span;	     /* the range it is read and written with */
	struct inj_patch np; /* what it becomes */
};

static int cmp_site(const void *a, const void *b, void *arg)
{
	struct inj_patch *const *patches = arg;
	uint64_t x = patches[((const struct site *)a)->k]->addr;
	uint64_t y = patches[((const struct site *)b)->k]->addr;

	return x < y ? -1 : x > y;
}

int inj_patch_retarget_all(struct inj_process *proc, struct inj_patch *const *patches,
			   const uint64_t *targets, size_t n, int *results)
{
	_cleanup_free_ struct site *sites = malloc((n ? n : 1) * sizeof(*sites));
	_cleanup_free_ struct inj_mem_span *spans = malloc((n ? n : 1) * sizeof(*spans));
	_cleanup_free_ uint8_t *buf = NULL;
	size_t nspans = 0, bytes = 0;
	int r;

	if (!sites || !spans)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++)
		sites[k] = (struct site){.k = k};
	qsort_r(sites, n, sizeof(*sites), cmp_site, (void *)patches);
	/* Ranges of sites no more than SPAN_MAX bytes from first to last byte. */
	for (size_t i = 0; i < n; i++) {
		uint64_t a = patches[sites[i].k]->addr;
		struct inj_mem_span *sp = nspans ? &spans[nspans - 1] : NULL;

		if (!sp || a + INJ_PATCH_LEN - sp->addr > SPAN_MAX) {
			sp = &spans[nspans++];
			*sp = (struct inj_mem_span){a, 0, (void *)(uintptr_t)bytes};
		}
		if (a + INJ_PATCH_LEN - sp->addr > sp->len) {
			bytes += a + INJ_PATCH_LEN - sp->addr - sp->len;
			sp->len = a + INJ_PATCH_LEN - sp->addr;
		}
		sites[i].span = nspans - 1;
	}
	buf = malloc(bytes ? bytes : 1);
	if (!buf)
		return -ENOMEM;
	for (size_t j = 0; j < nspans; j++)
		spans[j].buf = buf + (uintptr_t)spans[j].buf;
	r = inj_mem_read_spans(proc, spans, nspans);
	if (r == -ESRCH || r == -ENOMEM)
		return r;
	if (r < 0) {
		/* A site that cannot be read (its module unmapped): each patch on its own. */
		for (size_t k = 0; k < n; k++)
			results[k] = inj_patch_retarget(proc, patches[k], targets[k]);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct site *st = &sites[i];
		const struct inj_patch *p = patches[st->k];
		uint8_t *cur = (uint8_t *)spans[st->span].buf + (p->addr - spans[st->span].addr);

		results[st->k] = retargeted(p, cur, targets[st->k], &st->np);
		if (results[st->k] == 0)
			memcpy(cur, st->np.jmp, INJ_PATCH_LEN);
	}
	/* Each range in one write; the bytes between the sites are written as they were read. */
	for (size_t i = 0; i < n;) {
		size_t j = i, span = sites[i].span;
		bool changed = false;

		for (; j < n && sites[j].span == span; j++)
			changed |= results[sites[j].k] == 0;
		r = changed ? inj_mem_write_ro(proc, spans[span].addr, spans[span].buf,
					       spans[span].len, NULL)
			    : 0;
		for (; i < j; i++) {
			if (results[sites[i].k] != 0)
				continue;
			if (r < 0)
				results[sites[i].k] = r;
			else
				*patches[sites[i].k] = sites[i].np;
		}
	}
	return 0;
}
