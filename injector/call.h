/*
 * Remote function calls: make a stopped target thread call a function of the
 * target (System V x86-64 ABI, up to six integer arguments, an integer result)
 * the way a debugger's inferior call does, and take the thread back when the
 * function returns.
 *
 * The return address pushed for the function is `trap`, the address of an
 * int3 in executable memory of the target (optd's region keeps one): the
 * function's `ret` lands there and the SIGTRAP that follows ends the call.
 * The frame goes below the thread's red zone, 16-byte aligned as the ABI
 * wants at a call. The thread is prepared and cured as for remote syscalls
 * (syscall.h): every signal but SIGTRAP is blocked during the call, and the
 * registers are restored exactly afterwards; a syscall pending at an entry or
 * seccomp stop is skipped for the call and runs again afterwards.
 *
 * The called function runs target code with every other thread of the
 * target left as it is (normally stopped): the caller must know that it
 * cannot block on a lock another thread holds. A call that has not returned
 * within the timeout is abandoned: the thread is interrupted and restored,
 * and -ETIMEDOUT says that the function was left half-done.
 */
#pragma once

#include <stdint.h>

#include "process.h"

#define INJ_CALL_TIMEOUT_MS 2000

/*
 * Calls fn(args[0..5]) in thread t. Two error channels, as for syscalls:
 * 0, -ESRCH (the thread or process is gone), -EFAULT (the call faulted:
 * SIGSEGV, SIGBUS, SIGILL or SIGFPE, or it returned somewhere else),
 * -ETIMEDOUT, -errno of ptrace; the function's rax comes back in *ret.
 */
int inj_call_v(struct inj_thread *t, uint64_t fn, uint64_t trap, uint64_t *ret,
	       const uint64_t args[6]);
#define inj_call(t, fn, trap, ret, ...)                                                            \
	inj_call_v((t), (fn), (trap), (ret), (const uint64_t[6]){__VA_ARGS__})
