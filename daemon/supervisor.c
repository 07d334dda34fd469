/*
 * The supervisor: launches or attaches to the target, injects optd's region,
 * runs the libevent loop that reaps every ptrace stop (tmux's SIGCHLD habit:
 * one callback that loops waitpid(-1, WNOHANG | __WALL) until it is empty),
 * follows threads, forks and execs, and detaches at the end.
 *
 * Policy lives here; the injector only does what it is told.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sched.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "maps.h"
#include "mem.h"
#include "optd.h"
#include "procfs.h"
#include "profile.h"
#include "ptrace.h"
#include "stack.h"
#include "relocate.h"
#include "seccomp.h"
#include "region.h"
#include "stats.h"
#include "supervisor.h"
#include "syscall.h"
#include "target.h"
#include "util.h"
#include "guard.h"

#define STACK_GUARD_GAP (1ULL << 20)

static void target_start_profile(struct target *tg);
static void target_stop_profile(struct target *tg);
static void target_retry_relocate(struct target *tg);
static void target_exited(struct target *tg, int status);
static void target_exec(struct target *tg, struct inj_thread *t);

/*
 * Address ranges that runtimes ask for by hint and that the region must not
 * take from them: the Go runtime's heap arenas start at 0xc000000000 and
 * grow upward (runtime/malloc.go, arena hints on amd64).
 */
static const struct range known_hint_ranges[] = {
    {SUPERVISOR_GO_ARENA_HINT, SUPERVISOR_GO_ARENA_HINT + (64ULL << 30)},
};

int supervisor_hint_ranges(struct rangeset *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(known_hint_ranges); i++) {
		int r = rangeset_add(s, known_hint_ranges[i].start, known_hint_ranges[i].end);
		if (r < 0)
			return r;
	}
	return 0;
}

const char *target_state_name(enum target_state s)
{
	static const char *const names[] = {
	    [TARGET_ATTACHING] = "attaching", [TARGET_INJECTING] = "injecting",
	    [TARGET_RUNNING] = "running",     [TARGET_DETACHING] = "detaching",
	    [TARGET_GONE] = "gone",
	};
	return s < ARRAY_SIZE(names) ? names[s] : "?";
}

uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * optd's own priority while target threads wait on it. A tracer that is one
 * runnable thread among hundreds of CPU-bound target threads gets a sliver
 * of a CPU: every wakeup (a thread stopped) and every PTRACE_CONT would wait
 * for a scheduling round. SCHED_FIFO for the duration of a stop-the-world
 * makes optd's side of the pause its own work alone. Only optd's policy
 * changes; the target's scheduling is never touched. Without CAP_SYS_NICE
 * this quietly does nothing.
 */
static void boost_self(struct supervisor *sv)
{
	struct sched_param sp = {.sched_priority = 1};

	if (sv->boosted)
		return;
	if (sched_getparam(0, &sv->saved_param) == 0)
		sv->saved_policy = sched_getscheduler(0);
	if (sv->saved_policy >= 0 &&
	    sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0)
		sv->boosted = true;
	else
		log_debug("cannot raise optd's priority: %m");
}

static void unboost_self(struct supervisor *sv)
{
	if (!sv->boosted)
		return;
	if (sched_setscheduler(0, sv->saved_policy, &sv->saved_param) < 0)
		log_debug("cannot restore optd's priority: %m");
	sv->boosted = false;
}

/* ---- targets ---- */

static int target_new(struct supervisor *sv, struct inj_process *proc, bool root,
		      struct target **ret)
{
	struct target *tg = calloc(1, sizeof(*tg));

	if (!tg)
		return -ENOMEM;
	tg->sv = sv;
	tg->pid = proc->pid;
	tg->proc = proc;
	tg->root = root;
	tg->state = TARGET_ATTACHING;
	tg->max_threads = proc->nthreads;
	tg->next = sv->targets;
	sv->targets = tg;
	sv->nprocesses++;
	*ret = tg;
	return 0;
}

static void write_stale_perf_map(struct target *tg);

/* Drops the target's tracing state; the root's record stays for the statistics. */
static void target_release(struct target *tg)
{
	struct supervisor *sv = tg->sv;

	if (tg->root && tg->region)
		sv->last_region = *tg->region;
	target_stop_profile(tg);
	/* The map outlives the process: it names the copies where they ended. */
	write_stale_perf_map(tg);
	if (tg->perf_map_timer) {
		event_free(tg->perf_map_timer);
		tg->perf_map_timer = NULL;
	}
	if (tg->rel) {
		if (tg->root) {
			relocation_free(sv->root_rel);
			sv->root_rel = tg->rel; /* its counts are the statistics' */
		} else {
			relocation_free(tg->rel);
		}
		tg->rel = NULL;
	}
	inj_unwinder_free(tg->unwinder);
	tg->unwinder = NULL;
	inj_process_free(tg->proc);
	tg->proc = NULL;
	inj_region_free(tg->region);
	tg->region = NULL;
	if (tg->root) {
		guard_free(&sv->last_guard);
		sv->last_guard = tg->guard; /* its windows and reservations are the statistics' */
		memset(&tg->guard, 0, sizeof(tg->guard));
	}
	guard_free(&tg->guard);
	tg->state = TARGET_GONE;
	for (struct target **pp = &sv->targets; *pp; pp = &(*pp)->next) {
		if (*pp == tg) {
			*pp = tg->next;
			break;
		}
	}
	if (!tg->root)
		free(tg);
}

static struct target *find_thread(struct supervisor *sv, pid_t tid, struct inj_thread **ret_thread)
{
	for (struct target *tg = sv->targets; tg; tg = tg->next) {
		struct inj_thread *t = inj_process_thread(tg->proc, tid);
		if (t) {
			*ret_thread = t;
			return tg;
		}
	}
	return NULL;
}

static void target_note_threads(struct target *tg)
{
	if (tg->proc && tg->proc->nthreads > tg->max_threads)
		tg->max_threads = tg->proc->nthreads;
	if (tg->proc && tg->proc->nthreads > tg->sv->max_threads_seen)
		tg->sv->max_threads_seen = tg->proc->nthreads;
}

/* Names the copies for perf in /tmp/perf-PID.map; removed at detach. */
static void target_write_perf_map(struct target *tg)
{
	char path[sizeof(tg->perf_map)];
	int r;

	snprintf(path, sizeof(path), "/tmp/perf-%d.map", tg->pid);
	r = relocate_write_perf_map(tg->rel, path);
	if (r < 0)
		log_warn("cannot write %s: %s", path, strerror(-r));
	else if (relocate_stats(tg->rel)->relocated)
		memcpy(tg->perf_map, path, sizeof(path));
}

