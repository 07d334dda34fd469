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
 * The current bytes at n patch sites (patches[k], or *pp[k] when pp is
 * given), read together, in *ret (malloc'd, n * INJ_PATCH_LEN bytes).
 */
static int read_sites(struct inj_process *proc, const struct inj_patch *patches,
		      struct inj_patch *const *pp, size_t n, uint8_t **ret)
{
	_cleanup_free_ uint64_t *addrs = malloc((n ? n : 1) * sizeof(*addrs));
	_cleanup_free_ uint8_t *cur = malloc((n ? n : 1) * INJ_PATCH_LEN);
	int r;

	if (!addrs || !cur)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++)
		addrs[k] = pp ? pp[k]->addr : patches[k].addr;
	r = inj_mem_read_many(proc, addrs, INJ_PATCH_LEN, cur, n);
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

		r = read_sites(proc, patches, NULL, n, &cur);
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
	rr = read_sites(proc, patches, NULL, n, &sites);
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

/* Rewrites p, whose site holds cur, to jump to target. */
static int retarget(struct inj_process *proc, struct inj_patch *p, const uint8_t *cur,
		    uint64_t target)
{
	struct inj_patch np;
	int r;

	if (!p->applied)
		return -EINVAL;
	r = inj_patch_prepare(p->addr, target, p->orig, &np);
	if (r < 0)
		return r;
	if (memcmp(cur, p->jmp, INJ_PATCH_LEN) != 0)
		return -ESTALE;
	r = inj_mem_write_ro(proc, p->addr, np.jmp, INJ_PATCH_LEN, NULL);
	if (r < 0)
		return r;
	np.applied = true;
	*p = np;
	return 0;
}

int inj_patch_retarget(struct inj_process *proc, struct inj_patch *p, uint64_t target)
{
	uint8_t cur[INJ_PATCH_LEN];
	int r;

	if (!p->applied)
		return -EINVAL;
	r = inj_mem_read(proc, p->addr, cur, sizeof(cur));
	if (r < 0)
		return r;
	return retarget(proc, p, cur, target);
}

int inj_patch_retarget_all(struct inj_process *proc, struct inj_patch *const *patches,
			   const uint64_t *targets, size_t n, int *results)
{
	_cleanup_free_ uint8_t *cur = NULL;
	int r = read_sites(proc, NULL, patches, n, &cur);

	if (r == -ESRCH || r == -ENOMEM)
		return r;
	/* A site that cannot be read (its module unmapped): each patch on its own. */
	for (size_t k = 0; k < n; k++)
		results[k] = r == 0
				 ? retarget(proc, patches[k], cur + k * INJ_PATCH_LEN, targets[k])
				 : inj_patch_retarget(proc, patches[k], targets[k]);
	return 0;
}
