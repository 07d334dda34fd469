/*
 * Remote function calls. See call.h for the contract.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "call.h"
#include "log.h"
#include "mem.h"
#include "ptrace.h"
#include "syscall.h"
#include "util.h"

#define RED_ZONE 128
#define X86_EFLAGS_TF 0x100
#define X86_EFLAGS_DF 0x400

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The next stop of t, or -ETIMEDOUT at deadline_ms. A call takes
 * microseconds: yield first, then sleep in short steps.
 */
static int wait_until(struct inj_thread *t, uint64_t deadline_ms, struct inj_stop *ret)
{
	for (unsigned spins = 0;; spins++) {
		int status;
		pid_t w = waitpid(t->tid, &status, __WALL | WNOHANG);

		if (w == t->tid) {
			int r = inj_stop_decode(t->tid, status, ret);
			if (r == -ESRCH)
				continue; /* vanished meanwhile (SIGKILL): its exit follows */
			return r;
		}
		if (w < 0 && errno != EINTR)
			return negerrno();
		if (mono_ms() >= deadline_ms)
			return -ETIMEDOUT;
		if (spins < 200) {
			sched_yield();
		} else {
			struct timespec ts = {0, 100 * 1000};
			nanosleep(&ts, NULL);
		}
	}
}

/* Takes back a thread that did not return in time: interrupt it and wait for the trap. */
static int abandon(struct inj_thread *t)
{
	struct inj_stop st;
	long pr = inj_ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	int r;

	if (pr < 0)
		return (int)pr;
	for (;;) {
		r = inj_thread_wait(t, &st);
		if (r < 0)
			return r;
		if (st.kind == INJ_GONE) {
			inj_thread_note_stop(t, &st);
			return -ESRCH;
		}
		if (st.kind == INJ_STOP_GROUP)
			t->group_sig = st.sig;
		if (st.kind == INJ_STOP_INTERRUPT || st.kind == INJ_STOP_GROUP) {
			t->stop = st.kind;
			return 0;
		}
		/* A signal (blocked ones cannot come) or fault on the way: suppress it. */
		pr = inj_ptrace(PTRACE_CONT, t->tid, 0, 0);
		if (pr < 0)
			return (int)pr;
	}
}

/* Runs t (set up for the call) until it traps at trap + 1. */
static int run_call(struct inj_thread *t, uint64_t trap, uint64_t *ret)
{
	uint64_t deadline = mono_ms() + INJ_CALL_TIMEOUT_MS;
	struct user_regs_struct regs;
	struct inj_stop st;
	long pr;
	int r;

	pr = inj_ptrace(PTRACE_CONT, t->tid, 0, 0);
	if (pr < 0)
		return (int)pr;
	for (;;) {
		r = wait_until(t, deadline, &st);
		if (r == -ETIMEDOUT) {
			log_warn("tid %d: a remote call did not return within %d ms; abandoned",
				 t->tid, INJ_CALL_TIMEOUT_MS);
			r = abandon(t);
			return r < 0 ? r : -ETIMEDOUT;
		}
		if (r < 0)
			return r;
		if (st.kind == INJ_STOP_SIGNAL && st.sig == SIGTRAP) {
			t->stop = INJ_STOP_SIGNAL;
			r = inj_ptrace_getregs(t->tid, &regs);
			if (r < 0)
				return r;
			if (regs.rip != trap + 1) {
				log_debug("tid %d: remote call trapped at %#llx, not at %#lx",
					  t->tid, regs.rip, (unsigned long)(trap + 1));
				return -EFAULT;
			}
			*ret = regs.rax;
			return 0;
		}
		r = inj_detour_other_stop(t, &st);
		if (r == -EFAULT)
			t->stop = INJ_STOP_SIGNAL; /* in the fault's signal-delivery-stop */
		if (r < 0)
			return r;
		pr = inj_ptrace(PTRACE_CONT, t->tid, 0, 0);
		if (pr < 0)
			return (int)pr;
	}
}

int inj_call_v(struct inj_thread *t, uint64_t fn, uint64_t trap, uint64_t *ret,
	       const uint64_t args[6])
{
	bool auto_prepared = false;
	struct user_regs_struct regs;
	uint64_t sp, result = 0;
	int r, r2;

	if (!t->prepared) {
		r = inj_thread_prepare(t);
		if (r < 0)
			return r;
		auto_prepared = true;
	}
	/* A pending syscall is skipped now (orig_rax -1) and re-issued by the cure. */
	if (t->borrowed_entry)
		t->used_entry = true;
	regs = t->saved_regs;
	sp = ((regs.rsp - RED_ZONE - 256) & ~15ULL) - 8; /* as after a call: rsp + 8 aligned */
	r = inj_mem_write(t->proc, sp, &trap, sizeof(trap), NULL);
	if (r == 0) {
		regs.rsp = sp;
		regs.rip = fn;
		regs.rdi = args[0];
		regs.rsi = args[1];
		regs.rdx = args[2];
		regs.rcx = args[3];
		regs.r8 = args[4];
		regs.r9 = args[5];
		regs.rax = 0;
		regs.orig_rax = (uint64_t)-1; /* no syscall restart on the way out of this stop */
		regs.eflags &= ~(uint64_t)(X86_EFLAGS_TF | X86_EFLAGS_DF);
		r = inj_ptrace_setregs(t->tid, &regs);
	}
	if (r == 0)
		r = run_call(t, trap, &result);
	log_debug("tid %d: remote call %#lx = %#lx (transport %d)", t->tid, (unsigned long)fn,
		  (unsigned long)result, r);
	if (auto_prepared && r != -ESRCH) {
		r2 = inj_thread_cure(t);
		if (!r)
			r = r2;
	}
	if (r == 0)
		*ret = result;
	return r;
}