static void target_forget_perf_map(struct target *tg)
{
	if (tg->perf_map[0])
		unlink(tg->perf_map);
	tg->perf_map[0] = 0;
	tg->perf_map_stale = false;
}

/*
 * With --pid the guard's filters stay after detach (DESIGN.md, "After optd
 * is gone"), and its window must then hold nothing of the target's: look
 * for a free gap that holds the whole window (the region with a margin on
 * each side, where it can also move without a new filter), first below the
 * heap's start (a filter there never traps brk), then anywhere in reach.
 * Sets *ret_addr to the region's place, or leaves it 0 when no such gap is
 * found (the window is then clipped to the region's gap). 0, -ESRCH, -errno.
 */
static int find_place_pid(struct target *tg, struct inj_thread *t, const struct maps *m,
			  uint64_t near_start, uint64_t near_end, uint64_t size, uint64_t align,
			  const struct inj_place_policy *policy, uint64_t *ret_addr)
{
	_cleanup_(rangeset_free) struct rangeset below_heap = RANGESET_INIT;
	struct inj_place_policy p = *policy;
	uint64_t margin = guard_window_margin(size), addr = 0;
	struct procfs_stat ps;
	int r = -ENOSPC;

	if (procfs_read_stat(tg->pid, &ps) == 0 && ps.start_brk) {
		r = rangeset_copy(policy->avoid, &below_heap);
		if (r == 0)
			r = rangeset_add(&below_heap, ALIGN_DOWN(ps.start_brk, 4096), UINT64_MAX);
		if (r < 0)
			return r;
		p.avoid = &below_heap;
		r = inj_region_find_place(t, m, near_start, near_end, size + 2 * margin, align, &p,
					  &addr);
	}
	if (r == -ENOSPC)
		r = inj_region_find_place(t, m, near_start, near_end, size + 2 * margin, align,
					  policy, &addr);
	if (r == -ENOSPC)
		return 0;
	if (r < 0)
		return r;
	*ret_addr = addr + margin;
	return 0;
}

/*
 * Places and creates the region in a target whose world is stopped. The
 * region must reach the main executable (the module the copier works on
 * first) with rel32.
 */
static int target_inject(struct target *tg)
{
	const struct optd_options *opt = tg->sv->opt;
	struct inj_thread *t = inj_process_pick_thread(tg->proc);
	_cleanup_(maps_freep) struct maps *m = NULL;
	struct inj_place_policy policy = {
	    .heap_reserve = opt->heap_reserve,
	    .stack_guard_gap = STACK_GUARD_GAP,
	    .gap = 4096,
	};
	uint64_t near_start = 0, near_end = 0, addr = opt->arena_at;
	uint64_t size = opt->region_size, need = 0;
	uint64_t align;
	_cleanup_(rangeset_free) struct rangeset avoid = RANGESET_INIT;
	struct procfs_stat ps;
	int r;

	if (!t)
		return -ESRCH;
	tg->state = TARGET_INJECTING;
	if (opt->relocate == RELOCATE_ALL || opt->relocate == RELOCATE_NAMED) {
		r = relocate_plan(tg, &tg->rel, &need);
		if (r < 0)
			return r;
		/* The region grows to hold the copies unless its size was given. */
		if (!opt->region_size_set && need + OPTD_REGION_HEADER_PAGE > size)
			size = ALIGN_UP(need + OPTD_REGION_HEADER_PAGE, INJ_HUGE_PAGE);
	}
	align = size >= INJ_HUGE_PAGE ? INJ_HUGE_PAGE : 4096;
	r = supervisor_hint_ranges(&avoid);
	if (r < 0)
		return r;
	policy.avoid = &avoid;
	r = maps_read(tg->pid, &m);
	if (r < 0)
		return r;
	if (procfs_read_stat(tg->pid, &ps) == 0 && ps.start_code) {
		const struct maps_entry *e = maps_find(m, ps.start_code);
		if (e && e->path)
			(void)maps_span_of(m, e->path, &near_start, &near_end);
	}
	r = placement_initial(tg, m, near_start, near_end, size, &addr);
	if (r == -ENOENT && !addr && opt->mode == OPTD_MODE_PID)
		r = find_place_pid(tg, t, m, near_start, near_end, size, align, &policy, &addr);
	if (!addr && (r == 0 || r == -ENOENT)) {
		r = inj_region_find_place(t, m, near_start, near_end, size, align, &policy, &addr);
		if (r == -ENOSPC && align > 4096)
			r = inj_region_find_place(t, m, near_start, near_end, size, 4096, &policy,
						  &addr);
	} else if (r == -ENOENT) {
		r = 0; /* --arena-at */
	}
	if (r < 0)
		return r;
	r = inj_region_create(t, addr, size, &tg->region);
	if (r < 0)
		return r;
	if (tg->root)
		tg->sv->last_region = *tg->region;
	/* Falls back to PTRACE_SYSCALL, and says so, when no filter can be installed. */
	r = guard_install(tg);
	if (r < 0)
		return r;
	tg->state = TARGET_RUNNING;
	if (tg->rel) {
		r = relocate_apply(tg, tg->rel);
		if (r == -EBUSY)
			target_retry_relocate(tg);
		else if (r < 0)
			return r;
		else
			target_write_perf_map(tg);
	}
	if (opt->relocate == RELOCATE_HOT)
		target_start_profile(tg);
	return 0;
}

/*
 * Resumes a stopped world. Threads that reached a guarded request while it
 * was stopped are looked at first: a colliding one moves the region.
 */
static int target_resume(struct target *tg)
{
	int r = guard_before_resume(tg);

	if (r < 0 && r != -ESRCH)
		log_error("%d: cannot move optd's pages out of the way of the target's request: %s",
			  tg->pid, strerror(-r));
	r = inj_process_resume(tg->proc);
	target_after_move(tg);
	return r;
}

void target_region_moved(struct target *tg)
{
	if (tg->root)
		tg->sv->last_region = *tg->region;
	tg->perf_map_stale = tg->perf_map[0] != 0;
}

static void write_stale_perf_map(struct target *tg)
{
	if (!tg->perf_map_stale)
		return;
	tg->perf_map_stale = false;
	if (tg->rel)
		target_write_perf_map(tg);
}

static void on_perf_map_due(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	write_stale_perf_map(arg);
}

