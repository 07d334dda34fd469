/*
 * threads: heavy thread churn with a deterministic result.
 *
 *   threads N ROUNDS [--until-eof] [--iters=K] [--checkpoint[=FD]]
 *
 * Keeps N worker threads alive: each computes tgt_work over one of 64 seeds
 * and exits; the main thread joins the slots in order and starts a
 * replacement in each, ROUNDS times over. Every result is checked against
 * the value the main thread computed for that seed before starting any
 * thread, so a thread whose registers or memory were disturbed shows up as
 * a mismatch, and the total over the joined results is printed.
 *
 * Without --until-eof the checkpoint "mid" comes after ROUNDS/2 rounds with
 * all N threads started. With --until-eof, after the ROUNDS counted rounds
 * it sends the event "churning PID" (no wait) and keeps churning, still
 * checking every result but no longer adding them up, until stdin gives a
 * byte or end of file; the printed lines depend only on N, ROUNDS and K.
 */
#include "tgt.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEEDS 64

struct slot {
	pthread_t thread;
	unsigned seed;
	uint64_t result;
};

static unsigned iters = 20000;
static uint64_t expected[SEEDS];
static int stop_requested; /* set by the stdin watcher, read with atomics */

static void *worker(void *arg)
{
	struct slot *s = arg;

	s->result = tgt_work(0x7700 + s->seed, iters);
	return NULL;
}

static void *watch_stdin(void *arg)
{
	char c;

	(void)arg;
	while (read(STDIN_FILENO, &c, 1) < 0 && errno == EINTR)
		;
	__atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void start(struct slot *s, unsigned seed)
{
	int err;

	s->seed = seed % SEEDS;
	err = pthread_create(&s->thread, NULL, worker, s);
	if (err) {
		printf("pthread_create: %s\n", strerror(err));
		exit(2);
	}
}

/* Joins @s and checks its result; returns it. */
static uint64_t join(struct slot *s, unsigned long *mismatches)
{
	int err = pthread_join(s->thread, NULL);

	if (err) {
		printf("pthread_join: %s\n", strerror(err));
		exit(2);
	}
	if (s->result != expected[s->seed]) {
		printf("mismatch: seed %u gave %016" PRIx64 ", expected %016" PRIx64 "\n", s->seed,
		       s->result, expected[s->seed]);
		++*mismatches;
	}
	return s->result;
}

int main(int argc, char **argv)
{
	unsigned long n = 0, rounds = 0, joined = 0, mismatches = 0;
	bool until_eof = false;
	int positional = 0;
	uint64_t total = 0;
	struct slot *slots;
	pthread_t watcher;

	for (int i = 1; i < argc; i++) {
		if (tgt_parse_checkpoint(argv[i]))
			continue;
		if (strcmp(argv[i], "--until-eof") == 0)
			until_eof = true;
		else if (strncmp(argv[i], "--iters=", 8) == 0)
			iters = (unsigned)tgt_parse_ulong("iters", argv[i] + 8);
		else if (argv[i][0] == '-' || positional < 0 || positional >= 2)
			positional = -1;
		else if (positional++ == 0)
			n = tgt_parse_ulong("thread count", argv[i]);
		else
			rounds = tgt_parse_ulong("rounds", argv[i]);
	}
	if (positional != 2 || n == 0 || n > 4096) {
		fprintf(stderr, "usage: threads N ROUNDS [--until-eof] [--iters=K] "
				"[--checkpoint[=FD]]\n");
		return 2;
	}

	for (unsigned s = 0; s < SEEDS; s++)
		expected[s] = tgt_work(0x7700 + s, iters);
	slots = calloc(n, sizeof(*slots));
	if (!slots)
		return 2;
	for (unsigned long i = 0; i < n; i++)
		start(&slots[i], (unsigned)i);

	for (unsigned long r = 0; r < rounds; r++) {
		if (!until_eof && r == rounds / 2)
			tgt_checkpoint("mid");
		for (unsigned long i = 0; i < n; i++, joined++) {
			total += join(&slots[i], &mismatches);
			start(&slots[i], (unsigned)(r * 7 + i + 1));
		}
	}

	if (until_eof) {
		int err = pthread_create(&watcher, NULL, watch_stdin, NULL);

		if (err) {
			printf("pthread_create: %s\n", strerror(err));
			return 2;
		}
		tgt_event("churning %d", (int)getpid());
		for (unsigned long r = rounds; !__atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE);
		     r++)
			for (unsigned long i = 0; i < n; i++) {
				join(&slots[i], &mismatches);
				start(&slots[i], (unsigned)(r * 7 + i + 1));
			}
		pthread_join(watcher, NULL);
	}

	/* the last generation: checked, not counted */
	for (unsigned long i = 0; i < n; i++)
		join(&slots[i], &mismatches);
	free(slots);
	printf("threads %lu rounds %lu: joined %lu total %016" PRIx64 " mismatches %lu\n", n,
	       rounds, joined, total, mismatches);
	return tgt_flush_status(mismatches ? 1 : 0);
}
