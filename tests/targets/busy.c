/*
 * busy: a target to attach to, with threads spinning on the CPU.
 *
 *   busy [--threads=N] [--checkpoint[=FD]]
 *
 * Starts N threads (default 1) that run tgt_work in a loop and check each
 * result against the value computed before they started. The main thread
 * then sends the event "ready PID" and reads stdin line by line: for the
 * K-th line it prints a deterministic "tick K ..." line and sends the event
 * "tick K PID" (so a driver knows the target ran while it was attached). At
 * end of file it stops and joins the spinners and prints a summary that
 * does not depend on how long they ran. SIGTERM or SIGINT end it as usual.
 * Exit status 0, or 1 when a spinner saw a wrong result.
 */
#include "tgt.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 4096

static int stop;
static unsigned long mismatches;

struct spinner {
	pthread_t thread;
	uint64_t seed;
	uint64_t expected;
};

static void *spin(void *arg)
{
	struct spinner *s = arg;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
		if (tgt_work(s->seed, CHUNK) != s->expected)
			__atomic_add_fetch(&mismatches, 1, __ATOMIC_RELAXED);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long nthreads = 1, ticks = 0;
	struct spinner *spinners;
	char line[256];

	for (int i = 1; i < argc; i++) {
		if (tgt_parse_checkpoint(argv[i]))
			continue;
		if (strncmp(argv[i], "--threads=", 10) == 0) {
			nthreads = tgt_parse_ulong("thread count", argv[i] + 10);
			continue;
		}
		fprintf(stderr, "usage: busy [--threads=N] [--checkpoint[=FD]]\n");
		return 2;
	}

	spinners = calloc(nthreads ? nthreads : 1, sizeof(*spinners));
	if (!spinners)
		return 2;
	for (unsigned long i = 0; i < nthreads; i++) {
		int err;

		spinners[i].seed = 0xb5500 + i;
		spinners[i].expected = tgt_work(spinners[i].seed, CHUNK);
		err = pthread_create(&spinners[i].thread, NULL, spin, &spinners[i]);
		if (err) {
			printf("pthread_create: %s\n", strerror(err));
			return 2;
		}
	}

	tgt_event("ready %d", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		ticks++;
		printf("tick %lu %016" PRIx64 "\n", ticks, tgt_work(ticks, 50000));
		fflush(stdout);
		tgt_event("tick %lu %d", ticks, (int)getpid());
	}

	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned long i = 0; i < nthreads; i++)
		pthread_join(spinners[i].thread, NULL);
	free(spinners);
	printf("busy: %lu threads, %lu ticks, mismatches %lu\n", nthreads, ticks, mismatches);
	return tgt_flush_status(mismatches ? 1 : 0);
}
