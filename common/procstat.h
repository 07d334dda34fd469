/*
 * Fields of /proc/PID/stat and /proc/PID/task/TID/stat files.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Copies field `field` (numbered from 1 as proc(5) does; field 3 is the
 * state) of the stat file at path into buf, NUL-terminated. The command
 * name (field 2) may hold spaces and ')', so fields are counted from the
 * last ')'. 0; -ESRCH when the file is gone; -ENOENT when the field is
 * not there; -ERANGE when buf is too small; -errno.
 */
int procstat_field(const char *path, int field, char *buf, size_t len);

/*
 * The integer after "KEY:" in a status file (/proc/PID/status,
 * /proc/PID/task/TID/status). 0; -ESRCH when the file is gone; -ENOENT when
 * there is no such key; -errno.
 */
int procstat_status_field(const char *path, const char *key, long *ret);

/* True if tid is a thread of process tgid (/proc/TGID/task/TID exists). */
bool procstat_is_thread_of(pid_t tgid, pid_t tid);
