/*
 * pltcall [--where] [--checkpoint[=FD]] [ROUNDS]: calls plt_outer() of a
 * library that calls through its PLT (pltlib.c) ROUNDS times (default
 * 20000) and prints a checksum. Stops at the checkpoint "mid" halfway.
 * --where prints the run-time address of plt_outer and exits: under
 * `setarch -R` it tells a driver where the library will be.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tgt.h"

uint64_t plt_outer(uint64_t i);

int main(int argc, char **argv)
{
	uint64_t rounds = 20000, sum = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--where")) {
			printf("%#" PRIxPTR "\n", (uintptr_t)&plt_outer);
			return 0;
		}
		if (tgt_parse_checkpoint(argv[i]))
			continue;
		rounds = strtoull(argv[i], NULL, 10);
	}
	for (uint64_t i = 0; i < rounds; i++) {
		if (i == rounds / 2)
			tgt_checkpoint("mid");
		sum = sum * 31 + plt_outer(i);
	}
	printf("pltcall: %" PRIu64 " rounds, checksum %016" PRIx64 "\n", rounds, sum);
	return 0;
}
