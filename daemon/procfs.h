/*
 * Facts about processes from /proc, worded for the user where needed.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct procfs_stat {
	char state; /* R, S, D, T, t, Z, X, ... */
	pid_t ppid;
	unsigned long flags; /* PF_* */
	uint64_t start_code; /* field 26 */
	uint64_t end_code;   /* field 27 */
	uint64_t start_brk;  /* field 47 */
};

#define PF_KTHREAD_FLAG 0x00200000UL

/* Parses /proc/PID/stat. 0, -ESRCH, -errno. */
int procfs_read_stat(pid_t pid, struct procfs_stat *ret);
/* Reads /proc/PID/comm without its newline into buf (NUL-terminated). 0 or -errno. */
int procfs_read_comm(pid_t pid, char *buf, size_t len);
/* A "Key:" value of /proc/PID/status as an integer. 0, -ENOENT, -ESRCH, -errno. */
int procfs_status_field(pid_t pid, const char *key, long *ret);

/*
 * Checks that pid names a process optd may trace and prints why not if it
 * may not. *ret_tgid gets its thread-group id. Returns OPTD_EXIT_OK or the
 * exit status for the refusal.
 */
int procfs_check_attachable(pid_t pid, pid_t *ret_tgid);
/* Words a PTRACE_SEIZE failure for the user and returns the exit status. */
int procfs_explain_seize_error(pid_t pid, int err);
