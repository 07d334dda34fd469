/*
 * stopper: a child in group-stop, seen from its real parent.
 *
 *   stopper [--checkpoint[=FD]]
 *
 * Forks a child that spins on tgt_work until told to stop, stops it with
 * SIGSTOP and waits for the stop report, then sends the event
 * "stopped CHILD_PID" and blocks until a byte or end of file on stdin (a
 * driver attaches to the child and detaches meanwhile). Then it prints what
 * a parent can see: the child's state letter, any wait report pending
 * (natively there is none), the report of SIGCONT, and the child's exit.
 * The child checks its work, so a disturbed child exits non-zero.
 */
#include "tgt.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK 4096

static char state_of(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')) || p[1] != ' ')
		return '?';
	return p[2];
}

static const char *code_name(int code)
{
	switch (code) {
	case CLD_STOPPED:
		return "stopped";
	case CLD_CONTINUED:
		return "continued";
	case CLD_EXITED:
		return "exited";
	case CLD_KILLED:
		return "killed";
	case CLD_TRAPPED:
		return "trapped";
	default:
		return "other";
	}
}

static void print_report(const char *what, const siginfo_t *si)
{
	printf("%s: %s %d\n", what, code_name(si->si_code), si->si_status);
}

static int wait_report(pid_t pid, int options, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	while (waitid(P_PID, (id_t)pid, si, options) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int main(int argc, char **argv)
{
	int *shared_stop, ready[2];
	siginfo_t si;
	pid_t pid;
	char c;

	for (int i = 1; i < argc; i++) {
		if (!tgt_parse_checkpoint(argv[i])) {
			fprintf(stderr, "usage: stopper [--checkpoint[=FD]]\n");
			return 2;
		}
	}
	shared_stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared_stop == MAP_FAILED || pipe(ready) < 0)
		return 2;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		uint64_t expected = tgt_work(0x570, CHUNK);
		unsigned long bad = 0;

		close(ready[0]);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		close(ready[1]);
		while (!__atomic_load_n(shared_stop, __ATOMIC_RELAXED))
			if (tgt_work(0x570, CHUNK) != expected)
				bad++;
		_exit(bad ? 1 : 0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		return 2;
	close(ready[0]);

	kill(pid, SIGSTOP);
	if (wait_report(pid, WSTOPPED, &si) < 0)
		return 2;
	print_report("after SIGSTOP", &si);

	tgt_event("stopped %d", (int)pid);
	while (read(STDIN_FILENO, &c, 1) < 0 && errno == EINTR)
		;

	printf("state before SIGCONT: %c\n", state_of(pid));
	if (wait_report(pid, WSTOPPED | WCONTINUED | WEXITED | WNOHANG, &si) < 0)
		return 2;
	if (si.si_pid == 0)
		printf("pending report: none\n");
	else
		print_report("pending report", &si);

	kill(pid, SIGCONT);
	if (wait_report(pid, WCONTINUED, &si) < 0)
		return 2;
	print_report("after SIGCONT", &si);

	__atomic_store_n(shared_stop, 1, __ATOMIC_RELAXED);
	if (wait_report(pid, WEXITED, &si) < 0)
		return 2;
	print_report("at the end", &si);
	return 0;
}
