/*
 * guard_bench: the target program of bench/guard.sh, which measures what
 * the guard costs (DESIGN.md, "The guard").
 *
 *   guard_bench collide [--threads=N] [--iters=K] [--warmup-ms=MS] [--idle=sleep|block]
 *   guard_bench syscalls [--iters=K] [--time] [--seccomp-allow]
 *
 * collide (only under optd): N-1 extra threads idle (sleep: nanosleep 1 ms
 * in a loop; block: read(2) on a pipe that stays empty) while the main
 * thread, K times (after MS milliseconds of the same work unrecorded, so
 * that optd's hot relocation is done):
 *   - reads /proc/self/maps (read(2) into a static buffer: nothing in the
 *     loop allocates) and finds optd's region, the anonymous r-x mapping
 *     that starts with the magic "optd-rgn" (its header gives its size);
 *   - "bare": times a munmap of an unmapped page inside the window the
 *     filter guards (the region rounded out to 2 MiB, plus 2 MiB each side)
 *     but outside the region: trapped and resumed at once, one seccomp stop
 *     round trip;
 *   - "collide": times mmap(region start, 4096, rw-, PRIVATE|ANON|FIXED),
 *     which optd satisfies by moving the region first, checks that it got
 *     the page at that address and can write it, and munmaps it again
 *     (untimed).
 * Times are CLOCK_MONOTONIC (vDSO) around the one syscall. It prints
 * "key value" lines: the medians and 99th percentiles in µs, the ratio of
 * the medians (collide / bare), how many times the region was seen at a new
 * place, and how many bare requests it made.
 *
 * syscalls: K iterations of cheap requests of the kinds the filter looks
 * at, none near optd's region: mmap(NULL, 4096) + write + munmap of that
 * page, mprotect of a page of its own (twice), madvise(MADV_NORMAL) of it,
 * brk(0), getpid and a 64-byte read of /dev/zero. Prints only a checksum of
 * the results that do not depend on addresses or pids (the same natively,
 * under optd and under strace); with --time, "loop_ns N" on stderr. With
 * --seccomp-allow it first installs a filter of one instruction that allows
 * everything: what any filter costs, whatever its program.
 *
 * Exit status 0; 1 when a request got a result it would not get natively
 * (collide: the page not at the address asked for); 2 for a usage or setup
 * failure (collide: no region, i.e. not run under optd), said on stderr.
 */
#include "../injector/region_header.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024)
#define WINDOW_ALIGN (2 * MIB)
#define WINDOW_MARGIN (2 * MIB)
#define MAPS_BUF (4 * MIB)
#define MAX_MAPS 65536

#define ALIGN_DOWN(x, a) ((x) & ~((a)-1))
#define ALIGN_UP(x, a) ALIGN_DOWN((x) + (a)-1, a)

static void __attribute__((noreturn, format(printf, 2, 3))) die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("guard_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- /proc/self/maps, without stdio or malloc ---- */

struct mapping {
	uintptr_t start, end;
	bool anon_rx; /* anonymous (no file, or [anon:...]) and r-x */
};

static char maps_buf[MAPS_BUF];
static struct mapping maps[MAX_MAPS];
static size_t n_maps;

static const char *parse_hex(const char *s, uintptr_t *ret)
{
	uintptr_t v = 0;

	for (;; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			break;
		v = v * 16 + (uintptr_t)d;
	}
	*ret = v;
	return s;
}

static const char *skip_field(const char *s, const char *end)
{
	while (s < end && *s != ' ' && *s != '\n')
		s++;
	while (s < end && *s == ' ')
		s++;
	return s;
}

static void read_maps(void)
{
	size_t len = 0;
	ssize_t n;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(2, "cannot open /proc/self/maps: %s", strerror(errno));
	while ((n = read(fd, maps_buf + len, sizeof(maps_buf) - len)) > 0)
		len += (size_t)n;
	if (n < 0 || len == sizeof(maps_buf))
		die(2, "cannot read /proc/self/maps");
	close(fd);

	n_maps = 0;
	for (const char *s = maps_buf, *end = maps_buf + len; s < end && n_maps < MAX_MAPS;) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		struct mapping *m = &maps[n_maps++];
		const char *perms, *inode, *path;

		if (!eol)
			eol = end;
		s = parse_hex(s, &m->start);
		s = parse_hex(s + 1, &m->end);
		perms = s + 1;
		inode = skip_field(skip_field(skip_field(perms, eol), eol), eol);
		path = skip_field(inode, eol);
		m->anon_rx = perms[0] == 'r' && perms[2] == 'x' && inode[0] == '0' &&
			     (inode[1] == ' ' || inode[1] == '\n' || inode + 1 == eol) &&
			     (path == eol || strncmp(path, "[anon:", 6) == 0);
		s = eol + 1;
	}
}

