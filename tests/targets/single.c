/*
 * single: single-threaded deterministic work that prints its results.
 *
 *   single [--checkpoint[=FD]] [--rounds=N] [--exit=N]
 *
 * Each round checksums a PRNG stream, sorts part of it, runs tgt_work and
 * churns the allocator (small blocks from the heap, large ones that glibc
 * maps and unmaps). The checkpoint "mid" comes after half the rounds.
 * At the start and at the end it prints its open file descriptors, its
 * blocked and ignored signals and its no-new-privs flag: what a launcher
 * or an attach could leak into a program shows up as a difference. Output
 * is the same natively and under optd; the exit status is --exit's (0 by
 * default).
 */
#include "tgt.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUES (1u << 18)
#define SORTED 4096

static void print_fds(const char *when)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int seen[64], n = 0;

	if (!d) {
		printf("%s: fds unknown\n", when);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		if (fd == dirfd(d) || n == 64)
			continue;
		seen[n++] = fd;
	}
	closedir(d);
	/* readdir order is the kernel's; print them sorted */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && seen[j - 1] > seen[j]; j--) {
			int t = seen[j];

			seen[j] = seen[j - 1];
			seen[j - 1] = t;
		}
	printf("%s: fds", when);
	for (int i = 0; i < n; i++)
		printf(" %d", seen[i]);
	printf("\n");
}

/* The lines of /proc/self/status that a launcher could change by mistake. */
static void print_status(const char *when)
{
	static const char *const keys[] = {"SigBlk:", "SigIgn:", "NoNewPrivs:"};
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	if (!f) {
		printf("%s: status unknown\n", when);
		return;
	}
	while (fgets(line, sizeof(line), f))
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strncmp(line, keys[k], strlen(keys[k])) == 0)
				printf("%s: %s", when, line);
	fclose(f);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void round_once(unsigned r, uint64_t *values)
{
	uint64_t state = 0x5eed0000u + r, sum = 0, xr = 0, alloc_sum = 0;
	uint32_t crc = 0;

	for (unsigned i = 0; i < VALUES; i++) {
		values[i] = tgt_next(&state);
		sum += values[i];
		xr ^= values[i] * (i | 1);
	}
	crc = tgt_crc32(0, values, VALUES * sizeof(*values));
	qsort(values, SORTED, sizeof(*values), cmp_u64);

	for (unsigned i = 0; i < 64; i++) {
		/* from 16 bytes to 1 MiB: the large ones are mmap'ed */
		size_t len = (size_t)16 << (tgt_next(&state) % 17);
		unsigned char *p = malloc(len);

		if (!p) {
			printf("round %u: malloc(%zu) failed\n", r, len);
			exit(2);
		}
		memset(p, (int)(i + r), len);
		alloc_sum += p[len - 1] + len;
		free(p);
	}
	printf("round %u: sum=%016" PRIx64 " xor=%016" PRIx64 " crc=%08" PRIx32
	       " median=%016" PRIx64 " work=%016" PRIx64 " alloc=%" PRIu64 "\n",
	       r, sum, xr, crc, values[SORTED / 2], tgt_work(r, 1000000), alloc_sum);
}

int main(int argc, char **argv)
{
	unsigned long rounds = 8, status = 0;
	uint64_t *values;

	for (int i = 1; i < argc; i++) {
		if (tgt_parse_checkpoint(argv[i]))
			continue;
		if (strncmp(argv[i], "--rounds=", 9) == 0)
			rounds = tgt_parse_ulong("rounds", argv[i] + 9);
		else if (strncmp(argv[i], "--exit=", 7) == 0)
			status = tgt_parse_ulong("exit status", argv[i] + 7);
		else {
			fprintf(stderr,
				"usage: single [--checkpoint[=FD]] [--rounds=N] [--exit=N]\n");
			return 2;
		}
	}

	print_fds("start");
	print_status("start");
	values = malloc(VALUES * sizeof(*values));
	if (!values)
		return 2;
	for (unsigned r = 0; r < rounds; r++) {
		if (r == rounds / 2)
			tgt_checkpoint("mid");
		round_once(r, values);
	}
	free(values);
	print_fds("end");
	print_status("end");
	printf("single: %lu rounds done\n", rounds);
	return tgt_flush_status((int)status);
}
