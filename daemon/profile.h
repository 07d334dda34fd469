/*
 * Instruction-pointer sampling of a target's threads (perf_event_open,
 * software cpu-clock, user space only), for choosing hot functions.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct profile;

/*
 * Starts sampling each of the n threads at freq samples per second of the
 * thread's CPU time. Threads that are gone are skipped. 0, or -errno when
 * no thread could be sampled (-EACCES/-EPERM: perf_event_paranoid, -ENOENT:
 * no perf events in this kernel).
 */
int profile_start(const pid_t *tids, size_t n, unsigned freq, struct profile **ret);
/* Stops sampling and returns every sampled ip (owned by p). 0 or -ENOMEM. */
int profile_collect(struct profile *p, const uint64_t **ret_ips, size_t *ret_n);
void profile_free(struct profile *p);
