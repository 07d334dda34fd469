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
#include "procfs.h"
#include "ptrace.h"
#include "relocate.h"
#include "seccomp.h"
#include "stack.h"
#include "supervisor.h"
#include "syscall.h"
#include "target.h"
#include "util.h"

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
	struct inj_region *reg = tg->region;
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

/* A filter for the region's current place, unless one already guards it. */
static int guard_window(struct target *tg)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = tg->region;
	struct inj_guard_window w;

	if (g->syscall_mode || covered(g, reg->base, reg->base + reg->size))
		return 0;
	uint64_t margin = WINDOW_MARGIN(reg->size);

	w.start = ALIGN_DOWN(reg->base, WINDOW_ALIGN);
	w.start = w.start > margin ? w.start - margin : PAGE;
	w.end = ALIGN_UP(reg->base + reg->size, WINDOW_ALIGN) + margin;
	w.brk_start = g->start_brk;
	w.tag = g->tag;
	return install_filter(tg, &w);
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

void guard_free(struct guard *g)
{
	free(g->windows);
	g->windows = NULL;
	g->n_windows = 0;
}

/* ---- moving the region ---- */

/* Where the region may go: as close as the copies' reach demands, clear of avoid. */
static int choose_place(struct target *tg, const struct rangeset *avoid, const struct range *within,
			uint64_t *ret_addr)
{
	const struct optd_options *opt = tg->sv->opt;
	struct inj_region *reg = tg->region;
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
	const struct maps *m = NULL;
	_cleanup_(rangeset_free) struct rangeset all = RANGESET_INIT;
	struct inj_place_policy policy = {
	    .heap_reserve = opt->heap_reserve,
	    .stack_guard_gap = STACK_GUARD_GAP,
	    .gap = PAGE,
	    .start_brk = tg->guard.start_brk,
	};
	uint64_t lo = 0, hi = 0;
	uint64_t align = reg->size >= INJ_HUGE_PAGE ? INJ_HUGE_PAGE : PAGE;
	struct procfs_stat ps;
	int r;

	if (!t)
		return -ESRCH;
	r = inj_process_maps(tg->proc, &m);
	if (r < 0)
		return r;
	if (!tg->rel || relocate_reach(tg->rel, reg->base, reg->base + reg->size, &lo, &hi) < 0) {
		lo = hi = 0;
		if (procfs_read_stat(tg->pid, &ps) == 0 && ps.start_code) {
			const struct maps_entry *e = maps_find(m, ps.start_code);
			if (e && e->path)
				(void)maps_span_of(m, e->path, &lo, &hi);
		}
	}
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
	r = inj_region_find_place(t, m, lo, hi, reg->size, align, &policy, ret_addr);
	if (r == -ENOSPC && align > PAGE)
		r = inj_region_find_place(t, m, lo, hi, reg->size, PAGE, &policy, ret_addr);
	return r;
}

/* Moves every mapping of [old, old + size) by delta with remote mremaps. */
static int remap_pages(struct target *tg, uint64_t old, uint64_t size, int64_t delta)
{
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
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
 * Moves tg's region out of avoid (the colliding request's ranges). The world
 * is stopped. Afterwards nothing of the target refers to the old place:
 * copies, entry patches, FDEs and libgcc's record (relocate_moved()), thread
 * instruction pointers, return addresses on every stack, the header and the
 * perf map.
 */
static int move_region(struct target *tg, const struct rangeset *avoid)
{
	struct guard *g = &tg->guard;
	struct inj_region *reg = tg->region;
	uint64_t old = reg->base, size = reg->size, addr = 0;
	_cleanup_free_ struct target_return *ras = NULL;
	size_t n_ras = 0, incomplete = 0;
	uint64_t t0 = now_us(), t_walk, t_place, t_remap;
	int64_t delta;
	int r;

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
	t_walk = now_us();
	/* Inside the newest window if there is room, so that no new filter is needed. */
	r = g->n_windows ? choose_place(tg, avoid, &g->windows[g->n_windows - 1], &addr) : -ENOSPC;
	if (r == -ENOSPC)
		r = choose_place(tg, avoid, NULL, &addr);
	if (r < 0)
		return r;
	t_place = now_us();
	delta = (int64_t)(addr - old);
	r = remap_pages(tg, old, size, delta);
	if (r < 0)
		return r;
	t_remap = now_us();
	reg->base = addr;
	reg->hdr.base = addr;
	reg->hdr.generation++;
	r = inj_mem_write_ro(tg->proc, addr, &reg->hdr, sizeof(reg->hdr), NULL);
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
		r = inj_ptrace_setregs(t->tid, &regs);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < n_ras; i++) {
		uint64_t v = ras[i].ip + (uint64_t)delta;
		r = inj_mem_write(tg->proc, ras[i].slot, &v, sizeof(v), NULL);
		if (r < 0)
			return r;
	}
	r = guard_window(tg);
	if (r < 0)
		log_warn("%d: optd's pages moved out of every guarded window and no new filter "
			 "could be installed (%s): requests there are no longer trapped",
			 tg->pid, strerror(-r));
	tg->sv->gstats.moves++;
	target_region_moved(tg);
	log_debug("%d: region moved %#" PRIx64 " -> %#" PRIx64
		  " (%zu return addresses; µs: walk %" PRIu64 ", place %" PRIu64 ", remap %" PRIu64
		  ", fix-ups %" PRIu64 ")",
		  tg->pid, old, addr, n_ras, t_walk - t0, t_place - t_walk, t_remap - t_place,
		  now_us() - t_remap);
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

