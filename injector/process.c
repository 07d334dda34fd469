/*
 * Traced processes: seizing, stop-the-world, resuming and detaching.
 * See process.h for the model; the comments here say why each step is done
 * the way it is.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maps.h"
#include "process.h"
#include "procstat.h"
#include "ptrace.h"
#include "util.h"

const char *inj_stop_kind_name(enum inj_stop_kind kind)
{
	static const char *const names[] = {
	    [INJ_RUNNING] = "running",
	    [INJ_STOP_INTERRUPT] = "interrupt-stop",
	    [INJ_STOP_GROUP] = "group-stop",
	    [INJ_STOP_SIGNAL] = "signal-delivery-stop",
	    [INJ_STOP_SYSCALL_ENTRY] = "syscall-entry-stop",
	    [INJ_STOP_SYSCALL_EXIT] = "syscall-exit-stop",
	    [INJ_STOP_SECCOMP] = "seccomp-stop",
	    [INJ_STOP_EVENT] = "event-stop",
	    [INJ_GONE] = "gone",
	};
	return kind < ARRAY_SIZE(names) ? names[kind] : "?";
}

static bool is_stop_signal(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

int inj_stop_decode(pid_t tid, int status, struct inj_stop *ret)
{
	struct inj_stop st = {.tid = tid};
	long r;

	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		st.kind = INJ_GONE;
		st.exit_status = status;
		*ret = st;
		return 0;
	}
	if (!WIFSTOPPED(status))
		return -EINVAL;

	int sig = WSTOPSIG(status);
	int event = (unsigned)status >> 16;

	if (sig == (SIGTRAP | 0x80)) {
		struct __ptrace_syscall_info info;

		r = inj_ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof(info),
			       (uint64_t)(uintptr_t)&info);
		if (r < 0)
			return (int)r;
		st.kind = info.op == PTRACE_SYSCALL_INFO_EXIT ? INJ_STOP_SYSCALL_EXIT
							      : INJ_STOP_SYSCALL_ENTRY;
	} else if (event == PTRACE_EVENT_STOP) {
		/*
		 * A seized tracee reports SIGTRAP for PTRACE_INTERRUPT and for
		 * its first stop, and the stop signal while a group-stop is in
		 * effect (kernel/signal.c, do_jobctl_trap()).
		 */
		if (is_stop_signal(sig)) {
			st.kind = INJ_STOP_GROUP;
			st.sig = sig;
		} else {
			st.kind = INJ_STOP_INTERRUPT;
		}
	} else if (event == PTRACE_EVENT_SECCOMP) {
		st.kind = INJ_STOP_SECCOMP;
		st.event = event;
		r = inj_ptrace(PTRACE_GETEVENTMSG, tid, 0, (uint64_t)(uintptr_t)&st.msg);
		if (r < 0)
			return (int)r;
	} else if (event) {
		st.kind = INJ_STOP_EVENT;
		st.event = event;
		r = inj_ptrace(PTRACE_GETEVENTMSG, tid, 0, (uint64_t)(uintptr_t)&st.msg);
		if (r < 0)
			return (int)r;
	} else {
		st.kind = INJ_STOP_SIGNAL;
		st.sig = sig;
	}
	*ret = st;
	return 0;
}

/* ---- parked stops of threads not yet announced ---- */

struct early_stop {
	pid_t tid;
	int status;
};
static struct early_stop *early_stops;
static size_t n_early_stops, cap_early_stops;

