/*
 * A traced process and its threads: seize, stop the world, resume, detach.
 *
 * Lifecycle (after CRIU's compel): seize -> stop -> (remote work) -> resume,
 * repeated, then stop -> detach. The injector keeps, for every thread, what
 * kind of ptrace-stop it sits in, so that resuming puts it back exactly as the
 * kernel would have left it: group-stops stay stopped (PTRACE_LISTEN), a
 * signal that arrived is delivered with its original siginfo, nothing the
 * target was owed is lost.
 *
 * Threads are waited for by tid (waitpid(tid, __WALL)); the injector never
 * reaps other processes' events. Stops of threads it has not met yet (the
 * first stop of a new thread can be reported before its creator's
 * PTRACE_EVENT_CLONE) are parked with inj_early_stop_park() by whoever
 * reaped them and claimed here when the thread is announced.
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/ptrace.h> /* PTRACE_EVENT_* and PTRACE_O_* are part of this interface */
#include <sys/user.h>

enum inj_stop_kind {
	INJ_RUNNING = 0,    /* not in a ptrace-stop that we know of */
	INJ_STOP_INTERRUPT, /* PTRACE_EVENT_STOP with SIGTRAP: PTRACE_INTERRUPT or a new thread's
			       first stop */
	INJ_STOP_GROUP,	    /* PTRACE_EVENT_STOP with a stop signal: group-stop, resumed with
			       PTRACE_LISTEN */
	INJ_STOP_SIGNAL,    /* signal-delivery-stop; the signal is delivered at resume unless
			       suppressed */
	INJ_STOP_SYSCALL_ENTRY, /* PTRACE_SYSCALL entry */
	INJ_STOP_SYSCALL_EXIT,	/* PTRACE_SYSCALL exit */
	INJ_STOP_SECCOMP,	/* PTRACE_EVENT_SECCOMP */
	INJ_STOP_EVENT,		/* PTRACE_EVENT_CLONE/FORK/VFORK/VFORK_DONE/EXEC/EXIT */
	INJ_GONE,		/* exited or killed; see exit_status */
};

const char *inj_stop_kind_name(enum inj_stop_kind kind);

/* A decoded wait status of one tracee. */
struct inj_stop {
	pid_t tid;
	enum inj_stop_kind kind;
	int sig;   /* INJ_STOP_SIGNAL: the signal; INJ_STOP_GROUP: the stop signal */
	int event; /* INJ_STOP_EVENT: PTRACE_EVENT_* */
	unsigned long
	    msg; /* PTRACE_GETEVENTMSG for events: new tid/pid, former tid at exec, exit status */
	int exit_status; /* INJ_GONE: a wait status (use WIFEXITED etc.) */
};

/*
 * Decodes a waitpid() status of tracee tid and fetches the event message when
 * there is one. 0, -ESRCH if the tracee vanished meanwhile.
 */
int inj_stop_decode(pid_t tid, int status, struct inj_stop *ret);

struct inj_process;
struct maps;

struct inj_thread {
	struct inj_process *proc;
	pid_t tid;
	enum inj_stop_kind stop;
	int sig;	   /* INJ_STOP_SIGNAL: signal to deliver at resume, 0 = none */
	bool have_siginfo; /* siginfo holds the original siginfo of sig */
	siginfo_t siginfo;
	int event;		    /* INJ_STOP_EVENT */
	unsigned long seccomp_data; /* INJ_STOP_SECCOMP: the filter's SECCOMP_RET_DATA */
	int group_sig;	 /* the group-stop signal when the thread must return to group-stop */
	bool new_thread; /* announced by PTRACE_EVENT_CLONE; its first stop is still due */
	bool zombie;	 /* a thread-group leader that exited while others run: never traps */
	/*
	 * Resumed from PTRACE_EVENT_VFORK, and (with PTRACE_O_TRACEVFORKDONE) not
	 * seen at PTRACE_EVENT_VFORK_DONE yet: blocked in the kernel until its
	 * child execs or exits. It runs no code of its own meanwhile, and it
	 * cannot trap before (the wait is killable only).
	 */
	bool vfork_wait;

	/* The registers last read or set, valid while regs_stamp is inj_ptrace_regs_stamp(). */
	bool regs_cached;
	uint64_t regs_stamp;
	struct user_regs_struct regs;

	/* The syscall at a seccomp or syscall-entry stop, as inj_thread_request() read it. */
	bool call_cached;
	uint64_t call_stamp; /* inj_ptrace_regs_stamp() when read */
	uint32_t call_arch;
	long call_nr;
	uint64_t call_args[6];