/*
 * The perf map follows the region PERF_MAP_DELAY_MS after a move, so that
 * a run of collisions rewrites it a few times a second at most, while the
 * target does not wait (rewriting a file truncates and writes it).
 */
void target_after_move(struct target *tg)
{
	struct timeval tv = {0, PERF_MAP_DELAY_MS * 1000};

	if (!tg->perf_map_stale)
		return;
	if (!tg->perf_map_timer)
		tg->perf_map_timer = evtimer_new(tg->sv->base, on_perf_map_due, tg);
	if (tg->perf_map_timer && evtimer_pending(tg->perf_map_timer, NULL))
		return;
	if (!tg->perf_map_timer || evtimer_add(tg->perf_map_timer, &tv) < 0)
		write_stale_perf_map(tg);
}

static void report_inject_failure(struct target *tg, int r)
{
	if (r == -ESRCH)
		return;
	if (r == -EEXIST && tg->sv->opt->arena_at)
		log_error("cannot place the region of %d at %#" PRIx64 ": that range is in use",
			  tg->pid, tg->sv->opt->arena_at);
	else if (r == -ENOSPC)
		log_error("cannot place the region of %d: no free range of %" PRIu64
			  " KiB within reach of its executable",
			  tg->pid, tg->sv->opt->region_size >> 10);
	else
		log_error("cannot inject into %d: %s", tg->pid, strerror(-r));
}

/* ---- children and events ---- */

static int child_target(struct supervisor *sv, struct target *parent, const struct inj_child *c,
			bool carries_region, struct target **ret);

/* Takes the children the injector queued during a stop and makes targets of them. */
static void adopt_queued_children(struct target *tg, bool carry_region)
{
	struct inj_process *p = tg->proc;

	for (size_t i = 0; i < p->nchildren; i++) {
		struct target *ct;
		if (child_target(tg->sv, tg, &p->children[i], carry_region, &ct) < 0)
			log_warn("cannot follow child %d of %d", p->children[i].pid, tg->pid);
	}
	p->nchildren = 0;
}

/*
 * A new process forked by parent. It is already traced (auto-attached). A
 * fork child holds a copy of the parent's region, if the parent had one when
 * it forked; a vfork child borrows the parent's address space until it execs
 * or exits, so it owns nothing to remove.
 */
static int child_target(struct supervisor *sv, struct target *parent, const struct inj_child *c,
			bool carries_region, struct target **ret)
{
	struct inj_process *proc = NULL;
	struct target *tg;
	struct inj_thread *t;
	int r;

	r = inj_process_adopt(c->pid, &parent->proc->settings, INJ_RUNNING, 0, &proc);
	if (r < 0)
		return r;
	proc->resume_with_syscall = parent->proc->resume_with_syscall;
	t = proc->threads[0];
	t->new_thread = true;
	r = target_new(sv, proc, false, &tg);
	if (r < 0) {
		inj_process_free(proc);
		return r;
	}
	if (c->event == PTRACE_EVENT_VFORK) {
		tg->mm_owner = parent;
	} else if (carries_region && parent->region) {
		tg->region = malloc(sizeof(*tg->region));
		if (tg->region)
			*tg->region = *parent->region;
		/* Its copy of the address space has the copies and patches too. */
		if (tg->region && parent->rel) {
			tg->rel = relocation_ref(parent->rel);
			target_write_perf_map(tg);
		}
	}
	tg->placement = parent->placement;
	/* The filter is inherited with the address space (a vfork child's is its parent's). */
	if (guard_inherit(tg, parent) < 0)
		log_warn("out of memory following the guard of %d", c->pid);
	tg->state = TARGET_RUNNING;
	log_debug("following %s child %d of %d%s",
		  c->event == PTRACE_EVENT_VFORK ? "vfork" : "fork", c->pid, parent->pid,
		  tg->region ? " (with region)" : "");

	if (inj_thread_claim_parked_stop(t))
		(void)inj_thread_resume(t);
	*ret = tg;
	return 0;
}

