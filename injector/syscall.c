/*
 * Remote syscalls. See syscall.h for the contract and the two ways a thread
 * is borrowed.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "maps.h"
#include "mem.h"
#include "ptrace.h"
#include "seccomp.h"
#include "syscall.h"
#include "util.h"

#define SYSCALL_INSN_LEN 2
static const unsigned char syscall_insn[SYSCALL_INSN_LEN] = {0x0f, 0x05};

/* Restart codes from include/linux/errno.h; never seen by user space. */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

static enum inj_syscall_site site_policy = INJ_SITE_FIND;

void inj_syscall_set_site(enum inj_syscall_site site)
{
	site_policy = site;
}

/* Lower is better: how little borrowing this stop costs and disturbs. */
static int stop_rank(const struct inj_thread *t)
{
	if (t->group_sig || t->stop == INJ_STOP_GROUP)
		return 4; /* must be put back into group-stop afterwards */
	switch (t->stop) {
	case INJ_STOP_INTERRUPT:
	case INJ_STOP_SIGNAL:
		return 0;
	case INJ_STOP_SYSCALL_EXIT:
		return 1;
	case INJ_STOP_SYSCALL_ENTRY:
	case INJ_STOP_SECCOMP:
		return 2; /* its own syscall runs again afterwards */
	case INJ_STOP_EVENT:
		/* An exiting thread never returns; a vfork parent cannot move until its child does.
		 */
		return t->event == PTRACE_EVENT_EXIT || t->event == PTRACE_EVENT_VFORK ? 5 : 3;
	default:
		return 6;
	}
}

struct inj_thread *inj_process_pick_thread(struct inj_process *p)
{
	struct inj_thread *best = NULL;
	int best_rank = 5;

	for (size_t i = 0; i < p->nthreads; i++) {
		struct inj_thread *t = p->threads[i];
		int rank;

		if (t->stop == INJ_RUNNING || t->stop == INJ_GONE || t->zombie)
			continue;
		rank = stop_rank(t);
		if (rank < best_rank) {
			best = t;
			best_rank = rank;
		}
	}
	return best;
}

/*
 * An event stop (clone, fork, exec) sits inside a syscall whose return
 * value is not in the registers yet. Let the syscall finish to its exit
 * stop (PTRACE_SYSCALL: no signal is raised, unlike a single-step) and
 * borrow the thread from there, with its final registers.
 */
static int finish_event_syscall(struct inj_thread *t)
{
	struct inj_stop st;
	long pr;
	int r;

	for (;;) {
		pr = inj_ptrace(PTRACE_SYSCALL, t->tid, 0, 0);
		if (pr < 0)
			return (int)pr;
		r = inj_thread_wait(t, &st);
		if (r < 0)
			return r;
		if (st.kind == INJ_GONE) {
			inj_thread_note_stop(t, &st);
			return -ESRCH;
		}
		if (st.kind == INJ_STOP_SYSCALL_EXIT || st.kind == INJ_STOP_SIGNAL) {
			/* A signal that came first stays owed, as at any signal stop. */
			inj_thread_note_stop(t, &st);
			return 0;
		}
		if (st.kind == INJ_STOP_GROUP)
			t->group_sig = st.sig;
	}
}

/* Scans executable mappings for the bytes 0f 05, the vDSO first (small, always there). */
static int find_syscall_insn(struct inj_process *p, uint64_t *ret_addr)
{
	struct maps *m = NULL;
	int r;

	if (p->syscall_insn) {
		*ret_addr = p->syscall_insn;
		return 0;
	}
	r = maps_read(p->pid, &m);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (int pass = 0; pass < 2 && r == -ENOENT; pass++) {
		for (size_t i = 0; i < m->n && r == -ENOENT; i++) {
			const struct maps_entry *e = &m->v[i];
			unsigned char buf[65536 + 1];

			if (!(e->prot & PROT_EXEC) || (pass == 0) != (e->kind == MAPS_VDSO))
				continue;
			if (e->kind == MAPS_VSYSCALL)
				continue; /* emulated: jumping into it faults */
			for (uint64_t a = e->start; a < e->end && r == -ENOENT;
			     a += sizeof(buf) - 1) {
				size_t len = e->end - a < sizeof(buf) ? e->end - a : sizeof(buf);
				if (inj_mem_read(p, a, buf, len) < 0)
					break;
				unsigned char *hit =
				    memmem(buf, len, syscall_insn, sizeof(syscall_insn));
				if (hit) {
					p->syscall_insn = a + (uint64_t)(hit - buf);
					r = 0;
				}
			}
		}
	}
	maps_free(m);
	if (r == 0) {
		log_debug("pid %d: syscall instruction at %#lx", p->pid,
			  (unsigned long)p->syscall_insn);
		*ret_addr = p->syscall_insn;
	}
	return r;
}

