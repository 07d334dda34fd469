/*
 * The supervisor's state, shared by its files (supervisor.c, launch.c, stats.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <sys/types.h>

#include "optd.h"
#include "process.h"
#include "guard.h"
#include "range.h"
#include "region.h"
#include "target.h"

struct event_base;
struct event;

struct supervisor {
	const struct optd_options *opt;
	struct event_base *base;
	struct event *ev_chld;
	struct event *ev_sig[3];
	struct target *targets; /* live targets */
	struct target *root;	/* the process the user named; kept after it is gone */
	bool done;
	bool boosted; /* optd runs SCHED_FIFO for a stop-the-world */
	int saved_policy;
	struct sched_param saved_param;
	bool detached;	   /* the root was detached rather than seen exit */
	size_t nprocesses; /* every process traced, children included */
	size_t max_threads_seen;
	size_t exec_injections;	       /* regions injected after an execve */
	struct inj_region last_region; /* the root's latest region, kept for the statistics */
	struct relocation *root_rel;   /* the root's relocation, kept for the statistics */
	struct guard_stats gstats;     /* collisions and moves in every process */
	struct guard last_guard; /* the root's guard once it is released, for the statistics */
};

uint64_t now_us(void);

/* The Go runtime's first heap arena hint on amd64 (runtime/malloc.go). */
#define SUPERVISOR_GO_ARENA_HINT 0xc000000000ULL

/* Adds the address ranges runtimes ask for by hint, which the region keeps clear of. */
int supervisor_hint_ranges(struct rangeset *s);

/* Detaches every live target (removing regions). */
void supervisor_detach_all(struct supervisor *sv);
/* The root process is gone: let the rest go and end the loop. */
void supervisor_root_gone(struct supervisor *sv);

/* A command forked and seized, blocked before its execve. */
struct launch {
	pid_t pid;
	int go_fd;  /* writing a byte lets the child exec */
	int err_fd; /* the child writes its execve errno here; EOF means it exec'd */
	const char *argv0;
};

/*
 * Checks that argv[0] can be run, forks it, seizes the child and leaves it
 * blocked before execve, with SIGINT and SIGQUIT restored to what optd was
 * given. Returns OPTD_EXIT_OK or an exit status after printing the error.
 */
int launch_command(char **argv, const struct inj_settings *settings, struct launch *ret_launch,
		   struct inj_process **ret_proc);
/*
 * Lets the launched child exec and waits for its exec stop. Returns
 * OPTD_EXIT_OK with the only thread stopped at PTRACE_EVENT_EXEC, or an exit
 * status: 126/127 when execve failed, the shell-style status if it died.
 */
int launch_release(struct launch *l, struct inj_process *proc);