static void target_exited(struct target *tg, int status)
{
	struct supervisor *sv = tg->sv;

	tg->exited = true;
	tg->wait_status = status;
	log_debug("%d %s %d", tg->pid, WIFEXITED(status) ? "exited with" : "killed by signal",
		  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	/* vfork children that borrowed its address space no longer do. */
	for (struct target *o = sv->targets; o; o = o->next)
		if (o->mm_owner == tg)
			o->mm_owner = NULL;
	bool root = tg->root;
	target_release(tg);
	if (root)
		supervisor_root_gone(sv);
}

/* ---- --relocate=hot: sample, then relocate ---- */

static void target_stop_profile(struct target *tg)
{
	if (tg->profile_timer) {
		event_free(tg->profile_timer);
		tg->profile_timer = NULL;
	}
	if (tg->retry_timer) {
		event_free(tg->retry_timer);
		tg->retry_timer = NULL;
	}
	profile_free(tg->profile);
	tg->profile = NULL;
}

/*
 * Stops the world and relocates: with ips (the hot samples), plans first;
 * without, applies the plan tg->rel already holds (a retry). A relocation
 * put off because the unwinder was busy is retried later. The pause adds to
 * relocate_pause_us.
 */
static void target_relocate(struct target *tg, const uint64_t *ips, size_t n)
{
	struct supervisor *sv = tg->sv;
	uint64_t need = 0, t0;
	int r;

	boost_self(sv);
	t0 = now_us();
	r = inj_process_stop(tg->proc);
	if (r == -ECANCELED) {
		/* It exec'd meanwhile: the plan or samples are of the old image; start over. */
		struct inj_thread *t = inj_process_thread(tg->proc, tg->pid);
		if (t)
			target_exec(tg, t);
		(void)inj_process_resume(tg->proc);
		unboost_self(sv);
		return;
	}
	if (r == 0) {
		guard_vfork_done(tg);
		if (ips)
			r = relocate_plan_hot(tg, ips, n, &tg->rel, &need);
		if (r == 0)
			r = relocate_apply(tg, tg->rel);
		if (r == 0)
			target_write_perf_map(tg);
		if (r == -EBUSY) {
			target_retry_relocate(tg);
		} else if (r < 0 && r != -ESRCH) {
			log_warn("cannot relocate the functions of %d: %s", tg->pid, strerror(-r));
		} else if (r == 0 && ips) {
			const struct relocate_stats *rs = relocate_stats(tg->rel);
			log_info("%d: %" PRIu64 " hot functions relocated from %" PRIu64 " samples",
				 tg->pid, rs->relocated, rs->samples);
		}
		(void)target_resume(tg);
	}
	tg->relocate_pause_us += now_us() - t0;
	unboost_self(sv);
	if (r == -ESRCH && tg->proc->exited)
		target_exited(tg, tg->proc->exit_status);
}

/*
 * The sampling window is over: stop the world, choose the functions that
 * cover most samples, copy them into the region and patch them.
 */
static void on_profile_done(evutil_socket_t fd, short what, void *arg)
{
	struct target *tg = arg;
	const uint64_t *ips;
	_cleanup_free_ uint64_t *copy = NULL;
	size_t n = 0;
	int r;

	(void)fd;
	(void)what;
	r = profile_collect(tg->profile, &ips, &n);
	if (r == 0 && n) {
		copy = malloc(n * sizeof(*copy));
		if (copy)
			memcpy(copy, ips, n * sizeof(*copy));
	}
	target_stop_profile(tg);
	if (!copy || !tg->region || tg->rel)
		return;
	target_relocate(tg, copy, n);
}

/*
 * Relocation found a thread that may hold the unwinder's or the allocator's
 * lock, which registering the copies' unwind information would take: let
 * the world run a little and try again, a bounded number of times.
 */
static void on_relocate_retry(evutil_socket_t fd, short what, void *arg)
{
	struct target *tg = arg;

	(void)fd;
	(void)what;
	if (tg->rel && tg->region)
		target_relocate(tg, NULL, 0);
}

static void target_retry_relocate(struct target *tg)
{
	struct timeval tv = {0, RELOCATE_RETRY_MS * 1000};

	if (++tg->relocate_tries > RELOCATE_RETRIES) {
		relocate_give_up(tg->rel,
				 "a thread was always inside the unwinder or the allocator, "
				 "whose locks registering the copies' unwind information takes");
		log_warn(
		    "%d: relocating nothing: a thread was inside the unwinder or the allocator "
		    "at each of %d tries",
		    tg->pid, RELOCATE_RETRIES);
		return;
	}
	log_debug("%d: a thread may hold the unwinder's lock; relocating in %d ms", tg->pid,
		  RELOCATE_RETRY_MS);
	if (!tg->retry_timer)
		tg->retry_timer = evtimer_new(tg->sv->base, on_relocate_retry, tg);
	if (!tg->retry_timer || evtimer_add(tg->retry_timer, &tv) < 0)
		log_warn("%d: cannot schedule relocation", tg->pid);
}

/* Starts sampling every thread; the timer relocates after --profile-ms. */
static void target_start_profile(struct target *tg)
{
	struct supervisor *sv = tg->sv;
	_cleanup_free_ pid_t *tids =
	    calloc(tg->proc->nthreads ? tg->proc->nthreads : 1, sizeof(*tids));
	struct timeval tv = {sv->opt->profile_ms / 1000, (sv->opt->profile_ms % 1000) * 1000};
	size_t n = 0;
	int r;

	if (!tids || tg->profile)
		return;
	for (size_t i = 0; i < tg->proc->nthreads; i++)
		if (!tg->proc->threads[i]->zombie)
			tids[n++] = tg->proc->threads[i]->tid;
	r = profile_start(tids, n, 1000, &tg->profile);
	if (r < 0) {
		log_warn("cannot sample %d (%s): no hot functions will be relocated", tg->pid,
			 strerror(-r));
		return;
	}
	tg->profile_timer = evtimer_new(sv->base, on_profile_done, tg);
	if (!tg->profile_timer || evtimer_add(tg->profile_timer, &tv) < 0)
		target_stop_profile(tg);
}

/* ---- the entry breakpoint of optd run --relocate ---- */

/* AT_ENTRY of a process, from /proc/PID/auxv. 0, -ENOENT, -errno. */
static int read_entry(pid_t pid, uint64_t *ret)
{
	char path[64];
	uint64_t av[2];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/auxv", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	while (read(fd, av, sizeof(av)) == sizeof(av)) {
		if (av[0] == AT_ENTRY) {
			*ret = av[1];
			return 0;
		}
		if (av[0] == AT_NULL)
			break;
	}
	return -ENOENT;
}

/*
 * At an exec stop, relocation waits for the program's entry point: by then
 * the dynamic linker has mapped every library the program needs (and with
 * them any unwinder that could walk through copies), so the region is
 * placed and the functions chosen against the real address space. An int3
 * at AT_ENTRY stops the program there; without --relocate the region goes
 * in right away.
 */
static int target_inject_at_exec(struct target *tg)
{
	uint8_t int3 = 0xcc;
	uint64_t entry;
	int r;

	if (tg->sv->opt->relocate != RELOCATE_ALL && tg->sv->opt->relocate != RELOCATE_NAMED)
		return target_inject(tg);
	r = read_entry(tg->pid, &entry);
	if (r < 0)
		return r;
	r = inj_mem_read(tg->proc, entry, &tg->entry_byte, 1);
	if (r < 0)
		return r;
	r = inj_mem_write(tg->proc, entry, &int3, 1, NULL);
	if (r < 0)
		return r;
	tg->entry_bp = entry;
	return 0;
}

static int disarm_entry(struct target *tg)
{
	int r;

	if (!tg->entry_bp)
		return 0;
	r = inj_mem_write(tg->proc, tg->entry_bp, &tg->entry_byte, 1, NULL);
	tg->entry_bp = 0;
	return r;
}

/*
 * If thread t stopped on our entry int3: undo it (rip back on the original
 * instruction, the SIGTRAP suppressed), then stop the world, inject and
 * relocate. Returns true when the stop was ours.
 */
static bool entry_reached(struct target *tg, struct inj_thread *t)
{
	struct supervisor *sv = tg->sv;
	struct user_regs_struct regs;
	uint64_t t0, t1;
	int r;

	if (inj_ptrace_getregs(t->tid, &regs) < 0 || regs.rip != tg->entry_bp + 1)
		return false;
	regs.rip = tg->entry_bp;
	if (inj_ptrace_setregs(t->tid, &regs) < 0 || disarm_entry(tg) < 0)
		return false;
	t->sig = 0;

	boost_self(sv);
	t0 = now_us();
	r = inj_process_stop(tg->proc);
	t1 = now_us();
	if (r == 0) {
		r = target_inject(tg);
		if (r < 0)
			report_inject_failure(tg, r);
	}
	(void)target_resume(tg);
	if (tg->root) {
		tg->attach_stop_us = t1 - t0;
		tg->attach_pause_us = now_us() - t1;
	}
	unboost_self(sv);
	return true;
}