static bool range_free(uintptr_t start, uintptr_t end)
{
	for (size_t i = 0; i < n_maps; i++)
		if (maps[i].start < end && maps[i].end > start)
			return false;
	return true;
}

/* optd's region in the maps just read: its start and end, or false. */
static bool find_region(uintptr_t *ret_start, uintptr_t *ret_end)
{
	for (size_t i = 0; i < n_maps; i++) {
		const struct optd_region_header *h = (const void *)maps[i].start;

		if (!maps[i].anon_rx || maps[i].end - maps[i].start < sizeof(*h))
			continue;
		if (memcmp(h->magic, OPTD_REGION_MAGIC, OPTD_REGION_MAGIC_LEN) != 0 ||
		    h->base != maps[i].start || h->size % PAGE)
			continue;
		*ret_start = maps[i].start;
		*ret_end = maps[i].start + h->size;
		return true;
	}
	return false;
}

/*
 * An unmapped page outside the region but inside the window a filter for
 * the region's current place guards, or 0: 1 MiB above the region's end,
 * 1 MiB below its start, or right next to it.
 */
static uintptr_t bare_page(uintptr_t start, uintptr_t end)
{
	uintptr_t wstart = ALIGN_DOWN(start, WINDOW_ALIGN);
	uintptr_t wend = ALIGN_UP(end, WINDOW_ALIGN) + WINDOW_MARGIN;
	uintptr_t cand[] = {end + MIB, start - MIB, end, start - PAGE};

	wstart = wstart > WINDOW_MARGIN ? wstart - WINDOW_MARGIN : PAGE;
	for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
		if (cand[i] >= wstart && cand[i] + PAGE <= wend &&
		    range_free(cand[i], cand[i] + PAGE))
			return cand[i];
	return 0;
}

/* ---- collide ---- */

enum idle { IDLE_SLEEP, IDLE_BLOCK };

static int stop_idlers;
static int idle_pipe[2] = {-1, -1};

