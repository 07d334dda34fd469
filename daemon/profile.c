/*
 * Instruction-pointer sampling with perf_event_open: a software cpu-clock
 * event per target thread (these machines have no hardware PMU), user
 * space only, samples read from each event's mmap ring. The target is never
 * stopped for it.
 */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "profile.h"
#include "util.h"

#define RING_DATA_PAGES 8      /* a power of two, as perf requires */
#define MAX_SAMPLED_THREADS 64 /* existing threads sampled; their new threads inherit */

struct profile {
	int *fds;
	void **rings;
	size_t n;
	size_t ring_bytes;
	uint64_t *ips;
	size_t n_ips;
	size_t cap_ips;
	uint64_t lost;
};

static int event_open(pid_t tid, int cpu, unsigned freq, int *ret_fd)
{
	struct perf_event_attr attr = {
	    .type = PERF_TYPE_SOFTWARE,
	    .size = sizeof(attr),
	    .config = PERF_COUNT_SW_CPU_CLOCK,
	    .sample_freq = freq,
	    .freq = 1,
	    .sample_type = PERF_SAMPLE_IP,
	    .exclude_kernel = 1,
	    .exclude_hv = 1,
	    .disabled = 0,
	    .inherit = 1, /* threads created while sampling are sampled too */
	};
	long fd = syscall(SYS_perf_event_open, &attr, tid, cpu, -1, PERF_FLAG_FD_CLOEXEC);

	if (fd < 0)
		return negerrno();
	*ret_fd = (int)fd;
	return 0;
}

int profile_start(const pid_t *tids, size_t n, unsigned freq, struct profile **ret)
{
	struct profile *p = calloc(1, sizeof(*p));
	long page = sysconf(_SC_PAGESIZE);
	int r = 0;

	if (!p)
		return -ENOMEM;
	/*
	 * An inherited event (so that threads born while sampling are sampled
	 * too) can only be mmapped when bound to a CPU: one event per thread
	 * and CPU.
	 */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	if (n > MAX_SAMPLED_THREADS)
		n = MAX_SAMPLED_THREADS;
	size_t nev = n * (size_t)ncpu;
	p->ring_bytes = (size_t)page * (1 + RING_DATA_PAGES);
	p->fds = calloc(nev, sizeof(*p->fds));
	p->rings = calloc(nev, sizeof(*p->rings));
	if (!p->fds || !p->rings) {
		profile_free(p);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nev; i++) {
		int fd;
		void *ring;

		r = event_open(tids[i / (size_t)ncpu], (int)(i % (size_t)ncpu), freq, &fd);
		if (r == -ESRCH)
			continue; /* the thread ended meanwhile */
		if (r < 0)
			break;
		ring = mmap(NULL, p->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (ring == MAP_FAILED) {
			r = negerrno();
			close(fd);
			break;
		}
		p->fds[p->n] = fd;
		p->rings[p->n++] = ring;
	}
	if (r < 0 && r != -ESRCH && !p->n) {
		profile_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

static int push_ip(struct profile *p, uint64_t ip)
{
	if (p->n_ips == p->cap_ips) {
		size_t cap = p->cap_ips ? p->cap_ips * 2 : 4096;
		uint64_t *v = realloc(p->ips, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->ips = v;
		p->cap_ips = cap;
	}
	p->ips[p->n_ips++] = ip;
	return 0;
}

/* Drains one ring: records between data_tail and data_head, oldest first. */
static int drain(struct profile *p, struct perf_event_mmap_page *meta)
{
	uint8_t *data = (uint8_t *)meta + meta->data_offset;
	uint64_t size = meta->data_size, head, tail = meta->data_tail;

	head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	while (tail < head) {
		struct perf_event_header h;
		uint8_t rec[64];

		for (size_t k = 0; k < sizeof(h); k++)
			((uint8_t *)&h)[k] = data[(tail + k) % size];
		if (h.size < sizeof(h))
			break;
		if (h.type == PERF_RECORD_SAMPLE && h.size <= sizeof(rec)) {
			for (size_t k = 0; k < h.size; k++)
				rec[k] = data[(tail + k) % size];
			uint64_t ip;
			memcpy(&ip, rec + sizeof(h), sizeof(ip));
			if (push_ip(p, ip) < 0)
				return -ENOMEM;
		} else if (h.type == PERF_RECORD_LOST) {
			p->lost++;
		}
		tail += h.size;
	}
	__atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
	return 0;
}

int profile_collect(struct profile *p, const uint64_t **ret_ips, size_t *ret_n)
{
	for (size_t i = 0; i < p->n; i++) {
		ioctl(p->fds[i], PERF_EVENT_IOC_DISABLE, 0);
		int r = drain(p, p->rings[i]);
		if (r < 0)
			return r;
	}
	*ret_ips = p->ips;
	*ret_n = p->n_ips;
	return 0;
}

void profile_free(struct profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		munmap(p->rings[i], p->ring_bytes);
		close(p->fds[i]);
	}
	free(p->fds);
	free(p->rings);
	free(p->ips);
	free(p);
}