/* An execve replaced the address space: the old region went with it. */
static void target_exec(struct target *tg, struct inj_thread *t)
{
	struct supervisor *sv = tg->sv;
	uint64_t t0 = now_us();
	int r;

	inj_process_exec_reset(tg->proc, t);
	inj_unwinder_free(tg->unwinder);
	tg->unwinder = NULL;
	inj_region_free(tg->region);
	tg->region = NULL;
	tg->mm_owner = NULL;
	relocation_free(tg->rel);
	tg->rel = NULL;
	target_stop_profile(tg);
	tg->entry_bp = 0; /* the old image's int3 went with it */
	/* The thread is stopped at its exec event and is the only one: the world is stopped. */
	r = target_inject_at_exec(tg);
	if (r < 0) {
		report_inject_failure(tg, r);
		tg->state = TARGET_RUNNING;
	}
	if (tg->root)
		tg->attach_pause_us = now_us() - t0;
	sv->exec_injections += r == 0;
}

static void handle_event(struct target *tg, struct inj_thread *t, const struct inj_stop *st)
{
	struct supervisor *sv = tg->sv;
	struct inj_child c = {.pid = (pid_t)st->msg, .parent_tid = t->tid, .event = st->event};
	struct target *ct;

	switch (st->event) {
	case PTRACE_EVENT_CLONE: {
		struct inj_thread *nt;
		int r = inj_process_note_clone(tg->proc, c.pid, &nt);

		if (r == 0) {
			(void)child_target(sv, tg, &c, true, &ct);
		} else if (r > 0) {
			target_note_threads(tg);
			if (nt->stop != INJ_RUNNING) /* its first stop came before this event */
				(void)inj_thread_resume(nt);
		}
		break;
	}
	case PTRACE_EVENT_FORK:
	case PTRACE_EVENT_VFORK:
		(void)child_target(sv, tg, &c, true, &ct);
		break;
	case PTRACE_EVENT_EXEC:
		target_exec(tg, t);
		break;
	case PTRACE_EVENT_VFORK_DONE:
		guard_vfork_done(tg);
		break;
	default:
		break;
	}
}

void target_stop_interrupted(struct target *tg, int r)
{
	if (r == -ESRCH && tg->proc->exited) {
		target_exited(tg, tg->proc->exit_status);
	} else if (r == -ECANCELED) {
		struct inj_thread *t = inj_process_thread(tg->proc, tg->pid);
		if (t)
			target_exec(tg, t);
		(void)inj_process_resume(tg->proc);
	}
}

/* One wait status from the loop. */
static void dispatch(struct supervisor *sv, pid_t tid, int status)
{
	struct inj_thread *t = NULL;
	struct target *tg = find_thread(sv, tid, &t);
	struct inj_stop st;

	if (!tg) {
		/*
		 * A stop of a thread or child whose creator's event we have not
		 * seen yet. Exits of unknown tids are threads killed by an exec.
		 */
		if (WIFSTOPPED(status) && inj_early_stop_park(tid, status) < 0)
			log_warn("out of memory tracking new thread %d", tid);
		return;
	}
	if (inj_stop_decode(tid, status, &st) < 0)
		return; /* vanished; its exit status follows */
	if (st.kind == INJ_GONE) {
		inj_process_remove_thread(tg->proc, tid);
		if (tid == tg->pid)
			target_exited(tg, status);
		return;
	}
	inj_thread_note_stop(t, &st);
	if (st.kind == INJ_STOP_SIGNAL && st.sig == SIGTRAP && tg->entry_bp && entry_reached(tg, t))
		return;
	if (st.kind == INJ_STOP_SIGNAL && log_enabled(LOG_LVL_DEBUG) &&
	    (st.sig == SIGSEGV || st.sig == SIGBUS || st.sig == SIGILL || st.sig == SIGTRAP)) {
		struct user_regs_struct regs;
		if (inj_ptrace_getregs(tid, &regs) == 0)
			log_debug("thread %d of %d: signal %d at %#llx%s (orig %#lx)", tid, tg->pid,
				  st.sig, regs.rip,
				  tg->region && inj_region_contains(tg->region, regs.rip)
				      ? " in region"
				      : "",
				  tg->rel ? (unsigned long)relocate_copy_to_orig(tg->rel, regs.rip)
					  : 0UL);
	}
	if (st.kind == INJ_STOP_EVENT)
		handle_event(tg, t, &st);
	if (tg->state == TARGET_GONE)
		return;
	if (guard_on_stop(tg, t, &st))
		return;
	if (inj_thread_resume(t) == -ESRCH)
		t->stop = INJ_RUNNING; /* its exit status is on its way */
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *sv = arg;
	sigset_t chld, saved;
	int status;
	pid_t w;

	(void)fd;
	(void)what;
	/*
	 * Handling one stop can stop, step and resume every thread: each of
	 * those stops would interrupt optd with a SIGCHLD (a handler, a write
	 * to libevent's pipe, a sigreturn) while it waits for them by tid.
	 * Held here, they come as one afterwards, and this loop takes them.
	 */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &saved);
	while ((w = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
		dispatch(sv, w, status);
		if (sv->done)
			break;
	}
	sigprocmask(SIG_SETMASK, &saved, NULL);
	if (sv->done)
		event_base_loopbreak(sv->base);
}

/* ---- detach ---- */

/* The stack walker's view of a copy: the same instruction in the original. */
static int translate_copy(void *opaque, uint64_t ip, uint64_t *ret_orig)
{
	struct target *tg = opaque;
	uint64_t orig;

	if (!tg->region || !inj_region_contains(tg->region, ip))
		return -ENOENT;
	orig = relocate_copy_to_orig(tg->rel, ip);
	if (!orig)
		return -EINVAL;
	*ret_orig = orig;
	return 0;
}

/*
 * The target's unwinder, kept from one walk to the next, told what lies
 * where in this stop: each piece of the region holds the same code wherever
 * it lies, as long as the relocation is the same one.
 */