static void *idler(void *arg)
{
	enum idle how = (enum idle)(uintptr_t)arg;
	char c;

	if (how == IDLE_BLOCK) {
		while (read(idle_pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		return NULL;
	}
	while (!__atomic_load_n(&stop_idlers, __ATOMIC_RELAXED)) {
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v and gives its median and nearest-rank 99th percentile, in µs. */
static void summarize(uint64_t *v, size_t n, double *ret_median, double *ret_p99)
{
	size_t k;

	*ret_median = *ret_p99 = 0;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_u64);
	*ret_median =
	    (n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2) / 1000;
	k = (n * 99 + 99) / 100; /* ceil(0.99 n) */
	*ret_p99 = (double)v[k - 1] / 1000;
}

/* One round: bare, then collide. Returns false if the region is gone. */
static bool collide_once(uint64_t *ret_bare, uint64_t *ret_collide, uintptr_t *ret_start,
			 uintptr_t *ret_size)
{
	uintptr_t start, end, b;
	uint64_t t0, t1;
	void *p;

	read_maps();
	if (!find_region(&start, &end))
		return false;
	*ret_start = start;
	*ret_size = end - start;
	*ret_bare = 0;
	b = bare_page(start, end);
	if (b) {
		t0 = now_ns();
		syscall(SYS_munmap, b, PAGE);
		t1 = now_ns();
		*ret_bare = t1 - t0;
	}
	t0 = now_ns();
	p = mmap((void *)start, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	t1 = now_ns();
	if (p != (void *)start)
		die(1, "mmap(%#lx, 4096, MAP_FIXED) = %p (%s): not the native result",
		    (unsigned long)start, p, p == MAP_FAILED ? strerror(errno) : "elsewhere");
	*(volatile char *)p = 1;
	munmap(p, PAGE);
	*ret_collide = t1 - t0;
	return true;
}

static int run_collide(unsigned threads, size_t iters, unsigned warmup_ms, enum idle how)
{
	uint64_t *bare = calloc(iters, sizeof(*bare)), *coll = calloc(iters, sizeof(*coll));
	pthread_t *tids = calloc(threads, sizeof(*tids));
	uintptr_t start, end, size = 0, last = 0;
	size_t n_bare = 0, moves = 0, warmup_rounds = 0;
	double bm, bp, cm, cp;
	uint64_t until;

	if (!bare || !coll || !tids)
		die(2, "out of memory");
	if (how == IDLE_BLOCK && pipe2(idle_pipe, O_CLOEXEC) < 0)
		die(2, "pipe: %s", strerror(errno));
	for (unsigned i = 1; i < threads; i++) {
		int r = pthread_create(&tids[i], NULL, idler, (void *)(uintptr_t)how);
		if (r)
			die(2, "pthread_create: %s", strerror(r));
	}

	until = now_ns() + (uint64_t)warmup_ms * 1000000u;
	do {
		uint64_t b, c;
		if (!collide_once(&b, &c, &start, &size))
			die(2, "no optd region in /proc/self/maps: run me under optd");
		warmup_rounds++;
	} while (now_ns() < until);
	/* A move is seen when the next look finds the region somewhere else. */
	read_maps();
	if (!find_region(&last, &end))
		die(2, "optd's region is gone from /proc/self/maps");
	for (size_t i = 0; i < iters; i++) {
		uint64_t b, c;
		if (!collide_once(&b, &c, &start, &size))
			die(2, "optd's region is gone from /proc/self/maps");
		moves += start != last;
		last = start;
		coll[i] = c;
		if (b)
			bare[n_bare++] = b;
	}
	read_maps();
	if (!find_region(&start, &end))
		die(2, "optd's region is gone from /proc/self/maps");
	moves += start != last;

	__atomic_store_n(&stop_idlers, 1, __ATOMIC_RELAXED);
	if (how == IDLE_BLOCK)
		close(idle_pipe[1]);
	for (unsigned i = 1; i < threads; i++)
		pthread_join(tids[i], NULL);

	summarize(bare, n_bare, &bm, &bp);
	summarize(coll, iters, &cm, &cp);
	printf("threads %u\n", threads);
	printf("region_bytes %lu\n", (unsigned long)size);
	printf("warmup_rounds %zu\n", warmup_rounds);
	printf("iters %zu\n", iters);
	printf("moves_seen %zu\n", moves);
	printf("bare_requests %zu\n", n_bare);
	printf("collide_median_us %.1f\n", cm);
	printf("collide_p99_us %.1f\n", cp);
	printf("bare_median_us %.1f\n", bm);
	printf("bare_p99_us %.1f\n", bp);
	printf("ratio_median %.2f\n", bm > 0 ? cm / bm : 0.0);
	free(bare);
	free(coll);
	free(tids);
	return 0;
}

/* ---- syscalls ---- */

static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ULL; /* FNV-1a, a word at a time */
}

/* A filter that allows every syscall: every syscall takes the kernel's seccomp path. */
static void seccomp_allow_all(void)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {.len = 1, .filter = &allow};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		die(2, "cannot install a seccomp filter: %s", strerror(errno));
}

static int run_syscalls(size_t iters, bool timed, bool allow_filter)
{
	char buf[64];
	uint64_t h = 0xcbf29ce484222325ULL, t0, t1;
	long pid0 = syscall(SYS_getpid);
	char *own = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);

	if (own == MAP_FAILED || fd < 0)
		die(2, "setup: %s", strerror(errno));
	if (allow_filter)
		seccomp_allow_all();
	t0 = now_ns();
	for (size_t i = 0; i < iters; i++) {
		char *p =
		    mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		h = mix(h, p == MAP_FAILED);
		if (p != MAP_FAILED) {
			p[0] = (char)i;
			h = mix(h, (uint8_t)p[0]);
			h = mix(h, (uint64_t)munmap(p, PAGE));
		}
		h = mix(h, (uint64_t)mprotect(own, PAGE, PROT_READ));
		h = mix(h, (uint64_t)mprotect(own, PAGE, PROT_READ | PROT_WRITE));
		h = mix(h, (uint64_t)madvise(own, PAGE, MADV_NORMAL));
		h = mix(h, syscall(SYS_brk, 0) > 0);
		h = mix(h, syscall(SYS_getpid) == pid0);
		h = mix(h, (uint64_t)read(fd, buf, sizeof(buf)));
		h = mix(h, (uint8_t)buf[i % sizeof(buf)]);
	}
	t1 = now_ns();
	printf("checksum %016" PRIx64 "\n", h);
	if (timed)
		fprintf(stderr, "loop_ns %" PRIu64 "\n", t1 - t0);
	return 0;
}

/* ---- command line ---- */

static bool opt_value(const char *arg, const char *name, const char **ret)
{
	size_t n = strlen(name);

	if (strncmp(arg, name, n) != 0 || arg[n] != '=')
		return false;
	*ret = arg + n + 1;
	return true;
}

static unsigned long number(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		die(2, "invalid %s '%s'", what, s);
	return v;
}

int main(int argc, char **argv)
{
	unsigned long threads = 1, iters = 1000, warmup_ms = 0;
	enum idle how = IDLE_SLEEP;
	bool timed = false, allow_filter = false;
	const char *v;

	if (argc < 2 || (strcmp(argv[1], "collide") != 0 && strcmp(argv[1], "syscalls") != 0))
		die(2, "usage: guard_bench collide [--threads=N] [--iters=K] [--warmup-ms=MS] "
		       "[--idle=sleep|block]\n"
		       "       guard_bench syscalls [--iters=K] [--time] [--seccomp-allow]");
	for (int i = 2; i < argc; i++) {
		if (opt_value(argv[i], "--threads", &v))
			threads = number(v, "--threads");
		else if (opt_value(argv[i], "--iters", &v))
			iters = number(v, "--iters");
		else if (opt_value(argv[i], "--warmup-ms", &v))
			warmup_ms = number(v, "--warmup-ms");
		else if (opt_value(argv[i], "--idle", &v) && strcmp(v, "sleep") == 0)
			how = IDLE_SLEEP;
		else if (opt_value(argv[i], "--idle", &v) && strcmp(v, "block") == 0)
			how = IDLE_BLOCK;
		else if (strcmp(argv[i], "--time") == 0)
			timed = true;
		else if (strcmp(argv[i], "--seccomp-allow") == 0)
			allow_filter = true;
		else
			die(2, "unknown option '%s'", argv[i]);
	}
	if (threads < 1 || threads > 4096 || iters < 1 || iters > 100000000)
		die(2, "--threads must be 1-4096 and --iters 1-100000000");
	if (strcmp(argv[1], "collide") == 0)
		return run_collide((unsigned)threads, iters, (unsigned)warmup_ms, how);
	return run_syscalls(iters, timed, allow_filter);
}
