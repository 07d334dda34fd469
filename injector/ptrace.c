/*
 * The only caller of ptrace(2) in optd (STYLE.md, convention 3). Funnelling
 * every request through here gives one place to trace them and one place
 * that turns the libc convention (-1 and errno, PEEK's in-band errors) into
 * -errno results.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INJ_PTRACE_IMPL
#include "log.h"
#include "ptrace.h"
#include "util.h"

const char *inj_ptrace_request_name(int request)
{
	switch (request) {
	case PTRACE_PEEKDATA:
		return "PEEKDATA";
	case PTRACE_POKEDATA:
		return "POKEDATA";
	case PTRACE_CONT:
		return "CONT";
	case PTRACE_SINGLESTEP:
		return "SINGLESTEP";
	case PTRACE_SYSCALL:
		return "SYSCALL";
	case PTRACE_GETREGS:
		return "GETREGS";
	case PTRACE_SETREGS:
		return "SETREGS";
	case PTRACE_DETACH:
		return "DETACH";
	case PTRACE_SEIZE:
		return "SEIZE";
	case PTRACE_INTERRUPT:
		return "INTERRUPT";
	case PTRACE_LISTEN:
		return "LISTEN";
	case PTRACE_GETEVENTMSG:
		return "GETEVENTMSG";
	case PTRACE_GETSIGINFO:
		return "GETSIGINFO";
	case PTRACE_SETOPTIONS:
		return "SETOPTIONS";
	case PTRACE_GET_SYSCALL_INFO:
		return "GET_SYSCALL_INFO";
	case PTRACE_KILL:
		return "KILL";
	default:
		return "?";
	}
}

static uint64_t runs;
/* Per tid slot: the last change to the registers of any tid of that slot. */
#define REGS_SLOTS 1024
static uint64_t regs_changes, regs_stamps[REGS_SLOTS];

uint64_t inj_ptrace_runs(void)
{
	return runs;
}

uint64_t inj_ptrace_regs_stamp(pid_t tid)
{
	return regs_stamps[(unsigned)tid % REGS_SLOTS];
}

static bool sets_regs(int request)
{
	return request == PTRACE_SETREGS || request == PTRACE_POKEUSER ||
	       request == PTRACE_SETREGSET || request == PTRACE_SETFPREGS;
}

static bool lets_run(int request)
{
	switch (request) {
	case PTRACE_CONT:
	case PTRACE_SYSCALL:
	case PTRACE_SINGLESTEP:
	case PTRACE_LISTEN:
	case PTRACE_DETACH:
	case PTRACE_SYSEMU:
	case PTRACE_SYSEMU_SINGLESTEP:
		return true;
	default:
		return false;
	}
}

long inj_ptrace(int request, pid_t tid, uint64_t addr, uint64_t data)
{
	long r;

	/* Counted even when it fails: a tracee that was woken by SIGKILL meanwhile runs anyway. */
	if (lets_run(request))
		runs++;
	if (lets_run(request) || sets_regs(request))
		regs_stamps[(unsigned)tid % REGS_SLOTS] = ++regs_changes;
	errno = 0;
	r = syscall(SYS_ptrace, (long)request, (long)tid, (long)addr, (long)data);
	if (r < 0) {
		int err = negerrno();
		log_trace("ptrace(%s, %d, %#lx, %#lx) = %d (%s)", inj_ptrace_request_name(request),
			  tid, (unsigned long)addr, (unsigned long)data, err,
			  strerrorname_np(-err));
		return err;
	}
	log_trace("ptrace(%s, %d, %#lx, %#lx) = %ld", inj_ptrace_request_name(request), tid,
		  (unsigned long)addr, (unsigned long)data, r);
	return r;
}

int inj_ptrace_peek(pid_t tid, uint64_t addr, uint64_t *ret_word)
{
	uint64_t word;
	long r;

	/* The raw syscall stores the word through data, so errors are unambiguous. */
	r = inj_ptrace(PTRACE_PEEKDATA, tid, addr, (uint64_t)(uintptr_t)&word);
	if (r < 0)
		return (int)r;
	*ret_word = word;
	return 0;
}

int inj_ptrace_getregs(pid_t tid, struct user_regs_struct *ret_regs)
{
	long r = inj_ptrace(PTRACE_GETREGS, tid, 0, (uint64_t)(uintptr_t)ret_regs);
	return r < 0 ? (int)r : 0;
}

int inj_ptrace_setregs(pid_t tid, const struct user_regs_struct *regs)
{
	long r = inj_ptrace(PTRACE_SETREGS, tid, 0, (uint64_t)(uintptr_t)regs);
	return r < 0 ? (int)r : 0;
}