static int target_unwinder(struct target *tg, struct inj_unwinder **ret)
{
	struct inj_region *reg = tg->region;
	struct inj_unwind_area area[OPTD_REGION_MAX_PIECES];
	const struct maps *m;
	int r;

	for (unsigned i = 0; i < reg->n_pieces; i++) {
		const struct optd_region_piece *pc = &reg->pieces[i];
		/* The key: where the piece's offset 0 would be. */
		area[i] =
		    (struct inj_unwind_area){pc->addr, pc->addr + pc->len, pc->addr - pc->off};
	}
	if (tg->unwinder && tg->unwinder_rel != tg->rel) {
		inj_unwinder_free(tg->unwinder);
		tg->unwinder = NULL;
	}
	if (!tg->unwinder) {
		r = inj_unwinder_new(tg->proc, &tg->unwinder);
		if (r < 0)
			return r;
		r = inj_unwinder_set_translate(tg->unwinder, translate_copy, tg);
		if (r < 0) {
			inj_unwinder_free(tg->unwinder);
			tg->unwinder = NULL;
			return r;
		}
		tg->unwinder_rel = tg->rel;
	}
	r = inj_process_maps(tg->proc, &m);
	if (r == 0)
		r = inj_unwinder_sync(tg->unwinder, m, area, reg->n_pieces);
	if (r < 0)
		return r;
	*ret = tg->unwinder;
	return 0;
}

/* A growing list of return addresses. */
struct return_list {
	struct target_return *v;
	size_t n, cap;
};

/*
 * Adds the return addresses into tg's region found on the stacks of p's
 * threads (p is tg's process or that of a vfork child running in tg's
 * address space). Threads blocked in vfork are left to guard_vfork_done().
 */
static int process_region_returns(struct target *tg, struct inj_process *p, struct inj_unwinder *u,
				  struct inj_frame *frames, size_t max_frames,
				  struct return_list *l, size_t *incomplete)
{
	struct inj_region *reg = tg->region;
	int r = 0;

	for (size_t i = 0; r == 0 && i < p->nthreads; i++) {
		struct inj_thread *t = p->threads[i];
		enum inj_stack_end end;
		size_t nf = 0;

		if (t->zombie || (t->vfork_wait && t->stop == INJ_RUNNING))
			continue;
		if (inj_stack_walk(u, t, frames, max_frames, &nf, &end) < 0 ||
		    end != INJ_STACK_END_OUTERMOST) {
			log_debug("thread %d of %d: stack walk incomplete (%zu frames)", t->tid,
				  p->pid, nf);
			(*incomplete)++;
		}
		for (size_t k = 0; k + 1 < nf; k++) {
			uint64_t ip = frames[k + 1].ip;
			if (!frames[k].ra_slot || !inj_region_contains(reg, ip))
				continue;
			if (l->n == l->cap) {
				size_t ncap = l->cap ? l->cap * 2 : 64;
				struct target_return *nv = realloc(l->v, ncap * sizeof(*nv));
				if (!nv) {
					r = -ENOMEM;
					break;
				}
				l->v = nv;
				l->cap = ncap;
			}
			l->v[l->n++] = (struct target_return){t->tid, frames[k].ra_slot, ip};
		}
	}
	return r;
}

int target_region_returns(struct target *tg, struct target_return **ret, size_t *ret_n,
			  size_t *ret_incomplete)
{
	enum { MAX_FRAMES = 4096 };
	_cleanup_free_ struct inj_frame *frames = malloc(MAX_FRAMES * sizeof(*frames));
	struct return_list l = {0};
	struct inj_unwinder *u = NULL;
	int r;

	*ret_incomplete = 0;
	if (!frames)
		return -ENOMEM;
	r = target_unwinder(tg, &u);
	if (r == 0)
		r = process_region_returns(tg, tg->proc, u, frames, MAX_FRAMES, &l, ret_incomplete);
	/* vfork children run in the same address space: their stacks lead into it too. */
	for (struct target *o = tg->sv->targets; r == 0 && o; o = o->next) {
		struct inj_unwinder *cu = NULL;

		if (o == tg || !o->proc || !o->mm_owner || guard_mm_owner(o) != tg)
			continue;
		r = inj_unwinder_new(o->proc, &cu);
		if (r == 0)
			r = inj_unwinder_set_translate(cu, translate_copy, tg);
		if (r == 0)
			r = process_region_returns(tg, o->proc, cu, frames, MAX_FRAMES, &l,
						   ret_incomplete);
		inj_unwinder_free(cu);
	}
	if (r < 0) {
		free(l.v);
		return r;
	}
	*ret = l.v;
	*ret_n = l.n;
	return 0;
}

/*
 * Rewrites every return address (and signal frame's saved rip) on every
 * thread's stack that leads into a copy, to the same place in the
 * original. Returns 0 when every stack was walked to its outermost frame
 * and everything found was rewritten: nothing can lead into the region.
 */
static int unrelocate_stacks(struct target *tg)
{
	_cleanup_free_ struct target_return *ras = NULL;
	size_t n = 0, incomplete = 0;
	int r = target_region_returns(tg, &ras, &n, &incomplete);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		uint64_t orig = relocate_copy_to_orig(tg->rel, ras[i].ip);
		if (!orig || inj_mem_write(tg->proc, ras[i].slot, &orig, sizeof(orig), NULL) < 0) {
			incomplete++;
			continue;
		}
		log_debug("thread %d: return address %#" PRIx64 " -> %#" PRIx64, ras[i].tid,
			  ras[i].ip, orig);
	}
	return incomplete ? -EAGAIN : 0;
}

/*
 * Undoes relocation in a stopped target: entry patches restored, threads
 * executing in a copy moved to the same instruction in the original, and
 * return addresses into copies on every stack rewritten. Returns 0 when
 * nothing can lead into the region any more, 1 when the region must stay
 * mapped (an expansion without an equivalent, or a stack that could not
 * be walked to its end): unmapping it then could crash the target.
 */
static int unrelocate(struct target *tg)
{
	const struct relocate_stats *st = relocate_stats(tg->rel);
	struct inj_region *reg = tg->region;
	int r;

	r = relocate_undo(tg, tg->rel);
	if (r < 0 && r != -ESRCH)
		log_warn("restoring the entries of %d: %s", tg->pid, strerror(-r));
	target_forget_perf_map(tg);
	if (!reg || !st->relocated)
		return 0;
	for (size_t i = 0; i < tg->proc->nthreads; i++) {
		struct inj_thread *t = tg->proc->threads[i];
		struct user_regs_struct regs;
		uint64_t orig;

		if (t->zombie || inj_ptrace_getregs(t->tid, &regs) < 0)
			continue;
		if (!inj_region_contains(reg, regs.rip))
			continue;
		orig = relocate_copy_to_orig(tg->rel, regs.rip);
		if (!orig) {
			log_warn("thread %d of %d is inside an expansion in optd's region: the "
				 "region stays mapped",
				 t->tid, tg->pid);
			return 1;
		}
		regs.rip = orig;
		if (inj_ptrace_setregs(t->tid, &regs) < 0)
			return 1;
	}
	r = unrelocate_stacks(tg);
	if (r < 0) {
		log_warn("%d: the region stays mapped (r-x, no longer entered): %s", tg->pid,
			 r == -EAGAIN
			     ? "a stack could not be walked to its end, so a return address into a "
			       "copy may remain"
			     : strerror(-r));
		return 1;
	}
	r = relocate_unregister(tg, tg->rel, translate_copy, tg);
	if (r < 0) {
		log_warn("%d: the region stays mapped (no longer entered): its unwind information "
			 "stays registered: %s",
			 tg->pid,
			 r == -EBUSY ? "a thread may hold the unwinder's or allocator's lock"
				     : strerror(-r));
		return 1;
	}
	return 0;
}

