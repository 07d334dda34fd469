/*
 * /proc readers for the daemon, and the wording of attach refusals
 * (strace's habit: explain an EPERM rather than print it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "optd.h"
#include "procfs.h"
#include "procstat.h"
#include "util.h"

static int read_small_file(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	n = read(fd, buf, len - 1);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : negerrno();
	buf[n] = 0;
	return (int)n;
}

int procfs_read_stat(pid_t pid, struct procfs_stat *ret)
{
	char path[64], buf[2048];
	struct procfs_stat ps = {0};
	unsigned long long v;
	char *s;
	int r, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	r = read_small_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	/* comm (field 2) may hold spaces and ')': fields resume after the last ')'. */
	s = strrchr(buf, ')');
	if (!s || s[1] != ' ')
		return -EINVAL;
	s += 2;
	for (field = 3; *s; field++) {
		char *end;
		if (field == 3) {
			ps.state = *s;
		} else {
			v = strtoull(s, &end, 10);
			switch (field) {
			case 4:
				ps.ppid = (pid_t)v;
				break;
			case 9:
				ps.flags = (unsigned long)v;
				break;
			case 26:
				ps.start_code = v;
				break;
			case 27:
				ps.end_code = v;
				break;
			case 47:
				ps.start_brk = v;
				break;
			default:
				break;
			}
		}
		s = strchr(s, ' ');
		if (!s)
			break;
		s++;
	}
	*ret = ps;
	return 0;
}

int procfs_read_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	r = read_small_file(path, buf, len);
	if (r < 0)
		return r;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

int procfs_status_field(pid_t pid, const char *key, long *ret)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return procstat_status_field(path, key, ret);
}

static int refuse(pid_t pid, const char *why)
{
	log_error("cannot attach to %d: %s", pid, why);
	return OPTD_EXIT_NOPERM;
}

int procfs_check_attachable(pid_t pid, pid_t *ret_tgid)
{
	struct procfs_stat ps;
	long tgid = pid, tracer = 0;
	char comm[64] = "?", why[160];
	int r;

	if (pid == getpid())
		return refuse(pid, "it is optd itself");
	r = procfs_read_stat(pid, &ps);
	if (r == -ESRCH) {
		log_error("no such process: %d", pid);
		return OPTD_EXIT_NO_PROCESS;
	}
	if (r < 0) {
		log_error("cannot read /proc/%d/stat: %s", pid, strerror(-r));
		return OPTD_EXIT_OSERR;
	}
	if (ps.flags & PF_KTHREAD_FLAG)
		return refuse(pid, "it is a kernel thread");
	if (ps.state == 'Z' || ps.state == 'X')
		return refuse(pid,
			      "it is a zombie (it has exited and waits for its parent to reap it)");
	(void)procfs_status_field(pid, "Tgid", &tgid);
	if ((pid_t)tgid == getppid())
		return refuse(pid, "it is optd's parent (tracing it would stop optd's own caller)");
	if ((pid_t)tgid == getpid())
		return refuse(pid, "it is optd itself");
	if (procfs_status_field((pid_t)tgid, "TracerPid", &tracer) == 0 && tracer) {
		(void)procfs_read_comm((pid_t)tracer, comm, sizeof(comm));
		snprintf(why, sizeof(why), "it is already traced by %ld (%s)", tracer, comm);
		return refuse(pid, why);
	}
	if ((pid_t)tgid != pid)
		log_info("%d is a thread of process %ld: attaching to the whole process", pid,
			 tgid);
	*ret_tgid = (pid_t)tgid;
	return OPTD_EXIT_OK;
}

int procfs_explain_seize_error(pid_t pid, int err)
{
	long tracer = 0;
	char comm[64] = "?", why[200];

	switch (err) {
	case -ESRCH:
		log_error("no such process: %d", pid);
		return OPTD_EXIT_NO_PROCESS;
	case -EPERM:
		if (procfs_status_field(pid, "TracerPid", &tracer) == 0 && tracer &&
		    tracer != getpid()) {
			(void)procfs_read_comm((pid_t)tracer, comm, sizeof(comm));
			snprintf(why, sizeof(why), "it is already traced by %ld (%s)", tracer,
				 comm);
			return refuse(pid, why);
		}
		return refuse(pid,
			      "operation not permitted (another user's process, a setuid program, "
			      "or ptrace restricted by Yama or a security module; optd needs "
			      "CAP_SYS_PTRACE)");
	default:
		log_error("cannot attach to %d: %s", pid, strerror(-err));
		return OPTD_EXIT_OSERR;
	}
}
