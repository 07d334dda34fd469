/*
 * optd run: start the command traced from its first instruction.
 *
 * The child blocks on a pipe until it is seized, then execs; the tracer
 * sees PTRACE_EVENT_EXEC before the new image runs anything. A second,
 * close-on-exec pipe carries execve's errno back when it fails, so a
 * missing command is reported the way a shell does (126/127).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "supervisor.h"
#include "util.h"

/* Finds argv0 the way execvp() will. 0, -ENOENT, -EACCES (found but not executable). */
static int resolve_command(const char *argv0)
{
	struct stat sb;
	const char *path;
	int found_noexec = 0;

	if (strchr(argv0, '/')) {
		if (stat(argv0, &sb) < 0)
			return -ENOENT;
		if (S_ISDIR(sb.st_mode) || access(argv0, X_OK) < 0)
			return -EACCES;
		return 0;
	}
	path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		char full[4096];

		snprintf(full, sizeof(full), "%.*s/%s", (int)(n ? n : 1), n ? path : ".", argv0);
		if (stat(full, &sb) == 0) {
			if (!S_ISDIR(sb.st_mode) && access(full, X_OK) == 0)
				return 0;
			found_noexec = 1;
		}
		path += n + (path[n] == ':');
	}
	return found_noexec ? -EACCES : -ENOENT;
}

static int exec_error_status(const char *argv0, int err)
{
	if (err == ENOENT) {
		log_error("cannot run '%s': command not found", argv0);
		return OPTD_EXIT_NOTFOUND;
	}
	log_error("cannot run '%s': %s", argv0, strerror(err));
	return OPTD_EXIT_NOEXEC;
}

static void child_exec(char **argv, int go_fd, int err_fd)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	char c;
	int e;

	/* libevent's handlers must not run here; exec would reset them anyway. */
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction cur;
		if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler != SIG_DFL &&
		    cur.sa_handler != SIG_IGN)
			sigaction(sig, &dfl, NULL);
	}
	if (read(go_fd, &c, 1) != 1)
		_exit(OPTD_EXIT_SOFTWARE); /* optd went away before releasing us */
	execvp(argv[0], argv);
	e = errno;
	if (write(err_fd, &e, sizeof(e)) < 0)
		_exit(OPTD_EXIT_NOEXEC);
	_exit(e == ENOENT ? OPTD_EXIT_NOTFOUND : OPTD_EXIT_NOEXEC);
}

int launch_command(char **argv, const struct inj_settings *settings, struct launch *ret_launch,
		   struct inj_process **ret_proc)
{
	int go[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid;
	int r;

	r = resolve_command(argv[0]);
	if (r < 0)
		return exec_error_status(argv[0], -r);
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		log_error("cannot create a pipe: %m");
		goto out_close;
	}
	pid = fork();
	if (pid < 0) {
		log_error("cannot fork: %m");
		goto out_close;
	}
	if (pid == 0) {
		close(go[1]);
		close(err[0]);
		child_exec(argv, go[0], err[1]);
	}
	close(go[0]);
	close(err[1]);

	r = inj_process_seize(pid, settings, ret_proc);
	if (r < 0) {
		log_error("cannot trace the command: %s", strerror(-r));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, __WALL);
		close(go[1]);
		close(err[0]);
		return r == -EPERM ? OPTD_EXIT_NOPERM : OPTD_EXIT_OSERR;
	}
	*ret_launch =
	    (struct launch){.pid = pid, .go_fd = go[1], .err_fd = err[0], .argv0 = argv[0]};
	return OPTD_EXIT_OK;

out_close:
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return OPTD_EXIT_OSERR;
}

int launch_release(struct launch *l, struct inj_process *proc)
{
	struct inj_thread *t = proc->threads[0];
	struct inj_stop st;
	int e = 0, r;
	ssize_t n;

	n = write(l->go_fd, "g", 1);
	close(l->go_fd);
	l->go_fd = -1;
	if (n != 1) {
		log_error("cannot release the command: %m");
		close(l->err_fd);
		return OPTD_EXIT_OSERR;
	}
	for (;;) {
		r = inj_thread_wait(t, &st);
		if (r < 0) {
			log_error("lost the command: %s", strerror(-r));
			close(l->err_fd);
			return OPTD_EXIT_OSERR;
		}
		if (st.kind == INJ_GONE) {
			n = read(l->err_fd, &e, sizeof(e));
			close(l->err_fd);
			if (n == sizeof(e))
				return exec_error_status(l->argv0, e);
			return WIFEXITED(st.exit_status) ? WEXITSTATUS(st.exit_status)
							 : 128 + WTERMSIG(st.exit_status);
		}
		inj_thread_note_stop(t, &st);
		if (st.kind == INJ_STOP_EVENT && st.event == PTRACE_EVENT_EXEC)
			break;
		/* A signal before exec is delivered as it would have been. */
		r = inj_thread_resume(t);
		if (r < 0 && r != -ESRCH) {
			log_error("cannot resume the command: %s", strerror(-r));
			close(l->err_fd);
			return OPTD_EXIT_OSERR;
		}
	}
	close(l->err_fd);
	l->err_fd = -1;
	return OPTD_EXIT_OK;
}
