/*
 * What the target programs share: a deterministic workload and the
 * checkpoint protocol the integration drivers use to look at a target at a
 * known point without sleeping.
 *
 * Checkpoint protocol. A target given --checkpoint[=FD] (FD defaults to 2)
 * writes one line "checkpoint NAME PID\n" to FD at each named point and
 * then blocks until it reads one byte from stdin; at end of file it goes on
 * without waiting (so closing stdin releases every checkpoint at once). A
 * notification ("NAME PID\n" through tgt_event) does not wait. Each line is
 * one write(2), so lines from several processes sharing FD never interleave.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The fd events go to; -1 when the target runs without --checkpoint. */
extern int tgt_event_fd;

/*
 * Consumes a "--checkpoint" or "--checkpoint=FD" argument. Returns true when
 * @arg was one (and sets tgt_event_fd), false when it is something else.
 * Exits with status 2 on a malformed FD: only main() calls it.
 */
bool tgt_parse_checkpoint(const char *arg);

/* Writes "checkpoint NAME PID" and waits for one byte on stdin (or EOF). */
void tgt_checkpoint(const char *name);

/* Writes one formatted line to the event fd; does nothing without one. */
void tgt_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Deterministic CPU work: @iters steps of a PRNG stream folded through a
 * CRC, a small bytecode interpreter (a switch the compiler turns into a jump
 * table) and calls through function pointers, so that the hot code has the
 * shapes an optimizer must copy correctly. Same result for the same
 * arguments, in every thread and process.
 */
uint64_t tgt_work(uint64_t seed, unsigned iters);

/* One step of splitmix64. */
static inline uint64_t tgt_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* CRC-32 (IEEE) of @len bytes, continuing from @crc (0 to start). */
uint32_t tgt_crc32(uint32_t crc, const void *buf, size_t len);

/* Parses a non-negative decimal; exits with status 2 on junk. */
unsigned long tgt_parse_ulong(const char *what, const char *s);

/*
 * Flushes stdout; on failure says why on stderr and returns 3, else
 * @status. A target ends with `return tgt_flush_status(status);` so that
 * output lost to a disturbed fd shows up as a status, not as silence.
 */
int tgt_flush_status(int status);

/* Disables core dumps: the targets that die by a signal must not leave any. */
void tgt_no_core(void);