/* A stop of optd's filter (not one of the target's own), or a syscall entry with --no-seccomp. */
static bool at_request_stop(const struct target *tg, const struct inj_thread *t)
{
	return (t->stop == INJ_STOP_SECCOMP && !inj_thread_at_foreign_seccomp(t)) ||
	       (tg->guard.syscall_mode && t->stop == INJ_STOP_SYSCALL_ENTRY);
}

/*
 * If thread t's pending request collides with the region, moves the region
 * (the world is stopped). *ret_moved tells whether it did.
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
	if (!reg || !inj_request_overlaps(&req, reg->base, reg->base + reg->size))
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
	r = move_region(tg, &avoid);
	if (r < 0)
		return r;
	tg->sv->gstats.collisions[req.kind]++;
	tg->sv->gstats.colliding++;
	*ret_moved = true;
	return 0;
}

int guard_before_resume(struct target *tg)
{
	if (!tg->guard.active || !tg->region)
		return 0;
	/* A move can put the region where another pending request points: look again. */
	for (int round = 0; round < 8; round++) {
		bool any = false;
		for (size_t i = 0; i < tg->proc->nthreads; i++) {
			struct inj_thread *t = tg->proc->threads[i];
			bool moved;
			int r;
			if (!at_request_stop(tg, t))
				continue;
			r = handle_request(tg, t, &moved);
			if (r < 0)
				return r;
			any |= moved;
		}
		if (!any)
			return 0;
	}
	return 0;
}

/*
 * A SIGSEGV from the main stack failing to grow because the region (with
 * the stack guard gap) is in the way: the fault lies between the region's
 * start and the [stack] mapping right above it.
 */
static int stack_growth_fault(struct target *tg, struct inj_thread *t, struct range *ret_area)
{
	struct inj_region *reg = tg->region;
	_cleanup_(maps_freep) struct maps *m = NULL;
	const struct maps_entry *stack;
	uint64_t addr = (uint64_t)(uintptr_t)t->siginfo.si_addr;
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
	if (t->siginfo.si_code != SEGV_MAPERR)
		return 0;
	if (addr < reg->base || addr >= reg->base + reg->size + STACK_GUARD_GAP + PAGE)
		return 0;
	r = maps_read(tg->pid, &m);
	if (r < 0)
		return r;
	stack = maps_find_kind(m, MAPS_STACK);
	if (!stack || stack->start < reg->base + reg->size || addr >= stack->start)
		return 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].start >= reg->base + reg->size && m->v[i].start < stack->start)
			return 0; /* something else lies between: not ours to fix */
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
	struct inj_region *reg = tg->region;
	struct inj_request req;
	struct range area;
	uint64_t t0 = now_us(), t_stopped, t_moved;
	bool stack = false;
	int r;

	if (!tg->guard.active || !reg)
		return false;
	if (at_request_stop(tg, t)) {
		s->traps++;
		r = inj_thread_request(t, tg->guard.start_brk, &req);
		if (r < 0 || !inj_request_overlaps(&req, reg->base, reg->base + reg->size))
			return false; /* resumed at once by the caller */
	} else if (st->kind == INJ_STOP_SIGNAL && st->sig == SIGSEGV) {
		r = stack_growth_fault(tg, t, &area);
		if (r <= 0)
			return false;
		stack = true;
	} else {
		return false;
	}

	r = inj_process_stop(tg->proc);
	t_stopped = now_us();
	if (r == 0 && stack) {
		_cleanup_(rangeset_free) struct rangeset avoid = RANGESET_INIT;
		r = rangeset_add(&avoid, area.start, area.end);
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
		r = guard_before_resume(tg);
	if (r == -ESRCH || r == -ECANCELED)
		return r == -ESRCH;
	if (r < 0)
		log_error("%d: cannot move optd's pages out of the way of the target's request: %s",
			  tg->pid, strerror(-r));
	t_moved = now_us();
	note_latency(s, t_moved - t0);
	(void)inj_process_resume(tg->proc);
	log_debug("%d: collision handled in %" PRIu64 " µs: stop %" PRIu64 ", move %" PRIu64
		  ", resume %" PRIu64,
		  tg->pid, now_us() - t0, t_stopped - t0, t_moved - t_stopped, now_us() - t_moved);
	target_after_move(tg);
	return true;
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
