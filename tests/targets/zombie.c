/*
 * zombie: keeps an unreaped child.
 *
 *   zombie --checkpoint[=FD]
 *
 * Forks a child that exits at once, waits (without reaping it, WNOWAIT)
 * until it is a zombie, sends the event "zombie CHILD_PID" and blocks until
 * a byte or end of file on stdin; then reaps the child and prints its
 * status. Exit status 0.
 */
#include "tgt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	siginfo_t si;
	pid_t pid;
	int status;
	char c;

	if (argc != 2 || !tgt_parse_checkpoint(argv[1])) {
		fprintf(stderr, "usage: zombie --checkpoint[=FD]\n");
		return 2;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0)
		_exit(0);
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0)
		if (errno != EINTR)
			return 2;
	tgt_event("zombie %d", (int)pid);
	while (read(STDIN_FILENO, &c, 1) < 0 && errno == EINTR)
		;
	if (waitpid(pid, &status, 0) != pid)
		return 2;
	printf("zombie: child exited %d\n", WEXITSTATUS(status));
	return 0;
}