int inj_thread_prepare(struct inj_thread *t)
{
	/*
	 * Everything but SIGTRAP: the kernel forces the single-step's SIGTRAP
	 * and, finding it blocked, would reset the target's handler to SIG_DFL
	 * (force_sig_info_to_task()).
	 */
	uint64_t all = ~(1ULL << (SIGTRAP - 1));
	long pr;
	int r;

	if (t->stop == INJ_GONE)
		return -ESRCH;
	if (t->stop == INJ_RUNNING)
		return -EBUSY;
	if (t->prepared)
		return 0;
	/*
	 * A vfork parent cannot leave its event stop until the child execs or
	 * exits, and that child waits in its own ptrace-stop: borrowing the
	 * parent would deadlock.
	 */
	if (t->stop == INJ_STOP_EVENT &&
	    (t->event == PTRACE_EVENT_VFORK || t->event == PTRACE_EVENT_EXIT))
		return -EBUSY;
	if (t->stop == INJ_STOP_EVENT) {
		r = finish_event_syscall(t);
		if (r < 0)
			return r;
	}
	r = inj_thread_getregs(t, &t->saved_regs);
	if (r < 0)
		return r;
	if (t->stop == INJ_STOP_SIGNAL && t->sig && !t->have_siginfo) {
		pr = inj_ptrace(PTRACE_GETSIGINFO, t->tid, 0, (uint64_t)(uintptr_t)&t->siginfo);
		if (pr < 0)
			return (int)pr;
		t->have_siginfo = true;
	}
	pr = inj_ptrace(PTRACE_GETSIGMASK, t->tid, sizeof(uint64_t),
			(uint64_t)(uintptr_t)&t->saved_sigmask);
	if (pr < 0)
		return (int)pr;
	pr = inj_ptrace(PTRACE_SETSIGMASK, t->tid, sizeof(uint64_t), (uint64_t)(uintptr_t)&all);
	if (pr < 0)
		return (int)pr;
	t->borrowed_entry = t->stop == INJ_STOP_SYSCALL_ENTRY || t->stop == INJ_STOP_SECCOMP;
	t->prepared = true;
	return 0;
}

int inj_thread_cure(struct inj_thread *t)
{
	struct user_regs_struct regs;
	int r, r2;
	long pr;

	if (!t->prepared)
		return 0;
	regs = t->saved_regs;
	if (t->borrowed_entry && t->used_entry) {
		/* Our syscall took the target's place: make it execute its own again. */
		regs.rip -= SYSCALL_INSN_LEN;
		regs.rax = regs.orig_rax;
	}
	r = inj_thread_setregs(t, &regs);
	pr = inj_ptrace(PTRACE_SETSIGMASK, t->tid, sizeof(uint64_t),
			(uint64_t)(uintptr_t)&t->saved_sigmask);
	r2 = pr < 0 ? (int)pr : 0;
	t->prepared = false;
	t->borrowed_entry = false;
	t->used_entry = false;
	return r ?: r2;
}

int inj_detour_other_stop(struct inj_thread *t, const struct inj_stop *st)
{
	switch (st->kind) {
	case INJ_GONE:
		inj_thread_note_stop(t, st);
		return -ESRCH;
	case INJ_STOP_SIGNAL:
		if (st->sig == SIGSEGV || st->sig == SIGBUS || st->sig == SIGILL ||
		    st->sig == SIGFPE) {
			log_debug("tid %d: our detour faulted (signal %d)", t->tid, st->sig);
			return -EFAULT; /* the cure restores the thread */
		}
		/* Blocked signals cannot arrive; anything else is suppressed and logged. */
		log_debug("tid %d: signal %d during a detour suppressed", t->tid, st->sig);
		return 0;
	case INJ_STOP_GROUP:
		t->group_sig = st->sig;
		return 0;
	default:
		/* A stray PTRACE_INTERRUPT trap, a seccomp or syscall stop: keep going. */
		return 0;
	}
}

/*
 * Waits for the trap that ends our single step or syscall-exit, stepping over
 * stops that are not it. *ret_regs gets the registers at that trap.
 */
static int wait_remote_done(struct inj_thread *t, int req, bool want_exit,
			    struct user_regs_struct *ret_regs)
{
	struct inj_stop st;
	long pr;
	int r;

	for (;;) {
		r = inj_thread_wait_soon(t, &st);
		if (r < 0)
			return r;
		if (want_exit && st.kind == INJ_STOP_SYSCALL_EXIT) {
			t->stop = INJ_STOP_SYSCALL_EXIT;
			return inj_ptrace_getregs(t->tid, ret_regs);
		}
		if (!want_exit && st.kind == INJ_STOP_SIGNAL && st.sig == SIGTRAP) {
			/* The single-step trap. The original pending signal (t->sig) stays owed. */
			t->stop = INJ_STOP_SIGNAL;
			return inj_ptrace_getregs(t->tid, ret_regs);
		}
		r = inj_detour_other_stop(t, &st);
		if (r < 0)
			return r;
		pr = inj_ptrace(req, t->tid, 0, 0);
		if (pr < 0)
			return (int)pr;
	}
}

static bool is_restart(long ret)
{
	return ret == -ERESTARTSYS || ret == -ERESTARTNOINTR || ret == -ERESTARTNOHAND ||
	       ret == -ERESTART_RESTARTBLOCK;
}

