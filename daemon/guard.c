/*
 * The guard: trapping the target's address-space requests that collide with
 * optd's pages, and moving the pages out of their way (guard.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guard.h"
#include "log.h"
#include "maps.h"
#include "mem.h"
#include "place.h"
#include "placement.h"
#include "procfs.h"
#include "ptrace.h"
#include "relocate.h"
#include "seccomp.h"
#include "stack.h"
#include "supervisor.h"
#include "syscall.h"
#include "target.h"
#include "util.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096ULL
/*
 * The window a filter guards: the region rounded out to 2 MiB, with a margin
 * on each side of the region's own rounded size plus 2 MiB, so that the
 * region (with its gap pages and alignment) fits in either margin and a move
 * that stays clear of the request needs no new filter.
 */
#define WINDOW_ALIGN (2ULL << 20)
#define WINDOW_MARGIN(size) (ALIGN_UP((size), WINDOW_ALIGN) + WINDOW_ALIGN)
/*
 * The kernel's cap on the instructions of all filters of a process
 * (MAX_INSNS_PER_PATH). It counts each filter after translation to eBPF,
 * which is longer (one more per RET, per two-way jump and per constant of
 * 2^31 or more: 164 for optd's 150), plus 4.
 */
#define KERNEL_FILTER_BUDGET 32768
#define FILTER_COST(n) ((n) + (n) / 4 + 3 + 4)
#define STACK_GUARD_GAP (1ULL << 20)

static int cap_sys_admin(pid_t pid, bool *ret)
{
	char path[64], line[256];
	_cleanup_fclose_ FILE *f = NULL;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : negerrno();
	while (fgets(line, sizeof(line), f)) {
		unsigned long long caps;
		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			*ret = caps & (1ULL << 21); /* CAP_SYS_ADMIN */
			return 0;
		}
	}
	return -EIO;
}

/*
 * Installs a filter for window w in every thread of tg (TSYNC), from a
 * stopped thread. The program is passed through the spare part of the
 * region's header page, which the kernel copies at the call.
 */
static int install_filter(struct target *tg, const struct inj_guard_window *w)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = guard_mm_owner(tg)->region;
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
	_cleanup_free_ struct sock_filter *prog = NULL;
	uint64_t scratch = reg->base + 1024;
	struct {
		uint16_t len;
		uint16_t pad[3];
		uint64_t filter;
	} fprog;
	size_t n;
	bool admin = false;
	long res;
	int r;

	if (!t)
		return -ESRCH;
	r = inj_seccomp_build(w, &prog, &n);
	if (r < 0)
		return r;
	if (g->filter_insns + FILTER_COST(n) > KERNEL_FILTER_BUDGET)
		return -E2BIG;
	if (sizeof(fprog) + n * sizeof(*prog) > OPTD_REGION_HEADER_PAGE - 1024)
		return -E2BIG;
	fprog = (typeof(fprog)){.len = (uint16_t)n, .filter = scratch + sizeof(fprog)};
	r = inj_mem_write(tg->proc, scratch, &fprog, sizeof(fprog), NULL);
	if (r == 0)
		r = inj_mem_write(tg->proc, scratch + sizeof(fprog), prog, n * sizeof(*prog), NULL);
	if (r < 0)
		return r;
	r = cap_sys_admin(tg->pid, &admin);
	if (r < 0)
		return r;
	if (!admin) {
		/* Without CAP_SYS_ADMIN the kernel accepts a filter only under no-new-privs. */
		r = inj_syscall(t, SYS_prctl, &res, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0);
		if (r < 0)
			return r;
		if (res < 0)
			return (int)res;
	}
	r = inj_syscall(t, SYS_seccomp, &res, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
			(long)scratch, 0, 0, 0);
	if (r < 0)
		return r;
	{
		/* The header page's spare bytes are zero again. */
		uint8_t zero[OPTD_REGION_HEADER_PAGE - 1024] = {0};
		(void)inj_mem_write(tg->proc, scratch, zero, sizeof(fprog) + n * sizeof(*prog),
				    NULL);
	}
	if (res > 0) {
		log_warn("%d: thread %ld cannot take optd's seccomp filter", tg->pid, res);
		return -EPERM;
	}
	if (res < 0)
		return (int)res;
	struct range *v = realloc(g->windows, (g->n_windows + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	g->windows = v;
	g->windows[g->n_windows++] = (struct range){w->start, w->end};
	g->filter_insns += FILTER_COST(n);
	log_debug("%d: seccomp filter %zu (%zu instructions) guards %#" PRIx64 "-%#" PRIx64,
		  tg->pid, g->n_windows, n, w->start, w->end);
	return 0;
}

static bool covered(const struct guard *g, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < g->n_windows; i++)
		if (g->windows[i].start <= start && g->windows[i].end >= end)
			return true;
	return false;
}

uint64_t guard_window_margin(uint64_t size)
{
	return WINDOW_MARGIN(size);
}

struct target *guard_mm_owner(struct target *tg)
{
	while (tg->mm_owner)
		tg = tg->mm_owner;
	return tg;
}

/* o is a vfork child that runs in owner's address space now. */
static bool borrows_from(const struct target *o, struct target *owner)
{
	return o != owner && o->mm_owner && o->proc && guard_mm_owner((struct target *)o) == owner;
}

/*
 * A stopped thread that can run remote syscalls in tg's address space: one
 * of its own or, when every thread of it is blocked in vfork, one of a vfork
 * child's (which runs in the same address space). NULL if there is none.
 */
static struct inj_thread *mm_thread(struct target *tg)
{
	struct target *owner = guard_mm_owner(tg);
	struct inj_thread *t = inj_process_pick_thread(tg->proc);

	if (!t && owner != tg)
		t = inj_process_pick_thread(owner->proc);
	for (struct target *o = tg->sv->targets; !t && o; o = o->next)
		if (borrows_from(o, owner))
			t = inj_process_pick_thread(o->proc);
	return t;
}