static int target_detach(struct target *tg)
{
	struct supervisor *sv = tg->sv;
	uint64_t t0 = now_us(), t1;
	int r;

	tg->state = TARGET_DETACHING;
	/*
	 * Withdrawing the copies' unwind information takes the unwinder's lock:
	 * detach in a stop where no thread can hold it, letting the world run
	 * 10 ms between tries (a bounded number; then the region stays).
	 */
	for (int tries = 0;; tries++) {
		bool busy = false;
		r = inj_process_stop(tg->proc);
		if (r < 0 || !tg->rel || tg->mm_owner || tries >= RELOCATE_RETRIES ||
		    relocate_unwinder_busy(tg, tg->rel, true, translate_copy, tg, &busy) < 0 ||
		    !busy)
			break;
		(void)target_resume(tg);
		nanosleep(&(struct timespec){0, RELOCATE_RETRY_MS * 1000000L}, NULL);
	}
	t1 = now_us();
	tg->detach_stop_us = t1 - t0;
	if (r == -ESRCH) {
		if (tg->proc->exited)
			target_exited(tg, tg->proc->exit_status);
		else
			target_release(tg);
		return 0;
	}
	if (r == -ECANCELED) {
		/* An exec in the middle: the new image has no region of ours. */
		inj_region_free(tg->region);
		tg->region = NULL;
		tg->mm_owner = NULL;
		r = 0;
	}
	if (r < 0) {
		log_error("cannot stop %d to detach: %s", tg->pid, strerror(-r));
		return r;
	}
	adopt_queued_children(tg, true);
	guard_vfork_done(tg);
	if (tg->entry_bp) {
		/* Never reached: put the byte back; a thread already on the trap goes back before
		 * it. */
		for (size_t i = 0; i < tg->proc->nthreads; i++) {
			struct inj_thread *t = tg->proc->threads[i];
			struct user_regs_struct regs;
			if (t->stop == INJ_STOP_SIGNAL && t->sig == SIGTRAP &&
			    inj_ptrace_getregs(t->tid, &regs) == 0 &&
			    regs.rip == tg->entry_bp + 1) {
				regs.rip = tg->entry_bp;
				if (inj_ptrace_setregs(t->tid, &regs) == 0)
					t->sig = 0;
			}
		}
		(void)disarm_entry(tg);
	}
	bool keep_region = false;
	if (tg->rel && !tg->mm_owner)
		keep_region = unrelocate(tg) != 0;
	if (tg->region && !tg->mm_owner && !keep_region) {
		struct inj_thread *t = inj_process_pick_thread(tg->proc);
		r = t ? inj_region_remove(t, tg->region) : -ESRCH;
		if (r < 0 && r != -ESRCH)
			log_error("cannot remove the region from %d: %s", tg->pid, strerror(-r));
	}
	/* The filters stay: what they guard is kept out of the kernel's hands. */
	r = guard_reserve(tg);
	if (r < 0 && r != -ESRCH)
		log_warn("%d: cannot reserve optd's guarded windows (%s): a request for address "
			 "space the kernel places there fails with ENOSYS once optd is gone",
			 tg->pid, strerror(-r));
	r = inj_process_detach(tg->proc);
	tg->detach_pause_us = now_us() - t1;
	if (tg->root)
		sv->detached = true;
	target_release(tg);
	return r == -ESRCH ? 0 : r;
}

void supervisor_detach_all(struct supervisor *sv)
{
	boost_self(sv);
	/* Detaching can adopt children, which land at the head of the list. */
	while (sv->targets) {
		struct target *tg = sv->targets;
		/* Prefer processes that own their address space; vfork children go first. */
		for (struct target *o = sv->targets; o; o = o->next)
			if (o->mm_owner) {
				tg = o;
				break;
			}
		if (target_detach(tg) < 0 && tg->state != TARGET_GONE)
			target_release(tg);
	}
	unboost_self(sv);
}

void supervisor_root_gone(struct supervisor *sv)
{
	/* Whatever it forked and left running is let go, cleanly. */
	if (sv->targets)
		supervisor_detach_all(sv);
	sv->done = true;
}

static void on_detach_signal(evutil_socket_t sig, short what, void *arg)
{
	struct supervisor *sv = arg;

	(void)what;
	if (sv->opt->mode == OPTD_MODE_RUN) {
		/* optd run passes termination requests on, like a shell's foreground job. */
		if (sv->root && sv->root->state != TARGET_GONE)
			kill(sv->root->pid, (int)sig);
		return;
	}
	log_debug("signal %d: detaching", (int)sig);
	supervisor_detach_all(sv);
	sv->done = true;
	event_base_loopbreak(sv->base);
}

/* ---- the loop ---- */

static int supervisor_loop(struct supervisor *sv)
{
	int r = event_base_dispatch(sv->base);

	if (r < 0) {
		log_error("event loop failed");
		return -EIO;
	}
	return 0;
}

static int supervisor_init(struct supervisor *sv, const struct optd_options *opt)
{
	/* optd run leaves SIGINT to the target: the terminal sends it to both. */
	static const int detach_signals[] = {SIGTERM, SIGHUP, SIGINT};
	size_t nsignals = opt->mode == OPTD_MODE_RUN ? 2 : 3;

	memset(sv, 0, sizeof(*sv));
	sv->opt = opt;
	sv->base = event_base_new();
	if (!sv->base)
		return -ENOMEM;
	sv->ev_chld = evsignal_new(sv->base, SIGCHLD, on_sigchld, sv);
	if (!sv->ev_chld || evsignal_add(sv->ev_chld, NULL) < 0)
		return -EIO;
	for (size_t i = 0; i < nsignals; i++) {
		sv->ev_sig[i] = evsignal_new(sv->base, detach_signals[i], on_detach_signal, sv);
		if (!sv->ev_sig[i] || evsignal_add(sv->ev_sig[i], NULL) < 0)
			return -EIO;
	}
	return 0;
}