int inj_early_stop_park(pid_t tid, int status)
{
	if (n_early_stops == cap_early_stops) {
		size_t cap = cap_early_stops ? cap_early_stops * 2 : 16;
		struct early_stop *v = realloc(early_stops, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		early_stops = v;
		cap_early_stops = cap;
	}
	early_stops[n_early_stops++] = (struct early_stop){tid, status};
	return 0;
}

bool inj_early_stop_take(pid_t tid, int *ret_status)
{
	for (size_t i = 0; i < n_early_stops; i++) {
		if (early_stops[i].tid != tid)
			continue;
		*ret_status = early_stops[i].status;
		early_stops[i] = early_stops[--n_early_stops];
		return true;
	}
	return false;
}

/* ---- the thread table ---- */

struct inj_thread *inj_process_thread(struct inj_process *p, pid_t tid)
{
	for (size_t i = 0; i < p->nthreads; i++)
		if (p->threads[i]->tid == tid)
			return p->threads[i];
	return NULL;
}

int inj_process_add_thread(struct inj_process *p, pid_t tid, enum inj_stop_kind stop,
			   struct inj_thread **ret)
{
	struct inj_thread *t;

	if (p->nthreads == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct inj_thread **v = realloc(p->threads, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->threads = v;
		p->cap = cap;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->proc = p;
	t->tid = tid;
	t->stop = stop;
	p->threads[p->nthreads++] = t;
	if (ret)
		*ret = t;
	return 0;
}

void inj_process_remove_thread(struct inj_process *p, pid_t tid)
{
	for (size_t i = 0; i < p->nthreads; i++) {
		if (p->threads[i]->tid != tid)
			continue;
		free(p->threads[i]);
		memmove(&p->threads[i], &p->threads[i + 1],
			(p->nthreads - i - 1) * sizeof(p->threads[0]));
		p->nthreads--;
		return;
	}
}

static int process_new(pid_t pid, const struct inj_settings *settings, struct inj_process **ret)
{
	struct inj_process *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->settings = *settings;
	p->mem_fd = -1;
	p->maps_fd = -1;
	*ret = p;
	return 0;
}

void inj_process_free(struct inj_process *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nthreads; i++)
		free(p->threads[i]);
	free(p->threads);
	free(p->children);
	if (p->mem_fd >= 0)
		close(p->mem_fd);
	if (p->maps_fd >= 0)
		close(p->maps_fd);
	maps_free(p->maps);
	free(p);
}

int inj_process_maps(struct inj_process *p, const struct maps **ret)
{
	struct maps *m;
	int r;

	if (p->maps && p->maps_runs == inj_ptrace_runs()) {
		*ret = p->maps;
		return 0;
	}
	if (p->maps_fd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/maps", p->pid);
		p->maps_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (p->maps_fd < 0)
			return errno == ENOENT ? -ESRCH : -errno;
	}
	r = maps_read_fd(p->maps_fd, &m);
	if (r < 0)
		return r;
	maps_free(p->maps);
	p->maps = m;
	p->maps_runs = inj_ptrace_runs();
	*ret = m;
	return 0;
}

static int queue_child(struct inj_process *p, pid_t child, pid_t parent_tid, int event)
{
	if (p->nchildren == p->children_cap) {
		size_t cap = p->children_cap ? p->children_cap * 2 : 4;
		struct inj_child *v = realloc(p->children, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->children = v;
		p->children_cap = cap;
	}
	p->children[p->nchildren++] = (struct inj_child){child, parent_tid, event};
	return 0;
}

/* The one-letter state of a thread from /proc/PID/task/TID/stat, or 0 if unreadable. */
static char thread_state(pid_t tgid, pid_t tid)
{
	char path[64], state[8];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", tgid, tid);
	return procstat_field(path, 3, state, sizeof(state)) == 0 ? state[0] : 0;
}

/* Tracer pid of a thread from its status file; -errno if unreadable. */
static int thread_tracer(pid_t tgid, pid_t tid)
{
	char path[64];
	long tracer;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", tgid, tid);
	r = procstat_status_field(path, "TracerPid", &tracer);
	return r < 0 ? r : (int)tracer;
}

int inj_thread_note_stop(struct inj_thread *t, const struct inj_stop *st)
{
	if (st->kind == INJ_GONE) {
		t->stop = INJ_GONE;
		t->vfork_wait = false;
		/* The leader's exit is the process's: keep it for whoever reports it. */
		if (t->tid == t->proc->pid) {
			t->proc->exited = true;
			t->proc->exit_status = st->exit_status;
		}
		return 0;
	}
	t->new_thread = false;
	t->stop = st->kind;
	t->event = st->event;
	/* Only the vfork event leads into the wait; any other stop means it is over. */
	t->vfork_wait = st->kind == INJ_STOP_EVENT && st->event == PTRACE_EVENT_VFORK &&
			(t->proc->settings.options & PTRACE_O_TRACEVFORKDONE);
	t->seccomp_data = st->kind == INJ_STOP_SECCOMP ? st->msg : 0;
	switch (st->kind) {
	case INJ_STOP_SIGNAL:
		t->sig = st->sig;
		t->have_siginfo = false;
		break;
	case INJ_STOP_GROUP:
		t->sig = 0;
		t->group_sig = st->sig;
		break;
	case INJ_STOP_INTERRUPT:
		/* A trap outside group-stop: any group-stop is over. */
		t->sig = 0;
		t->group_sig = 0;
		break;
	default:
		t->sig = 0;
		break;
	}
	return 0;
}

/*
 * Seizes one pass over /proc/PID/task. *ret_new counts threads added.
 * A thread that refuses with EPERM because we already trace it (a thread
 * auto-attached through PTRACE_O_TRACECLONE of one seized earlier) is ours.
 */
static int seize_scan(struct inj_process *p, size_t *ret_new)
{
	char path[64];
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	size_t added = 0;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/task", p->pid);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : negerrno();
	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name);
		long pr;

		if (tid <= 0 || inj_process_thread(p, tid))
			continue;
		pr = inj_ptrace(PTRACE_SEIZE, tid, 0, p->settings.options);
		if (pr == -ESRCH)
			continue; /* exited meanwhile */
		if (pr == -EPERM && thread_tracer(p->pid, tid) == getpid()) {
			r = inj_process_add_thread(p, tid, INJ_RUNNING, NULL);
			if (r < 0)
				return r;
			p->threads[p->nthreads - 1]->new_thread = true;
			added++;
			continue;
		}
		if (pr == -EPERM) {
			/* An exited thread not yet reaped refuses with EPERM too: it is as good as
			 * gone. */
			char state = thread_state(p->pid, tid);
			if (state == 0 || state == 'Z' || state == 'X')
				continue;
		}
		if (pr < 0)
			return (int)pr;
		r = inj_process_add_thread(p, tid, INJ_RUNNING, NULL);
		if (r < 0)
			return r;
		added++;
	}
	*ret_new = added;
	return 0;
}

int inj_process_seize(pid_t pid, const struct inj_settings *settings, struct inj_process **ret)
{
	struct inj_process *p = NULL;
	long pr;
	int r;

	r = process_new(pid, settings, &p);
	if (r < 0)
		return r;

	/* The leader first, so that its error (EPERM, ESRCH) is the one reported. */
	pr = inj_ptrace(PTRACE_SEIZE, pid, 0, settings->options);
	if (pr < 0) {
		r = (int)pr;
		goto out_free;
	}
	r = inj_process_add_thread(p, pid, INJ_RUNNING, NULL);
	if (r < 0)
		goto out_undo;
	if (thread_state(pid, pid) == 'Z')
		p->threads[0]->zombie = true;

	/* Threads keep appearing while we seize; stop when a scan finds none. */
	for (;;) {
		size_t added = 0;

		r = seize_scan(p, &added);
		if (r < 0)
			goto out_undo;
		if (!added)
			break;
	}
	log_debug("seized %d with %zu threads", pid, p->nthreads);
	*ret = p;
	return 0;

out_undo:
	/* Seized tracees can only be detached from a stop: stop them, then let go. */
	if (inj_process_stop(p) == 0)
		inj_process_detach(p);
out_free:
	inj_process_free(p);
	return r;
}

int inj_process_adopt(pid_t pid, const struct inj_settings *settings, enum inj_stop_kind stop,
		      int event, struct inj_process **ret)
{
	struct inj_process *p = NULL;
	struct inj_thread *t;
	int r;

	r = process_new(pid, settings, &p);
	if (r < 0)
		return r;
	r = inj_process_add_thread(p, pid, stop, &t);
	if (r < 0) {
		inj_process_free(p);
		return r;
	}
	t->event = event;
	*ret = p;
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Waits for t's next stop, polling until the CLOCK_MONOTONIC time until
 * (ns; 0: none) before it sleeps in waitpid().
 */
static int thread_wait(struct inj_thread *t, uint64_t until, struct inj_stop *ret)
{
	int status, r;

	if (until && mono_ns() >= until)
		until = 0;
	for (;;) {
		pid_t w = waitpid(t->tid, &status, __WALL | (until ? WNOHANG : 0));
		if (w == t->tid)
			break;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return negerrno();
		if (w != 0)
			return -EIO;
		if (mono_ns() >= until)
			until = 0;
	}
	r = inj_stop_decode(t->tid, status, ret);
	if (r == -ESRCH) {
		/* Vanished between the stop and our look at it (SIGKILL): its exit follows. */
		return thread_wait(t, 0, ret);
	}
	return r;
}

int inj_thread_wait(struct inj_thread *t, struct inj_stop *ret)
{
	return thread_wait(t, 0, ret);
}

int inj_thread_wait_soon(struct inj_thread *t, struct inj_stop *ret)
{
	return thread_wait(t, mono_ns() + INJ_WAIT_SPIN_NS, ret);
}

/*
 * After an execve by any thread, the kernel has killed every other thread and
 * given the execing thread the leader's tid. Keep only that one.
 */
void inj_process_exec_reset(struct inj_process *p, struct inj_thread *t)
{
	p->exec_seen = true;
	p->exec_tid = t->tid;
	for (size_t i = 0; i < p->nthreads;) {
		if (p->threads[i] == t) {
			i++;
			continue;
		}
		free(p->threads[i]);
		memmove(&p->threads[i], &p->threads[i + 1],
			(p->nthreads - i - 1) * sizeof(p->threads[0]));
		p->nthreads--;
	}
	t->tid = p->pid;
	t->zombie = false;
	/* The old mm's /proc/PID/mem and syscall instruction are stale. */
	if (p->mem_fd >= 0) {
		close(p->mem_fd);
		p->mem_fd = -1;
	}
	p->mem_fd_write_denied = false;
	p->syscall_insn = 0;
	maps_free(p->maps);
	p->maps = NULL;
	if (p->maps_fd >= 0) {
		close(p->maps_fd);
		p->maps_fd = -1;
	}
}

bool inj_thread_claim_parked_stop(struct inj_thread *t)
{
	struct inj_stop st;
	int status;

	if (!t->new_thread || !inj_early_stop_take(t->tid, &status))
		return false;
	if (inj_stop_decode(t->tid, status, &st) < 0 || st.kind == INJ_GONE)
		return false; /* vanished: its exit status follows */
	inj_thread_note_stop(t, &st);
	return true;
}

int inj_process_note_clone(struct inj_process *p, pid_t ntid, struct inj_thread **ret_thread)
{
	struct inj_thread *nt = inj_process_thread(p, ntid);
	int r;

	if (!nt) {
		if (!procstat_is_thread_of(p->pid, ntid))
			return 0;
		r = inj_process_add_thread(p, ntid, INJ_RUNNING, &nt);
		if (r < 0)
			return r;
		nt->new_thread = true;
		(void)inj_thread_claim_parked_stop(nt);
	}
	*ret_thread = nt;
	return 1;
}

/* Handles one stop seen while stopping the world. Returns 0, -ECANCELED after exec, -errno. */
static int stop_world_handle(struct inj_process *p, struct inj_thread *t, const struct inj_stop *st)
{
	int r;

	if (st->kind != INJ_STOP_EVENT)
		return inj_thread_note_stop(t, st);

	inj_thread_note_stop(t, st);
	switch (st->event) {
	case PTRACE_EVENT_CLONE: {
		struct inj_thread *nt;

		r = inj_process_note_clone(p, (pid_t)st->msg, &nt);
		if (r == 0)
			return queue_child(p, (pid_t)st->msg, t->tid, st->event);
		return r < 0 ? r : 0;
	}
	case PTRACE_EVENT_FORK:
	case PTRACE_EVENT_VFORK:
		return queue_child(p, (pid_t)st->msg, t->tid, st->event);
	case PTRACE_EVENT_EXEC:
		inj_process_exec_reset(p, t);
		return -ECANCELED;
	default:
		return 0;
	}
}

static int stop_world(struct inj_process *p, bool but_vfork);

int inj_process_stop(struct inj_process *p)
{
	return stop_world(p, false);
}

int inj_process_stop_but_vfork(struct inj_process *p)
{
	return stop_world(p, true);
}

/* A thread that stop_world() leaves alone: it cannot trap, or is blocked in vfork. */
static bool stop_skips(const struct inj_thread *t, bool but_vfork)
{
	return t->zombie || (but_vfork && t->vfork_wait && t->stop == INJ_RUNNING);
}

static int stop_world(struct inj_process *p, bool but_vfork)
{
	/*
	 * Threads that were asked to trap usually do within microseconds: poll
	 * for them, but for INJ_WAIT_SPIN_NS in all, since threads that wait
	 * for a CPU are slowed by a tracer that keeps one.
	 */
	uint64_t until = mono_ns() + INJ_WAIT_SPIN_NS;
	int r;

	/* Threads that died under earlier remote work: their exits were reaped there. */
	for (size_t i = 0; i < p->nthreads;) {
		if (p->threads[i]->stop == INJ_GONE)
			inj_process_remove_thread(p, p->threads[i]->tid);
		else
			i++;
	}
	if (p->exited)
		return -ESRCH;

	/* Ask every running thread to trap. Any trap will do: it clears the request. */
	for (size_t i = 0; i < p->nthreads; i++) {
		struct inj_thread *t = p->threads[i];

		/*
		 * A thread we believe stopped may have been woken by SIGKILL
		 * since: a ptrace request on it fails with ESRCH then, and its
		 * exit is what we must wait for.
		 */
		if (t->stop != INJ_RUNNING && !t->zombie) {
			unsigned long msg;
			if (inj_ptrace(PTRACE_GETEVENTMSG, t->tid, 0, (uint64_t)(uintptr_t)&msg) ==
			    -ESRCH)
				t->stop = INJ_RUNNING;
			continue;
		}
		if (t->new_thread || stop_skips(t, but_vfork))
			continue;
		(void)inj_ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
		/* -ESRCH: exiting; its exit status is what the wait below returns. */
	}

	/* The table can grow (new threads) and shrink (exits) while we wait. */
	for (size_t i = 0; i < p->nthreads;) {
		struct inj_thread *t = p->threads[i];
		struct inj_stop st;
		int status;

		if (t->stop != INJ_RUNNING || stop_skips(t, but_vfork)) {
			i++;
			continue;
		}
		if (t->new_thread && inj_early_stop_take(t->tid, &status)) {
			r = inj_stop_decode(t->tid, status, &st);
		} else {
			/*
			 * A leader that exited before its threads is a zombie
			 * that never traps; its exit comes with the last thread.
			 */
			if (t->tid == p->pid && thread_state(p->pid, p->pid) == 'Z') {
				t->zombie = true;
				i++;
				continue;
			}
			r = thread_wait(t, until, &st);
		}
		if (r == -ECHILD) {
			/* Not our tracee any more (reaped as a zombie elsewhere). */
			inj_process_remove_thread(p, t->tid);
			continue;
		}
		if (r < 0)
			return r;
		if (st.kind == INJ_GONE) {
			if (t->tid == p->pid) {
				/* The leader's exit is reported after every other thread's. */
				p->exec_seen = false;
				p->exited = true;
				p->exit_status = st.exit_status;
				t->stop = INJ_GONE;
				inj_process_remove_thread(p, t->tid);
				return -ESRCH;
			}
			inj_process_remove_thread(p, t->tid);
			continue;
		}
		r = stop_world_handle(p, t, &st);
		if (r < 0)
			return r;
		i++;
	}

	/* Only zombies left: the process is on its way out. */
	for (size_t i = 0; i < p->nthreads; i++)
		if (!p->threads[i]->zombie)
			return 0;
	return -ESRCH;
}

/*
 * Puts a thread that left a group-stop for our remote calls back into it:
 * a pending PTRACE_INTERRUPT makes it trap again before it returns to user
 * space, and that trap is a group-stop trap while the stop is in effect.
 */
static int thread_retrap_group(struct inj_thread *t)
{
	struct inj_stop st;
	long pr;
	int r;

	pr = inj_ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	if (pr < 0)
		return (int)pr;
	pr = inj_ptrace(PTRACE_CONT, t->tid, 0, 0);
	if (pr < 0)
		return (int)pr;
	r = inj_thread_wait(t, &st);
	if (r < 0)
		return r;
	inj_thread_note_stop(t, &st);
	return st.kind == INJ_GONE ? -ESRCH : 0;
}

int inj_thread_getregs(struct inj_thread *t, struct user_regs_struct *ret)
{
	int r;

	if (t->regs_cached && t->regs_stamp == inj_ptrace_regs_stamp(t->tid)) {
		*ret = t->regs;
		return 0;
	}
	r = inj_ptrace_getregs(t->tid, &t->regs);
	t->regs_cached = r == 0;
	if (r < 0)
		return r;
	t->regs_stamp = inj_ptrace_regs_stamp(t->tid);
	*ret = t->regs;
	return 0;
}

int inj_thread_setregs(struct inj_thread *t, const struct user_regs_struct *regs)
{
	int r = inj_ptrace_setregs(t->tid, regs);

	t->regs_cached = r == 0;
	if (r < 0)
		return r;
	t->regs = *regs;
	t->regs_stamp = inj_ptrace_regs_stamp(t->tid);
	return 0;
}

bool inj_thread_at_foreign_seccomp(const struct inj_thread *t)
{
	unsigned long mine = t->proc->settings.seccomp_data;

	return t->stop == INJ_STOP_SECCOMP && mine && t->seccomp_data != mine;
}

/*
 * What the kernel does with a SECCOMP_RET_TRACE that no tracer listens for:
 * the syscall does not run and returns -ENOSYS. At the stop, a syscall
 * number of -1 makes the kernel skip it, returning whatever rax holds.
 */
static int fail_foreign_seccomp(struct inj_thread *t)
{
	struct user_regs_struct regs;
	int r;

	if (!inj_thread_at_foreign_seccomp(t))
		return 0;
	r = inj_thread_getregs(t, &regs);
	if (r < 0)
		return r;
	regs.orig_rax = (uint64_t)-1;
	regs.rax = (uint64_t)-ENOSYS;
	return inj_thread_setregs(t, &regs);
}

int inj_thread_resume(struct inj_thread *t)
{
	int req = t->proc->resume_with_syscall ? PTRACE_SYSCALL : PTRACE_CONT;
	uint64_t sig = 0;
	long pr;
	int r;

	if (t->stop == INJ_RUNNING)
		return 0;
	if (t->stop == INJ_GONE)
		return -ESRCH;

	if (t->group_sig && t->stop != INJ_STOP_GROUP && !t->sig) {
		r = thread_retrap_group(t);
		if (r < 0)
			return r;
		if (t->stop != INJ_STOP_GROUP && t->stop != INJ_STOP_INTERRUPT)
			return inj_thread_resume(t);
	}

	switch (t->stop) {
	case INJ_STOP_GROUP:
		req = PTRACE_LISTEN;
		break;
	case INJ_STOP_SECCOMP:
		r = fail_foreign_seccomp(t);
		if (r < 0)
			return r;
		break;
	case INJ_STOP_SIGNAL:
		sig = (uint64_t)t->sig;
		if (sig && t->have_siginfo) {
			pr = inj_ptrace(PTRACE_SETSIGINFO, t->tid, 0,
					(uint64_t)(uintptr_t)&t->siginfo);
			if (pr < 0)
				return (int)pr;
		}
		break;
	default:
		break;
	}
	pr = inj_ptrace(req, t->tid, 0, sig);
	if (pr < 0)
		return (int)pr;
	t->stop = INJ_RUNNING;
	t->sig = 0;
	t->have_siginfo = false;
	return 0;
}

int inj_process_resume(struct inj_process *p)
{
	int first = 0;

	for (size_t i = 0; i < p->nthreads; i++) {
		int r = inj_thread_resume(p->threads[i]);
		/* A thread that vanished reports its exit later; leave it to the waiter. */
		if (r == -ESRCH) {
			p->threads[i]->stop = INJ_RUNNING;
			continue;
		}
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

int inj_process_detach(struct inj_process *p)
{
	int first = 0;

	for (size_t i = 0; i < p->nthreads; i++) {
		struct inj_thread *t = p->threads[i];
		uint64_t sig = 0;
		long pr;

		if (t->stop == INJ_RUNNING && !t->zombie)
			continue; /* cannot detach a running tracee; it was never stopped (gone) */
		if (t->stop == INJ_STOP_SIGNAL && t->sig) {
			sig = (uint64_t)t->sig;
			if (t->have_siginfo)
				(void)inj_ptrace(PTRACE_SETSIGINFO, t->tid, 0,
						 (uint64_t)(uintptr_t)&t->siginfo);
		}
		(void)fail_foreign_seccomp(t);
		/* A group-stop in effect is reinstated by the kernel at detach (__ptrace_unlink).
		 */
		pr = inj_ptrace(PTRACE_DETACH, t->tid, 0, sig);
		if (pr < 0 && pr != -ESRCH && !first)
			first = (int)pr;
	}
	for (size_t i = 0; i < p->nthreads; i++)
		free(p->threads[i]);
	p->nthreads = 0;
	return first;
}
