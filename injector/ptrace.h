/*
 * The one place that calls ptrace(2). Every request can be traced at the
 * trace log level (-vv). Results: >= 0 on success (PEEK* results come back
 * through *ret_word), -errno on failure.
 */
#pragma once

#include <stdint.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>

long inj_ptrace(int request, pid_t tid, uint64_t addr, uint64_t data);
/* PTRACE_PEEKDATA without the errno ambiguity. */
int inj_ptrace_peek(pid_t tid, uint64_t addr, uint64_t *ret_word);

int inj_ptrace_getregs(pid_t tid, struct user_regs_struct *ret_regs);
int inj_ptrace_setregs(pid_t tid, const struct user_regs_struct *regs);

/*
 * How many requests so far let a tracee run (CONT, SYSCALL, SINGLESTEP,
 * LISTEN, DETACH), for all tracees together. With every thread of a target
 * stopped, only these can change its address space or its registers: a
 * fact learnt about a stopped target stays true while this count does.
 */
uint64_t inj_ptrace_runs(void);

/*
 * A value that changes whenever a request may have changed tid's registers:
 * it ran (as counted above) or they were set. Registers read while a thread
 * is stopped stay true while this stays the same (inj_thread_getregs()).
 * Threads share values now and then, which only makes them change more
 * often.
 */
uint64_t inj_ptrace_regs_stamp(pid_t tid);

/* A readable name of a ptrace request, for logs. */
const char *inj_ptrace_request_name(int request);

/* Everything else goes through inj_ptrace() (DynamoRIO's choke-point habit). */
#ifndef INJ_PTRACE_IMPL
#define ptrace DO_NOT_USE_ptrace_use_inj_ptrace
#endif