/* Replaces the syscall pending at an entry/seccomp stop with ours and runs it to its exit stop. */
/* The syscall ABI: number in rax (orig_rax at an entry stop), arguments in rdi..r9. */
static void set_syscall_regs(struct user_regs_struct *regs, long nr, const long args[6])
{
	regs->rax = (uint64_t)nr;
	regs->rdi = (uint64_t)args[0];
	regs->rsi = (uint64_t)args[1];
	regs->rdx = (uint64_t)args[2];
	regs->r10 = (uint64_t)args[3];
	regs->r8 = (uint64_t)args[4];
	regs->r9 = (uint64_t)args[5];
}

static int syscall_borrow_entry(struct inj_thread *t, long nr, const long args[6], long *ret_result)
{
	struct user_regs_struct regs = t->saved_regs;
	long pr;
	int r;

	set_syscall_regs(&regs, nr, args);
	regs.orig_rax = (uint64_t)nr;
	r = inj_ptrace_setregs(t->tid, &regs);
	if (r < 0)
		return r;
	pr = inj_ptrace(PTRACE_SYSCALL, t->tid, 0, 0);
	if (pr < 0)
		return (int)pr;
	t->used_entry = true;
	r = wait_remote_done(t, PTRACE_SYSCALL, true, &regs);
	if (r < 0)
		return r;
	*ret_result = (long)regs.rax;
	return 0;
}

/*
 * Single-steps `syscall` at addr with our registers. A thread stopped inside
 * a syscall (an event stop in execve, clone or fork) reports the step once on
 * that syscall's way out before executing anything: step again then.
 */
static int syscall_step(struct inj_thread *t, uint64_t addr, long nr, const long args[6],
			long *ret_result)
{
	struct user_regs_struct regs = t->saved_regs;
	int early_traps = 0;
	long pr;
	int r;

	regs.rip = addr;
	set_syscall_regs(&regs, nr, args);
	/* Not a syscall in progress: no restart processing on the way out of this stop. */
	regs.orig_rax = (uint64_t)-1;
	struct user_regs_struct want = regs;
	for (;;) {
		r = inj_ptrace_setregs(t->tid, &want);
		if (r < 0)
			return r;
		pr = inj_ptrace(PTRACE_SINGLESTEP, t->tid, 0, 0);
		if (pr < 0)
			return (int)pr;
		r = wait_remote_done(t, PTRACE_SINGLESTEP, false, &regs);
		if (r < 0)
			return r;
		if (regs.rip == addr && early_traps++ < 3)
			continue;
		if (regs.rip != addr + SYSCALL_INSN_LEN) {
			log_debug("tid %d: step ended at %#llx, not %#lx", t->tid, regs.rip,
				  (unsigned long)(addr + SYSCALL_INSN_LEN));
			return -EFAULT;
		}
		/* With every signal blocked a restart should not happen; if it does, run it again.
		 */
		if (!is_restart((long)regs.rax))
			break;
	}
	*ret_result = (long)regs.rax;
	return 0;
}

static int syscall_swapped(struct inj_thread *t, long nr, const long args[6], long *ret_result)
{
	struct inj_process *p = t->proc;
	uint64_t addr = t->saved_regs.rip;
	unsigned char saved[SYSCALL_INSN_LEN];
	int r, r2;

	r = inj_mem_read(p, addr, saved, sizeof(saved));
	if (r < 0)
		return r;
	r = inj_mem_write(p, addr, syscall_insn, sizeof(syscall_insn), NULL);
	if (r < 0)
		return r;
	r = syscall_step(t, addr, nr, args, ret_result);
	r2 = inj_mem_write(p, addr, saved, sizeof(saved), NULL);
	return r ?: r2;
}

int inj_syscall_v(struct inj_thread *t, long nr, long *ret_result, const long args_in[6])
{
	bool auto_prepared = false;
	uint64_t addr = 0;
	long result = 0, args[6];
	int r, r2;

	memcpy(args, args_in, sizeof(args));
	/* Through optd's own filter without a stop of its own: the tag is ignored by the kernel. */
	if (t->proc->syscall_tag && !args[5] && inj_seccomp_tagged(nr))
		args[5] = (long)t->proc->syscall_tag;

	if (!t->prepared) {
		r = inj_thread_prepare(t);
		if (r < 0)
			return r;
		auto_prepared = true;
	}
	if (t->borrowed_entry && !t->used_entry) {
		r = syscall_borrow_entry(t, nr, args, &result);
	} else {
		r = site_policy == INJ_SITE_SWAP ? -ENOENT : find_syscall_insn(t->proc, &addr);
		if (r == -ENOENT)
			r = syscall_swapped(t, nr, args, &result);
		else if (r == 0)
			r = syscall_step(t, addr, nr, args, &result);
	}
	log_debug("tid %d: remote syscall %ld = %ld (transport %d)", t->tid, nr, result, r);
	if (auto_prepared) {
		r2 = inj_thread_cure(t);
		if (!r)
			r = r2;
	}
	if (r == 0)
		*ret_result = result;
	return r;
}
