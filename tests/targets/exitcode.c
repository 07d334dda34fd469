/*
 * exitcode: ends with a chosen exit status or signal.
 *
 *   exitcode N       exit(N)
 *   exitcode -s SIG  die of signal SIG: SIGSEGV by a real fault, SIGABRT by
 *                    abort(), anything else by raise() with the default action
 *
 * No core dump is written. The status a shell sees is N or 128+SIG.
 */
#include "tgt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t all;
	int sig;

	if (argc == 2)
		return (int)tgt_parse_ulong("exit status", argv[1]);
	if (argc != 3 || strcmp(argv[1], "-s") != 0) {
		fprintf(stderr, "usage: exitcode N | exitcode -s SIGNAL\n");
		return 2;
	}
	sig = (int)tgt_parse_ulong("signal", argv[2]);
	tgt_no_core();
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	signal(sig, SIG_DFL);
	if (sig == SIGSEGV) {
		volatile int *volatile null = NULL;

		*null = 1;
	} else if (sig == SIGABRT) {
		abort();
	}
	raise(sig);
	fprintf(stderr, "exitcode: signal %d did not end the process\n", sig);
	return 2;
}