	/* Remote-call state (see syscall.h). */
	bool prepared;
	bool borrowed_entry; /* prepared at a syscall-entry or seccomp stop */
	bool used_entry;     /* that pending syscall was replaced by ours */
	struct user_regs_struct saved_regs;
	uint64_t saved_sigmask;
};

/* How the process came to be traced. */
struct inj_settings {
	unsigned long options; /* PTRACE_O_* for PTRACE_SEIZE / PTRACE_SETOPTIONS */
	/*
	 * With PTRACE_O_TRACESECCOMP: the SECCOMP_RET_DATA of the tracer's own
	 * filters. A seccomp stop with other data comes from a filter of the
	 * process's own, whose SECCOMP_RET_TRACE, with no tracer listening,
	 * fails the syscall with ENOSYS without running it (__seccomp_filter()):
	 * resuming or detaching such a stop does that. 0: every seccomp stop is
	 * the tracer's, and resuming it runs the syscall.
	 */
	unsigned long seccomp_data;
};

/* A child process announced by PTRACE_EVENT_FORK/VFORK (or a CLONE that made a process). */
struct inj_child {
	pid_t pid;
	pid_t parent_tid;
	int event; /* PTRACE_EVENT_FORK, _VFORK or _CLONE */
};

struct inj_process {
	pid_t pid; /* the thread-group id */
	struct inj_settings settings;
	struct inj_thread **threads;
	size_t nthreads;
	size_t cap;
	int mem_fd;		  /* /proc/PID/mem, opened lazily; reopened after exec */
	bool mem_fd_write_denied; /* the kernel refuses /proc/PID/mem writes: use POKEDATA */
	uint64_t
	    syscall_insn; /* address of a `syscall` instruction in the target, 0 = not found yet */
	bool resume_with_syscall; /* resume with PTRACE_SYSCALL rather than PTRACE_CONT */
	bool exec_seen;	 /* PTRACE_EVENT_EXEC happened during a stop: address space replaced */
	pid_t exec_tid;	 /* the thread that reported it (now has tid == pid) */
	bool exited;	 /* the leader's exit was reaped by inj_process_stop() */
	int exit_status; /* its wait status */
	struct inj_child
	    *children; /* new processes seen during stop/seize, for the caller to take */
	size_t nchildren;
	size_t children_cap;
	int maps_fd;	    /* /proc/PID/maps, opened lazily; reopened after exec */
	struct maps *maps;  /* the last /proc/PID/maps read (inj_process_maps()), or NULL */
	uint64_t maps_runs; /* inj_ptrace_runs() when it was read */
	/*
	 * Nonzero: remote syscalls that a seccomp filter lets through when they
	 * carry it (inj_seccomp_tagged()) get it in args[5], which they ignore.
	 */
	uint64_t syscall_tag;
};

/*
 * PTRACE_SEIZEs every thread of pid, rescanning /proc/PID/task until a scan
 * finds no new thread. Threads are not stopped. On failure nothing stays
 * seized. Returns 0, -ESRCH (no such process), -EPERM (not allowed or
 * already traced), other -errno.
 */
int inj_process_seize(pid_t pid, const struct inj_settings *settings, struct inj_process **ret);

/*
 * Wraps a process that is already traced by us with a single thread sitting
 * in a stop of kind `stop` (a fork child's first stop, a launched command at
 * its exec stop). 0 or -ENOMEM.
 */
int inj_process_adopt(pid_t pid, const struct inj_settings *settings, enum inj_stop_kind stop,
		      int event, struct inj_process **ret);

/* Frees the object; does not touch the target. Accepts NULL. */
void inj_process_free(struct inj_process *p);

/*
 * The target's /proc/PID/maps, read at most once while nothing could change
 * it: every thread stopped, and no tracee let run since (inj_ptrace_runs();
 * a remote syscall or call runs one). Needs every thread stopped (a running
 * thread could change the mappings unseen). *ret stays valid until the next
 * call that rereads, or the process is freed. 0, -ESRCH, -errno.
 */
int inj_process_maps(struct inj_process *p, const struct maps **ret);

struct inj_thread *inj_process_thread(struct inj_process *p, pid_t tid);
/* Adds a thread we trace (e.g. from PTRACE_EVENT_CLONE) in the given state. 0 or -ENOMEM. */
int inj_process_add_thread(struct inj_process *p, pid_t tid, enum inj_stop_kind stop,
			   struct inj_thread **ret);
