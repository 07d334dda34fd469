/*
 * forker: processes that fork, exec, exit and die, with deterministic output.
 *
 *   forker [--checkpoint[=FD]]
 *   forker --exec-child [--checkpoint[=FD]]   (what forker runs after vfork)
 *
 * The parent waits for each child before it prints, so the order of lines
 * never depends on scheduling; stdout is flushed before every fork so that
 * no buffered line is printed twice. It forks:
 *   child1      works and exits 0;
 *   child2      checkpoint "child", works, forks a grandchild (checkpoint
 *               "grandchild", works, exits 5), reports it and exits 3;
 *   child3      is killed by the parent with SIGKILL;
 *   child4      dies of a real SIGSEGV (a store through a null pointer);
 * then vforks and execs /bin/true, and vforks and execs itself with
 * --exec-child (checkpoint "exec-child", works, exits 4).
 */
#include "tgt.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *who, int status)
{
	if (WIFEXITED(status))
		printf("%s exited %d\n", who, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("%s killed by signal %d\n", who, WTERMSIG(status));
	else
		printf("%s: wait status 0x%x\n", who, status);
}

/* Waits for @pid and prints how it ended. */
static void reap(const char *who, pid_t pid)
{
	int status;

	if (pid < 0) {
		printf("%s: fork failed: %s\n", who, strerror(errno));
		exit(2);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			printf("%s: waitpid: %s\n", who, strerror(errno));
			exit(2);
		}
	}
	report(who, status);
}

static pid_t fork_flushed(void)
{
	fflush(stdout);
	return fork();
}

static void grandchild(void)
{
	tgt_checkpoint("grandchild");
	printf("grandchild: work=%016" PRIx64 "\n", tgt_work(3, 100000));
	exit(5);
}

static void child2(void)
{
	pid_t pid;

	tgt_checkpoint("child");
	printf("child2: work=%016" PRIx64 "\n", tgt_work(2, 100000));
	pid = fork_flushed();
	if (pid == 0)
		grandchild();
	reap("child2: grandchild", pid);
	exit(3);
}

static void child3(int ready_fd)
{
	char c = 'r';

	if (write(ready_fd, &c, 1) != 1)
		_exit(2);
	for (;;)
		pause();
}

static void child4(void)
{
	volatile int *volatile null = NULL;

	tgt_no_core();
	*null = 42;
	_exit(2); /* not reached */
}

static void vfork_exec(const char *who, char *const argv[])
{
	pid_t pid;

	fflush(stdout);
	pid = vfork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	reap(who, pid);
}

int main(int argc, char **argv)
{
	char cp_arg[32] = "--no-checkpoint";
	bool exec_child = false;
	int ready[2];
	char c;
	pid_t pid;

	for (int i = 1; i < argc; i++) {
		if (tgt_parse_checkpoint(argv[i]))
			continue;
		if (strcmp(argv[i], "--exec-child") == 0) {
			exec_child = true;
			continue;
		}
		fprintf(stderr, "usage: forker [--exec-child] [--checkpoint[=FD]]\n");
		return 2;
	}
	if (exec_child) {
		tgt_checkpoint("exec-child");
		printf("exec-child: work=%016" PRIx64 "\n", tgt_work(4, 100000));
		return 4;
	}

	printf("parent: work=%016" PRIx64 "\n", tgt_work(0, 100000));

	pid = fork_flushed();
	if (pid == 0) {
		printf("child1: work=%016" PRIx64 "\n", tgt_work(1, 100000));
		exit(0);
	}
	reap("child1", pid);

	pid = fork_flushed();
	if (pid == 0)
		child2();
	reap("child2", pid);

	if (pipe(ready) < 0)
		return 2;
	pid = fork_flushed();
	if (pid == 0)
		child3(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		printf("child3 did not start\n");
	kill(pid, SIGKILL);
	reap("child3", pid);
	close(ready[0]);
	close(ready[1]);

	pid = fork_flushed();
	if (pid == 0)
		child4();
	reap("child4", pid);

	vfork_exec("vfork /bin/true", (char *[]){"/bin/true", NULL});
	if (tgt_event_fd >= 0)
		snprintf(cp_arg, sizeof(cp_arg), "--checkpoint=%d", tgt_event_fd);
	vfork_exec("vfork exec-child", (char *[]){"/proc/self/exe", "--exec-child",
						  tgt_event_fd >= 0 ? cp_arg : NULL, NULL});

	printf("parent: done\n");
	return 0;
}
