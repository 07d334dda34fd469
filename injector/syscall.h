/*
 * Remote syscalls: make a stopped target thread execute a syscall for us.
 *
 * Two error channels (compel's habit): the return value is the transport
 * error (0, -ESRCH when the thread or process is gone, -errno when ptrace
 * failed); the target's own result (a value or -errno as the kernel returns
 * it) comes back through *ret_result.
 *
 * How the thread is borrowed depends on its stop:
 *  - at a syscall-entry or seccomp stop the pending syscall is replaced by
 *    ours and run to its exit stop; the cure moves rip back by 2 and restores
 *    rax/orig_rax so that the target's own syscall runs afterwards;
 *  - at any other stop the thread single-steps a `syscall` instruction found
 *    in the target's executable mappings (or, when there is none, two bytes
 *    swapped in at its rip and put back afterwards: that needs every thread
 *    stopped); the cure restores the registers exactly, so a syscall that the
 *    stop had interrupted is restarted by the kernel as it would have been.
 * While prepared, every signal except SIGKILL/SIGSTOP is blocked for the
 * thread (PTRACE_SETSIGMASK) so nothing is delivered into our detour.
 */
#pragma once

#include "process.h"

/* Saves registers, siginfo and signal mask; blocks signals. The thread must be stopped. */
int inj_thread_prepare(struct inj_thread *t);
/* Restores what prepare saved. The thread stays stopped. */
int inj_thread_cure(struct inj_thread *t);

/*
 * Runs syscall nr with up to six arguments in thread t (prepared or not; an
 * unprepared thread is prepared and cured around the call). A syscall that
 * ignores args[5] and that seccomp filters let through when it carries the
 * process's syscall_tag there (inj_seccomp_tagged()) gets the tag when
 * args[5] is 0.
 */
int inj_syscall_v(struct inj_thread *t, long nr, long *ret_result, const long args[6]);
#define inj_syscall(t, nr, ret_result, ...)                                                        \
	inj_syscall_v((t), (nr), (ret_result), (const long[6]){__VA_ARGS__})

/* Where the `syscall` instruction comes from; tests force the swap path. */
enum inj_syscall_site {
	INJ_SITE_FIND = 0, /* find 0f 05 in an executable mapping, else swap in */
	INJ_SITE_SWAP,	   /* always swap two bytes in at the thread's rip */
};
void inj_syscall_set_site(enum inj_syscall_site site);

/*
 * A stop of a borrowed thread that does not end our detour (remote syscall
 * or call): -ESRCH when the thread is gone; -EFAULT when the detour faulted
 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE); 0 to keep going: a group-stop is kept
 * for the cure, and a stray trap, seccomp or syscall stop, or a signal
 * (blocked ones cannot arrive) is suppressed.
 */
int inj_detour_other_stop(struct inj_thread *t, const struct inj_stop *st);

/* Any thread of p that sits in a stop and can run remote syscalls, or NULL. */
struct inj_thread *inj_process_pick_thread(struct inj_process *p);