void inj_process_remove_thread(struct inj_process *p, pid_t tid);

/*
 * Stop the world: every thread of p ends up in a ptrace-stop that the
 * injector has recorded, including threads created meanwhile. Signals that
 * arrive are kept for delivery at resume; group-stops are kept. Fork children
 * seen meanwhile are queued in p->children.
 * Returns 0; -ESRCH when the whole process is gone (every thread exited);
 * -ECANCELED when an execve replaced the address space (p->exec_seen; the
 * surviving thread is stopped at its exec event); other -errno.
 */
int inj_process_stop(struct inj_process *p);

/*
 * Stop the world of a process that shares its address space with a vfork
 * child held stopped: like inj_process_stop(), but threads blocked in vfork
 * (vfork_wait) are neither interrupted nor waited for, since they could not
 * trap before the child lets them go. They stay INJ_RUNNING, with no
 * registers to read or write, and run nothing of their own until the child
 * execs or exits. Same returns.
 */
int inj_process_stop_but_vfork(struct inj_process *p);

/* Resumes one stopped thread the way its stop requires. 0, -ESRCH, -errno. */
int inj_thread_resume(struct inj_thread *t);

/*
 * The registers of stopped thread t: PTRACE_GETREGS once, then the same
 * answer while t neither runs nor has its registers set (by anyone, through
 * injector/ptrace.c). 0, -ESRCH, -errno.
 */
int inj_thread_getregs(struct inj_thread *t, struct user_regs_struct *ret);
/* PTRACE_SETREGS, remembered for inj_thread_getregs(). 0, -ESRCH, -errno. */
int inj_thread_setregs(struct inj_thread *t, const struct user_regs_struct *regs);

/*
 * t sits at a seccomp stop of a filter that is not the tracer's
 * (inj_settings.seccomp_data): resuming it fails the syscall with ENOSYS.
 */
bool inj_thread_at_foreign_seccomp(const struct inj_thread *t);

/* Resumes every stopped thread. Threads that vanished are dropped. 0 or -errno of the first real
 * failure. */
int inj_process_resume(struct inj_process *p);

/*
 * Detaches every thread (the world must be stopped). Pending signals are
 * delivered with the detach; group-stopped threads stay stopped. The object
 * remains valid (with no threads) and must still be freed.
 */
int inj_process_detach(struct inj_process *p);

/*
 * After PTRACE_EVENT_EXEC in thread t: every other thread is gone, t now has
 * the leader's tid, and cached facts about the old address space are dropped.
 */
void inj_process_exec_reset(struct inj_process *p, struct inj_thread *t);

/* Records how the kernel would resume a thread after our use of its stop. */
int inj_thread_note_stop(struct inj_thread *t, const struct inj_stop *st);

/*
 * Takes the PTRACE_EVENT_CLONE that announced ntid. A new thread of p is
 * added, with its first stop if that was parked before the event (then it
 * is stopped and must be resumed by the caller). Returns 1 and *ret_thread
 * for a new thread (or one already known), 0 when ntid is a new process
 * (clone without CLONE_THREAD), -ENOMEM.
 */
int inj_process_note_clone(struct inj_process *p, pid_t ntid, struct inj_thread **ret_thread);

/*
 * Records in t (a thread announced but not yet seen stopped) its first stop
 * if somebody parked it. True when t is now stopped.
 */
bool inj_thread_claim_parked_stop(struct inj_thread *t);

/* Parks a stop of a tid that belongs to no known thread yet. 0 or -ENOMEM. */
int inj_early_stop_park(pid_t tid, int status);
/* Takes a parked stop of tid; true if there was one. */
bool inj_early_stop_take(pid_t tid, int *ret_status);

/* Waits for the next stop of exactly this thread. 0 or -errno (-ECHILD if not our tracee). */
int inj_thread_wait(struct inj_thread *t, struct inj_stop *ret);

/*
 * The same for a stop that is due at once (a thread that runs one
 * instruction or syscall for us): polls for up to INJ_WAIT_SPIN_NS before it
 * sleeps. Going to sleep and being woken costs optd tens of microseconds
 * more on an idle machine, whose CPUs sleep deeply, and much of a collision's
 * time goes into such waits. inj_process_stop() polls for the threads it
 * asked to trap, INJ_WAIT_SPIN_NS in all.
 */
#define INJ_WAIT_SPIN_NS 100000
int inj_thread_wait_soon(struct inj_thread *t, struct inj_stop *ret);