static void supervisor_fini(struct supervisor *sv)
{
	if (sv->ev_chld)
		event_free(sv->ev_chld);
	for (size_t i = 0; i < ARRAY_SIZE(sv->ev_sig); i++)
		if (sv->ev_sig[i])
			event_free(sv->ev_sig[i]);
	if (sv->base)
		event_base_free(sv->base);
	while (sv->targets)
		target_release(sv->targets);
	relocation_free(sv->root_rel);
	guard_free(&sv->last_guard);
	free(sv->root);
}

/*
 * PTRACE_O_TRACEVFORKDONE: a thread blocked in vfork cannot be stopped, and
 * the guard may move the region meanwhile (a vfork child's request): the
 * thread is set right at its vfork-done stop (guard_vfork_done()).
 */
static unsigned long ptrace_options(bool exitkill)
{
	unsigned long o = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK |
			  PTRACE_O_TRACEVFORK | PTRACE_O_TRACEVFORKDONE | PTRACE_O_TRACEEXEC |
			  PTRACE_O_TRACESECCOMP;
	return exitkill ? o | PTRACE_O_EXITKILL : o;
}

/* ---- optd --pid ---- */

static int attach_main(struct supervisor *sv)
{
	const struct optd_options *opt = sv->opt;
	struct inj_settings settings = {.options = ptrace_options(false),
					.seccomp_data = INJ_SECCOMP_DATA};
	struct inj_process *proc = NULL;
	struct target *tg;
	pid_t pid;
	uint64_t t0, t1;
	int r;

	r = procfs_check_attachable(opt->pid, &pid);
	if (r != OPTD_EXIT_OK)
		return r;
	r = inj_process_seize(pid, &settings, &proc);
	if (r < 0)
		return procfs_explain_seize_error(pid, r);
	r = target_new(sv, proc, true, &tg);
	if (r < 0) {
		log_error("out of memory");
		return OPTD_EXIT_OSERR;
	}
	sv->root = tg;

	/*
	 * Stop the world even though injecting needs one thread: with
	 * CPU-bound threads outnumbering the cores, a single interrupted
	 * thread (and every single-step of a remote syscall) waits a whole
	 * scheduling round for a CPU, while threads that all have a trap
	 * pending stop as fast as they are scheduled and leave the borrowed
	 * thread a free CPU.
	 */
	boost_self(sv);
	t0 = now_us();
	r = inj_process_stop(proc);
	if (r == -ECANCELED)
		r = 0; /* it exec'd while we attached: inject into the new image */
	t1 = now_us();
	tg->attach_stop_us = t1 - t0;
	if (r == -ESRCH) {
		unboost_self(sv);
		log_error("%d exited while optd was attaching", pid);
		return OPTD_EXIT_TARGET_GONE;
	}
	if (r < 0) {
		unboost_self(sv);
		log_error("cannot stop %d: %s", pid, strerror(-r));
		supervisor_detach_all(sv);
		return OPTD_EXIT_SOFTWARE;
	}
	target_note_threads(tg);
	adopt_queued_children(tg, false);
	r = target_inject(tg);
	if (r < 0) {
		unboost_self(sv);
		report_inject_failure(tg, r);
		if (r == -ESRCH) {
			log_error("%d exited while optd was injecting", pid);
			return OPTD_EXIT_TARGET_GONE;
		}
		supervisor_detach_all(sv);
		return OPTD_EXIT_SOFTWARE;
	}
	r = target_resume(tg);
	tg->attach_pause_us = now_us() - t1;
	unboost_self(sv);
	if (r < 0 && r != -ESRCH)
		log_warn("resuming %d: %s", pid, strerror(-r));
	log_info("attached to %d: region %#" PRIx64 "-%#" PRIx64 " r-x (%" PRIu64 " KiB)", pid,
		 tg->region->base, tg->region->base + tg->region->size, tg->region->size >> 10);

	r = supervisor_loop(sv);
	return r < 0 ? OPTD_EXIT_SOFTWARE : OPTD_EXIT_OK;
}

/* ---- optd run ---- */

static int run_main(struct supervisor *sv)
{
	const struct optd_options *opt = sv->opt;
	struct inj_settings settings = {.options = ptrace_options(true),
					.seccomp_data = INJ_SECCOMP_DATA};
	struct inj_process *proc = NULL;
	struct target *tg;
	struct launch l;
	pid_t pid;
	uint64_t t0;
	int r;

	r = launch_command(opt->argv, &settings, &l, &proc);
	if (r != OPTD_EXIT_OK)
		return r;
	pid = l.pid;
	r = target_new(sv, proc, true, &tg);
	if (r < 0) {
		kill(pid, SIGKILL);
		log_error("out of memory");
		return OPTD_EXIT_OSERR;
	}
	sv->root = tg;

	/* Let it exec; the exec stop is the first instruction of the new image. */
	r = launch_release(&l, proc);
	if (r != OPTD_EXIT_OK) {
		target_release(tg);
		return r;
	}

	boost_self(sv);
	t0 = now_us();
	r = target_inject_at_exec(tg);
	if (r < 0) {
		unboost_self(sv);
		report_inject_failure(tg, r);
		if (r != -ESRCH) {
			kill(pid, SIGKILL);
			return OPTD_EXIT_SOFTWARE;
		}
	}
	r = target_resume(tg);
	tg->attach_pause_us = now_us() - t0;
	unboost_self(sv);
	if (r < 0 && r != -ESRCH)
		log_warn("resuming %d: %s", pid, strerror(-r));
	if (tg->region)
		log_debug("running %d: region %#" PRIx64 "-%#" PRIx64 " r-x", pid, tg->region->base,
			  tg->region->base + tg->region->size);

	r = supervisor_loop(sv);
	if (r < 0)
		return OPTD_EXIT_SOFTWARE;
	if (!tg->exited)
		return OPTD_EXIT_SOFTWARE;
	return WIFEXITED(tg->wait_status) ? WEXITSTATUS(tg->wait_status)
					  : 128 + WTERMSIG(tg->wait_status);
}

int supervisor_main(const struct optd_options *opt)
{
	struct supervisor sv;
	int r, status;

	r = supervisor_init(&sv, opt);
	if (r < 0) {
		log_error("cannot set up the event loop: %s", strerror(-r));
		supervisor_fini(&sv);
		return OPTD_EXIT_OSERR;
	}
	status = opt->mode == OPTD_MODE_RUN ? run_main(&sv) : attach_main(&sv);
	if (sv.root)
		stats_finish(&sv, status);
	supervisor_fini(&sv);
	return status;
}