/*
 * Stops every vfork child that runs in owner's address space (it runs code
 * there: a move must find it stopped). One that exec'd or exited meanwhile
 * no longer shares it: the supervisor takes it as the event loop would.
 * 0, -errno.
 */
static int stop_borrowers(struct target *owner)
{
	struct target *next;

	for (struct target *o = owner->sv->targets; o; o = next) {
		int r;

		next = o->next;
		if (!borrows_from(o, owner))
			continue;
		r = inj_process_stop_but_vfork(o->proc);
		if (r == -ESRCH || r == -ECANCELED)
			target_stop_interrupted(o, r);
		else if (r < 0)
			return r;
	}
	return 0;
}

static void resume_borrowers(struct target *owner)
{
	for (struct target *o = owner->sv->targets; o; o = o->next)
		if (borrows_from(o, owner))
			(void)inj_process_resume(o->proc);
}

/* Everything that runs in owner's address space, stopped. 0, -ESRCH, -ECANCELED, -errno. */
static int stop_mm(struct target *owner)
{
	int r = stop_borrowers(owner);

	return r < 0 ? r : inj_process_stop_but_vfork(owner->proc);
}

/* Records the move for every thread of tg that is blocked in vfork. 0 or -ENOMEM. */
static int note_stale(struct target *tg, uint64_t old, uint64_t size, int64_t delta)
{
	struct guard *g = &tg->guard;

	for (size_t i = 0; i < tg->proc->nthreads; i++) {
		const struct inj_thread *t = tg->proc->threads[i];
		struct guard_stale *v;

		if (!t->vfork_wait || t->stop != INJ_RUNNING)
			continue;
		v = realloc(g->stale, (g->n_stale + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		g->stale = v;
		g->stale[g->n_stale++] = (struct guard_stale){t->tid, old, size, delta};
	}
	return 0;
}

/*
 * owner's region moved from [old, old + size) by delta, with everything in
 * its address space stopped; owner's own running threads are done. The
 * vfork children's threads in the old place follow the move, and threads
 * blocked in vfork (in owner or in a child) are noted, to be fixed when
 * they come back (guard_vfork_done()). 0, -ESRCH, -errno.
 */
static int mm_moved(struct target *owner, uint64_t old, uint64_t size, int64_t delta)
{
	int r = note_stale(owner, old, size, delta);

	for (struct target *o = owner->sv->targets; r == 0 && o; o = o->next) {
		if (!borrows_from(o, owner))
			continue;
		r = note_stale(o, old, size, delta);
		for (size_t i = 0; r == 0 && i < o->proc->nthreads; i++) {
			struct inj_thread *t = o->proc->threads[i];
			struct user_regs_struct regs;

			if (t->zombie || t->stop == INJ_RUNNING || inj_thread_getregs(t, &regs) < 0)
				continue;
			if (regs.rip - old >= size)
				continue;
			regs.rip += (uint64_t)delta;
			r = inj_thread_setregs(t, &regs);
		}
	}
	return r;
}

/*
 * The old places of moves that threads blocked in vfork have yet to see:
 * the region must not move there, or an address that still leads to an old
 * place could not be told from one into the new. 0 or -ENOMEM.
 */
static int avoid_stale(struct target *owner, struct rangeset *avoid)
{
	for (struct target *o = owner->sv->targets; o; o = o->next) {
		if (o != owner && !borrows_from(o, owner))
			continue;
		for (size_t i = 0; i < o->guard.n_stale; i++) {
			const struct guard_stale *st = &o->guard.stale[i];
			int r = rangeset_add(avoid, st->old, st->old + st->size);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/*
 * A filter cannot go in (the kernel's room for a process's filters is used
 * up, or the call failed): trap with PTRACE_SYSCALL from now on, rather than
 * let requests near the region's new place through. Said once per process:
 * no filter is tried again.
 */
static void guard_fall_back(struct target *tg, int err)
{
	if (err == -E2BIG || err == -ENOMEM)
		log_warn("%d: no room for another seccomp filter (the kernel caps a process's "
			 "filters): guarding optd's pages with PTRACE_SYSCALL from now on, which "
			 "stops at every syscall",
			 tg->pid);
	else
		log_warn("%d: cannot install a seccomp filter to guard optd's pages (%s): guarding "
			 "with PTRACE_SYSCALL from now on, which stops at every syscall",
			 tg->pid, strerror(-err));
	tg->guard.syscall_mode = true;
	tg->guard.active = true;
	tg->proc->resume_with_syscall = true;
}

/*
 * Installs window w in tg, or falls back to PTRACE_SYSCALL. When every
 * thread of tg is blocked in vfork (none can run the call), the window
 * waits for the first of them to come back (guard_vfork_done()): they run
 * nothing of their own until then. 0 or -ESRCH.
 */
static int guard_add_window(struct target *tg, const struct inj_guard_window *w)
{
	struct guard *g = &tg->guard;
	int r;

	if (g->syscall_mode || covered(g, w->start, w->end))
		return 0;
	if (!inj_process_pick_thread(tg->proc) && !tg->proc->exited) {
		g->window_pending = true;
		g->pending = (struct range){w->start, w->end};
		return 0;
	}
	r = install_filter(tg, w);
	if (r == -ESRCH)
		return r;
	if (r < 0)
		guard_fall_back(tg, r);
	return 0;
}

/*
 * With --pid the filter outlives optd (DESIGN.md, "After optd is gone"):
 * the window keeps clear of what the region keeps clear of, so that after
 * detach it holds no mapping of the target's and is in the way of neither
 * the heap's nor the stack's growth. It stays a page away from every
 * mapping around the region (a reservation there never merges with one of
 * the target's), out of the break's reserve (--heap-reserve) when the
 * region is above the heap, below the heap's start when the region is (then
 * the filter never traps brk), and out of the main stack's growth area.
 * It never shrinks below the piece [rs, re) itself.
 */
static int clip_window(struct target *tg, uint64_t rs, uint64_t re, struct inj_guard_window *w)
{
	uint64_t lo = w->start, hi = w->end, brk = tg->guard.start_brk;
	_cleanup_(maps_freep) struct maps *m = NULL;
	const struct maps_entry *stack;
	int r;

	r = maps_read(tg->pid, &m);
	if (r < 0)
		return r;
	for (size_t i = 0; i < m->n; i++) {
		const struct maps_entry *e = &m->v[i];

		if (e->end <= rs && e->end + PAGE > lo)
			lo = e->end + PAGE;
		else if (e->start >= re && e->start - PAGE < hi)
			hi = e->start - PAGE;
		if (e->kind == MAPS_HEAP)
			brk = e->end;
	}
	if (brk && brk <= rs) {
		uint64_t reserve = tg->sv->opt->heap_reserve;
		uint64_t top = brk > UINT64_MAX - reserve - PAGE ? UINT64_MAX & ~(PAGE - 1)
								 : ALIGN_UP(brk + reserve, PAGE);
		if (top > lo)
			lo = top;
	}
	if (tg->guard.start_brk && re <= tg->guard.start_brk &&
	    ALIGN_DOWN(tg->guard.start_brk, PAGE) < hi)
		hi = ALIGN_DOWN(tg->guard.start_brk, PAGE);
	stack = maps_find_kind(m, MAPS_STACK);
	if (stack && re <= stack->start) {
		uint64_t lim = 4ULL << 30, floor;
		struct rlimit rl;

		if (prlimit(tg->pid, RLIMIT_STACK, NULL, &rl) == 0 &&
		    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < lim)
			lim = rl.rlim_cur;
		floor = stack->end > lim + STACK_GUARD_GAP ? stack->end - lim - STACK_GUARD_GAP : 0;
		if (ALIGN_DOWN(floor, PAGE) < hi)
			hi = ALIGN_DOWN(floor, PAGE);
	}
	w->start = lo < rs ? lo : rs;
	w->end = hi > re ? hi : re;
	return 0;
}

/*
 * A filter for every piece of the region that no filter guards yet, in tg
 * and in every vfork child that runs in its address space (each holds
 * filters of its own).
 */
static int guard_window(struct target *tg)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = tg->region;

	if (g->syscall_mode)
		return 0;
	for (unsigned i = 0; i < reg->n_pieces; i++) {
		const struct optd_region_piece *pc = &reg->pieces[i];
		uint64_t margin = WINDOW_MARGIN(reg->size);
		struct inj_guard_window w;
		int r;

		if (covered(g, pc->addr, pc->addr + pc->len))
			continue;
		w.start = ALIGN_DOWN(pc->addr, WINDOW_ALIGN);
		w.start = w.start > margin ? w.start - margin : PAGE;
		w.end = ALIGN_UP(pc->addr + pc->len, WINDOW_ALIGN) + margin;
		w.brk_start = g->start_brk;
		w.tag = g->tag;
		if (tg->sv->opt->mode == OPTD_MODE_PID) {
			r = clip_window(tg, pc->addr, pc->addr + pc->len, &w);
			if (r == -ESRCH)
				return r;
			if (r < 0) {
				guard_fall_back(tg, r);
				return 0;
			}
		}
		r = guard_add_window(tg, &w);
		for (struct target *o = tg->sv->targets; r == 0 && o; o = o->next)
			if (borrows_from(o, tg) && guard_add_window(o, &w) == -ESRCH)
				log_debug("vfork child %d is gone", o->pid);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * The tag of the process's filters: 62 random bits, each 32-bit half below
 * 2^31 (constants the kernel translates to one instruction) and odd (never
 * a page-aligned offset).
 */
static uint64_t new_tag(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = now_us() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32;
	return (v & 0x7fffffff7fffffffULL) | 1;
}

int guard_install(struct target *tg)
{
	struct guard *g = &tg->guard;
	struct procfs_stat ps;
	int r;

	if (!tg->region)
		return 0;
	if (procfs_read_stat(tg->pid, &ps) == 0)
		g->start_brk = ps.start_brk;
	if (tg->sv->opt->no_seccomp) {
		g->syscall_mode = true;
		tg->proc->resume_with_syscall = true;
		g->active = true;
		return 0;
	}
	if (!g->tag)
		g->tag = new_tag();
	r = guard_window(tg);
	if (r < 0)
		return r;
	tg->proc->syscall_tag = g->tag;
	g->active = true;
	return 0;
}

int guard_inherit(struct target *child, const struct target *parent)
{
	const struct guard *p = &parent->guard;
	struct guard *g = &child->guard;

	*g = *p;
	g->windows = NULL;
	g->window_pending = false;
	g->stale = NULL;
	g->n_stale = 0;
	g->reserved = NULL;
	g->n_reserved = 0;
	if (p->n_windows) {
		g->windows = malloc(p->n_windows * sizeof(*g->windows));
		if (!g->windows)
			return -ENOMEM;
		memcpy(g->windows, p->windows, p->n_windows * sizeof(*g->windows));
	}
	if (g->syscall_mode)
		child->proc->resume_with_syscall = true;
	if (g->n_windows)
		child->proc->syscall_tag = g->tag;
	return 0;
}

size_t guard_filter_room(const struct guard *g)
{
	return g->filter_insns < KERNEL_FILTER_BUDGET ? KERNEL_FILTER_BUDGET - g->filter_insns : 0;
}

void guard_free(struct guard *g)
{
	free(g->windows);
	g->windows = NULL;
	g->n_windows = 0;
	free(g->stale);
	g->stale = NULL;
	g->n_stale = 0;
	free(g->reserved);
	g->reserved = NULL;
	g->n_reserved = 0;
}

/* ---- moving the region ---- */

/*
 * Where size bytes of the region may go: within rel32 reach of [lo, hi)
 * (the main executable when both are 0), clear of avoid and, if within is
 * given, inside it.
 */
static int choose_place(struct target *tg, const struct rangeset *avoid, const struct range *within,
			uint64_t size, uint64_t lo, uint64_t hi, uint64_t *ret_addr)
{
	const struct optd_options *opt = tg->sv->opt;
	struct inj_thread *t = mm_thread(tg);
	const struct maps *m = NULL;
	_cleanup_(rangeset_free) struct rangeset all = RANGESET_INIT;
	struct inj_place_policy policy = {
	    .heap_reserve = opt->heap_reserve,
	    .stack_guard_gap = STACK_GUARD_GAP,
	    .gap = PAGE,
	    .start_brk = tg->guard.start_brk,
	};
	uint64_t align = size >= INJ_HUGE_PAGE ? INJ_HUGE_PAGE : PAGE;
	struct procfs_stat ps;
	int r;

	if (!t)
		return -ESRCH;
	r = inj_process_maps(tg->proc, &m);
	if (r < 0)
		return r;
	if (lo >= hi) {
		lo = hi = 0;
		if (procfs_read_stat(tg->pid, &ps) == 0 && ps.start_code) {
			const struct maps_entry *e = maps_find(m, ps.start_code);
			if (e && e->path)
				(void)maps_span_of(m, e->path, &lo, &hi);
		}
	}
	r = placement_after_hit(tg, m, lo, hi, size, ret_addr);
	if (r != -ENOENT)
		return r;
	for (size_t i = 0; i < avoid->n; i++) {
		r = rangeset_add(&all, avoid->v[i].start, avoid->v[i].end);
		if (r < 0)
			return r;
	}
	r = supervisor_hint_ranges(&all);
	if (r < 0)
		return r;
	if (within) {
		if (within->start > PAGE && (r = rangeset_add(&all, 0, within->start)) < 0)
			return r;
		if ((r = rangeset_add(&all, within->end, UINT64_MAX & ~(PAGE - 1))) < 0)
			return r;
	}
	policy.avoid = &all;
	r = inj_region_find_place(t, m, lo, hi, size, align, &policy, ret_addr);
	if (r == -ENOSPC && align > PAGE)
		r = inj_region_find_place(t, m, lo, hi, size, PAGE, &policy, ret_addr);
	return r;
}

/* Moves every mapping of [old, old + size) by delta with remote mremaps. */
static int remap_pages(struct target *tg, uint64_t old, uint64_t size, int64_t delta)
{
	struct inj_thread *t = mm_thread(tg);
	const struct maps *m = NULL;
	int r;

	if (!t)
		return -ESRCH;
	r = inj_process_maps(tg->proc, &m);
	if (r < 0)
		return r;
	for (size_t i = 0; i < m->n; i++) {
		const struct maps_entry *e = &m->v[i];
		uint64_t s = e->start > old ? e->start : old;
		uint64_t x = e->end < old + size ? e->end : old + size;
		long res;

		if (s >= x)
			continue;
		r = inj_syscall(t, SYS_mremap, &res, (long)s, (long)(x - s), (long)(x - s),
				MREMAP_MAYMOVE | MREMAP_FIXED, (long)(s + (uint64_t)delta), 0);
		if (r < 0)
			return r;
		if (res < 0 && res > -4096)
			return (int)res;
	}
	return 0;
}

/*
 * The part of tg's region that must move out of avoid: the pages of one
 * piece that meet it, widened so that no copy straddles the part's ends.
 * The whole piece when the region holds no copies yet (it stays in one
 * piece for the copies to come) or the piece table is full. Pieces that
 * meet done (put there by the move in progress) are left alone. -ENOENT
 * when nothing meets avoid.
 */
static int part_to_move(struct target *tg, const struct rangeset *avoid,
			const struct rangeset *done, uint64_t *ret_lo, uint64_t *ret_hi)
{
	struct inj_region *reg = tg->region;

	for (unsigned i = 0; i < reg->n_pieces; i++) {
		const struct optd_region_piece *pc = &reg->pieces[i];
		uint64_t lo = UINT64_MAX, hi = 0;

		if (rangeset_overlaps(done, pc->addr, pc->addr + pc->len))
			continue; /* placed by this move (adversarial placement may aim at avoid) */

		for (size_t k = 0; k < avoid->n; k++) {
			uint64_t s = avoid->v[k].start > pc->addr ? avoid->v[k].start : pc->addr;
			uint64_t e = avoid->v[k].end < pc->addr + pc->len ? avoid->v[k].end
									  : pc->addr + pc->len;
			if (s >= e)
				continue;
			lo = ALIGN_DOWN(s, PAGE) < lo ? ALIGN_DOWN(s, PAGE) : lo;
			hi = ALIGN_UP(e, PAGE) > hi ? ALIGN_UP(e, PAGE) : hi;
		}
		if (lo >= hi)
			continue;
		if (!tg->rel || !relocate_stats(tg->rel)->relocated ||
		    reg->n_pieces + 2 > OPTD_REGION_MAX_PIECES ||
		    relocate_atoms(tg->rel, &lo, &hi) < 0 || lo < pc->addr ||
		    hi > pc->addr + pc->len) {
			lo = pc->addr;
			hi = pc->addr + pc->len;
		}
		*ret_lo = lo;
		*ret_hi = hi;
		return 0;
	}
	return -ENOENT;
}

/*
 * Moves the part [old, old + size) of tg's region out of avoid, and every
 * reference to it: copies, entry patches, FDEs and libgcc's record
 * (relocate_moved()), thread instruction pointers, the return addresses
 * ras (whose ips follow), the header and the perf map. *ret_addr: where
 * the part went.
 */
static int move_part(struct target *tg, const struct rangeset *avoid, uint64_t old, uint64_t size,
		     struct target_return *ras, size_t n_ras, uint64_t *ret_addr)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = tg->region;
	uint64_t addr = 0, lo = 0, hi = 0, t0 = now_us(), t_place, t_remap;
	int64_t delta;
	int r;

	if (tg->rel && relocate_reach_part(tg->rel, reg, old, old + size, &lo, &hi) < 0)
		lo = hi = 0;
	/* Inside the newest window if there is room, so that no new filter is needed. */
	r = g->n_windows
		? choose_place(tg, avoid, &g->windows[g->n_windows - 1], size, lo, hi, &addr)
		: -ENOSPC;
	if (r == -ENOSPC)
		r = choose_place(tg, avoid, NULL, size, lo, hi, &addr);
	if (r < 0)
		return r;
	t_place = now_us();
	delta = (int64_t)(addr - old);
	r = remap_pages(tg, old, size, delta);
	if (r < 0)
		return r;
	t_remap = now_us();
	r = inj_region_move_part(reg, old, old + size, addr);
	if (r < 0)
		return r;
	reg->hdr.generation++;
	r = inj_region_write_header(tg->proc, reg);
	if (r < 0)
		return r;
	if (tg->rel) {
		r = relocate_moved(tg, tg->rel, old, old + size, delta);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < tg->proc->nthreads; i++) {
		struct inj_thread *t = tg->proc->threads[i];
		struct user_regs_struct regs;

		if (t->zombie || inj_thread_getregs(t, &regs) < 0)
			continue;
		if (regs.rip < old || regs.rip >= old + size)
			continue;
		regs.rip += (uint64_t)delta;
		r = inj_thread_setregs(t, &regs);
		if (r < 0)
			return r;
	}
	r = mm_moved(tg, old, size, delta);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_ras; i++) {
		if (ras[i].ip < old || ras[i].ip >= old + size)
			continue;
		ras[i].ip += (uint64_t)delta;
		r = inj_mem_write(tg->proc, ras[i].slot, &ras[i].ip, sizeof(ras[i].ip), NULL);
		if (r < 0)
			return r;
	}
	r = guard_window(tg);
	if (r < 0)
		return r;
	tg->sv->gstats.moves++;
	log_debug("%d: region part %#" PRIx64 "-%#" PRIx64 " moved to %#" PRIx64
		  " (%u pieces; µs: place %" PRIu64 ", remap %" PRIu64 ", fix-ups %" PRIu64 ")",
		  tg->pid, old, old + size, addr, reg->n_pieces, t_place - t0, t_remap - t_place,
		  now_us() - t_remap);
	*ret_addr = addr;
	return 0;
}

/*
 * Moves what of tg's region meets avoid (the colliding request's ranges)
 * out of its way: only those pages, widened to whole copies (part_to_move()).
 * The world is stopped. Afterwards nothing of the target refers to the old
 * places.
 */
static int move_region(struct target *tg, const struct rangeset *avoid)
{
	_cleanup_free_ struct target_return *ras = NULL;
	_cleanup_(rangeset_free) struct rangeset done = RANGESET_INIT;
	size_t n_ras = 0, incomplete = 0;
	uint64_t lo, hi;
	int r, parts = 0;

	if (tg->rel) {
		r = relocate_unshare(&tg->rel);
		if (r < 0)
			return r;
		r = target_region_returns(tg, &ras, &n_ras, &incomplete);
		if (r < 0)
			return r;
		if (incomplete)
			log_warn(
			    "%d: %zu stacks could not be walked to their end before optd's pages "
			    "moved: a return into the old place may remain",
			    tg->pid, incomplete);
	}
	while ((r = part_to_move(tg, avoid, &done, &lo, &hi)) == 0) {
		uint64_t to;

		if (++parts > 2 * OPTD_REGION_MAX_PIECES)
			return -ELOOP;
		r = move_part(tg, avoid, lo, hi - lo, ras, n_ras, &to);
		if (r == 0)
			r = rangeset_add(&done, to, to + (hi - lo));
		if (r < 0)
			return r;
	}
	if (!parts)
		return -ENOENT;
	target_region_moved(tg);
	return 0;
}

/* ---- traps ---- */

static void note_latency(struct guard_stats *s, uint64_t us)
{
	if (s->n_latency == s->cap_latency) {
		size_t ncap = s->cap_latency ? s->cap_latency * 2 : 256;
		uint32_t *v = realloc(s->latency_us, ncap * sizeof(*v));
		if (!v)
			return;
		s->latency_us = v;
		s->cap_latency = ncap;
	}
	s->latency_us[s->n_latency++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static bool request_meets_region(const struct inj_request *req, const struct inj_region *reg)
{
	for (unsigned i = 0; i < reg->n_pieces; i++)
		if (inj_request_overlaps(req, reg->pieces[i].addr,
					 reg->pieces[i].addr + reg->pieces[i].len))
			return true;
	return false;
}

/* A stop of optd's filter (not one of the target's own), or a syscall entry with --no-seccomp. */
static bool at_request_stop(const struct target *tg, const struct inj_thread *t)
{
	return (t->stop == INJ_STOP_SECCOMP && !inj_thread_at_foreign_seccomp(t)) ||
	       (tg->guard.syscall_mode && t->stop == INJ_STOP_SYSCALL_ENTRY);
}

/*
 * If thread t's pending request collides with tg's region, moves the region
 * (tg's world is stopped; t is tg's or a vfork child's that runs in tg's
 * address space, and the children are stopped here if they are not yet).
 * *ret_moved tells whether it did.
 */
static int handle_request(struct target *tg, struct inj_thread *t, bool *ret_moved)
{
	struct inj_region *reg = tg->region;
	struct inj_request req;
	_cleanup_(rangeset_free) struct rangeset avoid = RANGESET_INIT;
	int r;

	*ret_moved = false;
	r = inj_thread_request(t, tg->guard.start_brk, &req);
	if (r < 0)
		return r == -EINVAL ? 0 : r;
	if (!reg || !request_meets_region(&req, reg))
		return 0;
	log_debug("thread %d of %d: %s request collides with optd's pages (syscall %ld, %#" PRIx64
		  ", %#" PRIx64 ")",
		  t->tid, tg->pid, inj_request_kind_name(req.kind), req.nr, req.args[0],
		  req.args[1]);
	for (unsigned i = 0; i < req.n_ranges; i++) {
		r = rangeset_add(&avoid, req.ranges[i].start, req.ranges[i].end);
		if (r < 0)
			return r;
	}
	placement_note_request(tg, &req);
	r = avoid_stale(tg, &avoid);
	if (r == 0)
		r = stop_borrowers(tg);
	if (r < 0)
		return r;
	r = move_region(tg, &avoid);
	if (r < 0)
		return r;
	tg->sv->gstats.collisions[req.kind]++;
	tg->sv->gstats.colliding++;
	*ret_moved = true;
	return 0;
}

/* Looks at the threads of p (tg's or a vfork child's) that sit at a request stop. */
static int process_requests(struct target *tg, struct target *p, bool *ret_moved)
{
	for (size_t i = 0; i < p->proc->nthreads; i++) {
		struct inj_thread *t = p->proc->threads[i];
		bool moved;
		int r;

		if (!p->guard.active || !at_request_stop(p, t))
			continue;
		r = handle_request(tg, t, &moved);
		if (r < 0)
			return r;
		*ret_moved |= moved;
	}
	return 0;
}

int guard_before_resume(struct target *tg)
{
	bool moved = false;
	int r = 0;

	if (!tg->guard.active || !tg->region)
		return 0;
	/* A move can put the region where another pending request points: look again. */
	for (int round = 0; r == 0 && round < 8; round++) {
		bool any = false;

		r = process_requests(tg, tg, &any);
		for (struct target *o = tg->sv->targets; r == 0 && o; o = o->next)
			if (borrows_from(o, tg))
				r = process_requests(tg, o, &any);
		moved |= any;
		if (!any)
			break;
	}
	/* The vfork children a move stopped run again with tg's world. */
	if (moved)
		resume_borrowers(tg);
	return r;
}

/*
 * A SIGSEGV from the main stack failing to grow because a piece of the
 * region is in the way. The piece lies below [stack] with nothing between
 * them, and the fault is where the stack would have grown: in the guard gap
 * above the piece (SEGV_MAPERR), inside the piece (SEGV_ACCERR: a frame
 * larger than the gap wrote to its pages), or below it with nothing between
 * (SEGV_MAPERR: a frame that jumped past it).
 */
static int stack_growth_fault(struct target *tg, struct inj_thread *t, struct range *ret_area)
{
	struct inj_region *reg = tg->region;
	_cleanup_(maps_freep) struct maps *m = NULL;
	const struct maps_entry *stack;
	uint64_t addr = (uint64_t)(uintptr_t)t->siginfo.si_addr, start = 0, end = 0;
	bool beyond = false;
	struct rlimit rl;
	int r;

	if (!reg)
		return 0;
	if (!t->have_siginfo) {
		r = (int)inj_ptrace(PTRACE_GETSIGINFO, t->tid, 0, (uint64_t)(uintptr_t)&t->siginfo);
		if (r < 0)
			return r;
		t->have_siginfo = true;
		addr = (uint64_t)(uintptr_t)t->siginfo.si_addr;
	}
	/* The highest piece the fault can be blamed on: only it can lie right below [stack]. */
	for (unsigned i = 0; i < reg->n_pieces; i++) {
		uint64_t ps = reg->pieces[i].addr, pe = ps + reg->pieces[i].len;
		bool maperr = t->siginfo.si_code == SEGV_MAPERR;
		bool in_gap = maperr && addr >= pe && addr < pe + STACK_GUARD_GAP + PAGE;
		bool in_piece = t->siginfo.si_code == SEGV_ACCERR && addr >= ps && addr < pe;

		if ((in_gap || in_piece || (maperr && addr < ps)) && ps > start) {
			start = ps;
			end = pe;
			beyond = !in_gap && !in_piece;
		}
	}
	if (!end)
		return 0;
	r = maps_read(tg->pid, &m);
	if (r < 0)
		return r;
	stack = maps_find_kind(m, MAPS_STACK);
	if (!stack || stack->start < end || addr >= stack->start)
		return 0;
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].start >= end && m->v[i].start < stack->start)
			return 0; /* something else lies between: not ours to fix */
		if (beyond && m->v[i].end > addr && m->v[i].start < start)
			return 0; /* the first mapping above the fault is not the piece */
	}
	if (prlimit(tg->pid, RLIMIT_STACK, NULL, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > stack->end)
		rl.rlim_cur = stack->end - addr;
	*ret_area =
	    (struct range){stack->end - rl.rlim_cur > STACK_GUARD_GAP
			       ? ALIGN_DOWN(stack->end - rl.rlim_cur - STACK_GUARD_GAP, PAGE)
			       : 0,
			   stack->end};
	if (ret_area->start > ALIGN_DOWN(addr, PAGE) - STACK_GUARD_GAP)
		ret_area->start = ALIGN_DOWN(addr, PAGE) - STACK_GUARD_GAP;
	return 1;
}

bool guard_on_stop(struct target *tg, struct inj_thread *t, const struct inj_stop *st)
{
	struct guard_stats *s = &tg->sv->gstats;
	/* A vfork child's requests are checked against the region of the address space it borrows.
	 */
	struct target *owner = guard_mm_owner(tg);
	struct inj_region *reg = owner->region;
	struct inj_request req;
	struct range area = {0, 0};
	uint64_t t0 = now_us(), t_stopped, t_moved;
	bool stack = false;
	int r;

	if (!tg->guard.active || !reg)
		return false;
	if (at_request_stop(tg, t)) {
		s->traps++;
		r = inj_thread_request(t, owner->guard.start_brk, &req);
		if (r < 0 || !request_meets_region(&req, reg))
			return false; /* resumed at once by the caller */
	} else if (owner == tg && st->kind == INJ_STOP_SIGNAL && st->sig == SIGSEGV) {
		r = stack_growth_fault(tg, t, &area);
		if (r <= 0)
			return false;
		stack = true;
	} else {
		return false;
	}

	/* Every process that runs in the address space: the owner and its vfork children. */
	r = stop_mm(owner);
	if (r == -ESRCH || r == -ECANCELED) {
		/* The owner exited or exec'd: its children go on; the supervisor takes the rest. */
		resume_borrowers(owner);
		target_stop_interrupted(owner, r);
		return true;
	}
	t_stopped = now_us();
	if (r == 0 && stack) {
		_cleanup_(rangeset_free) struct rangeset avoid = RANGESET_INIT;
		placement_note_stack(tg, (uint64_t)(uintptr_t)t->siginfo.si_addr);
		r = rangeset_add(&avoid, area.start, area.end);
		if (r == 0)
			r = avoid_stale(tg, &avoid);
		if (r == 0)
			r = move_region(tg, &avoid);
		if (r == 0) {
			s->stack++;
			s->colliding++;
			/* The faulting instruction runs again, and the stack grows. */
			t->sig = 0;
			t->have_siginfo = false;
		}
	}
	if (r == 0)
		r = guard_before_resume(owner);
	/* -ESRCH: a process died under the move; the others go on, their exits follow. */
	if (r < 0 && r != -ESRCH)
		log_error("%d: cannot move optd's pages out of the way of the target's request: %s",
			  tg->pid, strerror(-r));
	t_moved = now_us();
	if (r != -ESRCH)
		note_latency(s, t_moved - t0);
	resume_borrowers(owner);
	(void)inj_process_resume(owner->proc);
	log_debug("%d: collision handled in %" PRIu64 " µs: stop %" PRIu64 ", move %" PRIu64
		  ", resume %" PRIu64,
		  owner->pid, now_us() - t0, t_stopped - t0, t_moved - t_stopped,
		  now_us() - t_moved);
	target_after_move(owner);
	return true;
}

/* ---- after a vfork ---- */

/* The moves one thread blocked in vfork did not see, oldest first. */
struct stale_walk {
	struct target *owner; /* whose region moved */
	const struct guard_stale *v;
	size_t n;
};

/* Where v leads now if it led into a place the region left (true), else v (false). */
static bool stale_now(const struct stale_walk *c, uint64_t v, uint64_t *ret)
{
	bool hit = false;

	for (size_t i = 0; i < c->n; i++) {
		if (v - c->v[i].old < c->v[i].size) {
			v += (uint64_t)c->v[i].delta;
			hit = true;
		}
	}
	*ret = v;
	return hit;
}

/* The stack walker's view of a copy, at its old place or its current one. */
static int translate_stale(void *opaque, uint64_t ip, uint64_t *ret_orig)
{
	const struct stale_walk *c = opaque;
	const struct inj_region *reg = c->owner->region;
	uint64_t orig;

	(void)stale_now(c, ip, &ip);
	if (!reg || !c->owner->rel || !inj_region_contains(reg, ip))
		return -ENOENT;
	orig = relocate_copy_to_orig(c->owner->rel, ip);
	if (!orig)
		return -EINVAL;
	*ret_orig = orig;
	return 0;
}

/* Takes tg's records for thread tid out of its list, oldest first. 0 or -ENOMEM. */
static int take_stale(struct guard *g, pid_t tid, struct guard_stale **ret, size_t *ret_n)
{
	struct guard_stale *v;
	size_t n = 0, k = 0;

	for (size_t i = 0; i < g->n_stale; i++)
		n += g->stale[i].tid == tid;
	*ret = NULL;
	*ret_n = 0;
	if (!n)
		return 0;
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < g->n_stale; i++) {
		if (g->stale[i].tid == tid)
			v[n++] = g->stale[i];
		else
			g->stale[k++] = g->stale[i];
	}
	g->n_stale = k;
	*ret = v;
	*ret_n = n;
	return 0;
}

/*
 * Thread t of tg came back from vfork (stopped at PTRACE_EVENT_VFORK_DONE)
 * after the region moved. Its stack is walked with the copies found at their
 * old places too, and what still leads to an old place follows the moves:
 * return addresses in memory, the register vfork keeps its own return
 * address in (the one the unwinder reads it from, e.g. %rdi in glibc), and
 * the instruction pointer. Return addresses in frames the child shared were
 * already moved with the child's stack.
 */
static int fix_stale_thread(struct target *tg, struct inj_thread *t)
{
	enum { MAX_FRAMES = 4096 };
	_cleanup_free_ struct guard_stale *mine = NULL;
	_cleanup_free_ struct inj_frame *frames = NULL;
	struct stale_walk c = {.owner = guard_mm_owner(tg)};
	struct inj_unwinder *u = NULL;
	enum inj_stack_end end = INJ_STACK_END_BROKEN;
	struct user_regs_struct regs;
	size_t n = 0, nf = 0, fixed = 0, missed = 0;
	int r;

	r = take_stale(&tg->guard, t->tid, &mine, &n);
	if (r < 0 || !n)
		return r;
	c.v = mine;
	c.n = n;
	frames = malloc(MAX_FRAMES * sizeof(*frames));
	if (!frames)
		return -ENOMEM;
	r = inj_thread_getregs(t, &regs);
	if (r < 0)
		return r;
	r = inj_unwinder_new(tg->proc, &u);
	if (r == 0)
		r = inj_unwinder_set_translate(u, translate_stale, &c);
	if (r == 0)
		r = inj_stack_walk(u, t, frames, MAX_FRAMES, &nf, &end);
	inj_unwinder_free(u);
	if (r == -ESRCH)
		return r;
	if (r < 0)
		nf = 0;
	for (size_t k = 0; k + 1 < nf; k++) {
		uint64_t now;

		if (!stale_now(&c, frames[k + 1].ip, &now))
			continue;
		if (frames[k].ra_slot) {
			r = inj_mem_write(tg->proc, frames[k].ra_slot, &now, sizeof(now), NULL);
			if (r < 0)
				return r;
			fixed++;
		} else if (k == 0) {
			unsigned long long *gpr[] = {
			    &regs.r15, &regs.r14, &regs.r13, &regs.r12, &regs.rbp,
			    &regs.rbx, &regs.r11, &regs.r10, &regs.r9,	&regs.r8,
			    &regs.rax, &regs.rcx, &regs.rdx, &regs.rsi, &regs.rdi,
			};
			for (size_t i = 0; i < ARRAY_SIZE(gpr); i++) {
				if (*gpr[i] == frames[k + 1].ip) {
					*gpr[i] = now;
					fixed++;
				}
			}
		} else {
			missed++;
		}
	}
	uint64_t rip;
	if (stale_now(&c, regs.rip, &rip)) {
		regs.rip = rip;
		fixed++;
	}
	r = inj_thread_setregs(t, &regs);
	if (r < 0)
		return r;
	if (missed || end != INJ_STACK_END_OUTERMOST)
		log_warn("thread %d of %d came back from vfork after optd's pages moved, and its "
			 "stack could not be walked to its end: a return into their old place may "
			 "remain",
			 t->tid, tg->pid);
	log_debug("thread %d of %d: back from vfork after %zu moves; %zu addresses follow them",
		  t->tid, tg->pid, n, fixed);
	return 0;
}

void guard_vfork_done(struct target *tg)
{
	struct guard *g = &tg->guard;

	for (size_t i = 0; g->n_stale && i < tg->proc->nthreads; i++) {
		struct inj_thread *t = tg->proc->threads[i];
		int r;

		if (t->stop != INJ_STOP_EVENT || t->event != PTRACE_EVENT_VFORK_DONE)
			continue;
		r = fix_stale_thread(tg, t);
		if (r < 0 && r != -ESRCH)
			log_warn(
			    "thread %d of %d came back from vfork after optd's pages moved, and "
			    "what leads to their old place could not be moved along: %s",
			    t->tid, tg->pid, strerror(-r));
	}
	if (g->window_pending && inj_process_pick_thread(tg->proc)) {
		struct inj_guard_window w = {g->pending.start, g->pending.end, g->start_brk,
					     g->tag};

		g->window_pending = false;
		(void)guard_add_window(tg, &w);
	}
}

/* ---- detach ---- */

/* The lowest address the kernel maps for anyone (vm.mmap_min_addr). */
static uint64_t mmap_min_addr(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "re");
	unsigned long long v;

	return f && fscanf(f, "%llu", &v) == 1 ? ALIGN_UP(v, PAGE) : 65536;
}

int guard_reserve(struct target *tg)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = tg->region;
	struct inj_thread *t;
	_cleanup_(maps_freep) struct maps *m = NULL;
	_cleanup_(rangeset_free) struct rangeset win = RANGESET_INIT, free_parts = RANGESET_INIT;
	size_t inside = 0;
	int r, first = 0;

	if (!g->n_windows || tg->mm_owner)
		return 0;
	t = inj_process_pick_thread(tg->proc);
	if (!t)
		return -ESRCH;
	r = maps_read(tg->pid, &m);
	if (r < 0)
		return r;
	for (size_t i = 0; i < g->n_windows; i++) {
		r = rangeset_add(&win, g->windows[i].start, g->windows[i].end);
		if (r < 0)
			return r;
	}
	r = rangeset_copy(&win, &free_parts);
	if (r == 0)
		r = rangeset_remove(&free_parts, 0, mmap_min_addr());
	if (r == 0)
		r = rangeset_remove(&free_parts, PLACE_USER_TOP, UINT64_MAX);
	for (size_t i = 0; r == 0 && i < m->n; i++) {
		const struct maps_entry *e = &m->v[i];
		bool ours = reg && inj_region_overlaps(reg, e->start, e->end);

		if (!ours && rangeset_overlaps(&win, e->start, e->end))
			inside++;
		r = rangeset_remove(&free_parts, e->start, e->end);
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < free_parts.n; i++) {
		const struct range *f = &free_parts.v[i];
		struct range *v;
		long res, ignored;

		r = inj_syscall(
		    t, SYS_mmap, &res, (long)f->start, (long)(f->end - f->start), PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
		if (r < 0)
			return r;
		if (res < 0 && res > -4096) {
			first = first ?: (int)res;
			continue;
		}
		if ((uint64_t)res != f->start) {
			/* A kernel without MAP_FIXED_NOREPLACE took it as a hint. */
			(void)inj_syscall(t, SYS_munmap, &ignored, res, (long)(f->end - f->start));
			first = first ?: -EEXIST;
			continue;
		}
		v = realloc(g->reserved, (g->n_reserved + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		g->reserved = v;
		g->reserved[g->n_reserved++] = *f;
		log_debug("%d: %#" PRIx64 "-%#" PRIx64 " reserved PROT_NONE", tg->pid, f->start,
			  f->end);
	}
	if (inside)
		log_warn(
		    "%d: %zu mappings of the process lie in optd's guarded windows: the filter "
		    "that stays makes requests that touch them (munmap, mprotect, mremap, "
		    "madvise, ...) fail with ENOSYS",
		    tg->pid, inside);
	return first;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

double guard_latency_percentile(const struct guard_stats *s, double p)
{
	size_t i;

	if (!s->n_latency)
		return 0;
	qsort(s->latency_us, s->n_latency, sizeof(*s->latency_us), cmp_u32);
	i = (size_t)(p / 100.0 * (double)(s->n_latency - 1) + 0.5);
	return s->latency_us[i < s->n_latency ? i : s->n_latency - 1];
}
