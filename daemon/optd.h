/*
 * optd's daemon side: options, exit statuses, the supervisor and its targets.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "placement.h"
#include "relocate.h"

/* Exit statuses of optd's own failures (documented in optd(1) and README.md). */
enum optd_exit {
	OPTD_EXIT_OK = 0,
	OPTD_EXIT_USAGE = 64,	    /* options do not parse */
	OPTD_EXIT_NO_PROCESS = 69,  /* no such process */
	OPTD_EXIT_SOFTWARE = 70,    /* internal error: injection failed */
	OPTD_EXIT_OSERR = 71,	    /* a system call optd needs failed (fork, pipe, libevent) */
	OPTD_EXIT_TARGET_GONE = 75, /* the target exited while optd was attaching or injecting */
	OPTD_EXIT_NOPERM = 77,	    /* not permitted to trace that process */
	OPTD_EXIT_NOEXEC = 126,	    /* command found but not executable */
	OPTD_EXIT_NOTFOUND = 127,   /* command not found */
};

enum optd_mode {
	OPTD_MODE_NONE = 0,
	OPTD_MODE_RUN,
	OPTD_MODE_PID,
};

struct optd_options {
	enum optd_mode mode;
	pid_t pid;
	char **argv;	      /* run: the command */
	uint64_t region_size; /* bytes */
	bool region_size_set; /* given with --region-size: relocation does not grow it */
	enum relocate_mode relocate;
	char **relocate_names; /* RELOCATE_NAMED */
	size_t n_relocate_names;
	unsigned profile_ms;   /* hot: sampling window */
	uint64_t arena_at;     /* 0 = choose */
	uint64_t heap_reserve; /* bytes kept free above the break */
	bool no_seccomp;       /* trap requests with PTRACE_SYSCALL instead of a filter */
	enum placement_policy placement;
	const char *stats_path;
	int verbosity; /* -1 quiet, 0 normal, 1 -v, 2 -vv */
};

/* Parses argv. 0, or an OPTD_EXIT_* after printing one error line (or help/version: -1 with exit
 * 0). */
int options_parse(int argc, char **argv, struct optd_options *ret);

/* Parses "123", "64K", "2M", "1G" (binary units). 0 or -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *ret);

/* Runs the supervisor until its work is done. Returns optd's exit status. */
int supervisor_main(const struct optd_options *opt);
