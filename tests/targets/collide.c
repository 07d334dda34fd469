/*
 * collide: the target program's own address-space requests, aimed at the
 * range where optd's region will be, with results that must print the same
 * natively and under optd.
 *
 *   collide [--checkpoint[=FD]] layout
 *   collide [--checkpoint[=FD]] KIND ADDR LEN [ADDR2]
 *
 * ADDR is hexadecimal (0x optional), page aligned; LEN is a number of bytes
 * (decimal, 0x hexadecimal, or with a K, M or G suffix: 1M), a multiple of
 * the page size. [ADDR, ADDR+LEN) is where the driver puts optd's region
 * (--arena-at=ADDR --region-size=LEN); natively nothing is mapped there, and
 * each KIND makes requests that would collide with the region. Every request
 * prints one line: the call, with addresses relative to ADDR, and its result
 * relative to ADDR (or "hint"/"elsewhere" for a hint), or "-1 ENAME". New
 * mappings are checked to read as zeros, written with a pattern and read back
 * (a CRC-32); "maps" lines show what /proc/self/maps says about the requested
 * range afterwards, clipped to it, with adjacent mappings of the same kind and
 * protection merged (how the kernel splits them into VMAs is not a result).
 * Nothing printed depends on time, pids or where the kernel chose to put a
 * mapping. A kernel that lacks a request prints its errno like any other
 * result.
 *
 * KIND is one of
 *   layout            absolute addresses, for the driver to choose ADDR:
 *                     the program break, the executable's start and end, the
 *                     stack's start and end, the stack pointer, RLIMIT_STACK;
 *   mmap_fixed        MAP_FIXED anonymous over the range, over its middle
 *                     page, and a MAP_SHARED file mapping inside it;
 *   mmap_noreplace    MAP_FIXED_NOREPLACE at ADDR, at ADDR+LEN/2, and over a
 *                     page the program mapped itself (EEXIST natively);
 *   mmap_hint         hints (no MAP_FIXED) at ADDR, at ADDR+LEN/2, and over
 *                     a page of the program's own (not honoured natively);
 *   brk               grows the break in 64 KiB steps past ADDR+LEN+1M (ADDR
 *                     a little above the break), fills the new heap, shrinks;
 *   mremap_grow       grows 64 KiB just below ADDR in place over the range;
 *   mremap_fixed      moves 64 KiB to ADDR growing it to LEN, and 64 KiB to
 *                     the range's last 64 KiB (MREMAP_MAYMOVE|MREMAP_FIXED);
 *   mremap_dontunmap  the same with MREMAP_DONTUNMAP, to ADDR;
 *   munmap            munmap of the range, of a range over its first page,
 *                     of the program's page below it with the range, then
 *                     MAP_FIXED_NOREPLACE shows the range free;
 *   mprotect          mprotect and pkey_mprotect(pkey -1) over the program's
 *                     page at ADDR-4096 and the range (ENOMEM natively, and
 *                     the page's protection changes all the same);
 *   madvise           each advice that changes or discards contents, over
 *                     the range and over the program's page below it with
 *                     the range;
 *   shmat             shmat of a LEN segment at ADDR, with SHM_REMAP, and
 *                     without it over a page of the program's (EINVAL);
 *   stack             recursion with 64 KiB frames until the stack pointer
 *                     is below ADDR+LEN (ADDR in the stack's growth area);
 *   stack_touch       a first write at ADDR, far below the stack pointer in
 *                     the stack's growth area, then at ADDR+LEN-1: the
 *                     kernel grows the stack down to ADDR in one step, as
 *                     for a frame larger than the guard gap;
 *   threads           mmap_fixed while 4 threads run tgt_work;
 *   signal            mmap_fixed in a SIGUSR1 handler (raise());
 *   fork              mmap_fixed in a forked child, then in the parent;
 *   vfork             mmap_fixed in a vfork child (in the parent's address
 *                     space, the parent blocked in vfork), then the range as
 *                     the parent sees it, then mmap_fixed in the parent;
 *   exec              re-executes itself (/proc/self/exe) as mmap_fixed;
 *   fails             requests into the range that fail natively for their
 *                     own reasons (EBADF, EINVAL, ...);
 *   ownfilter         installs a seccomp filter of its own that returns
 *                     SECCOMP_RET_TRACE (data 0) for getppid and for an mmap
 *                     at ADDR asking for r-- alone: with no tracer both fail
 *                     with ENOSYS and change nothing; then mmap_fixed's
 *                     requests, which the filter lets through;
 *   all               every KIND above that needs no special ADDR (not
 *                     layout, brk, stack, stack_touch, exec), each after a
 *                     "== KIND" line;
 *   vfork_thread      the main thread vforks; while the child waits in a
 *                     read, another thread makes mmap_fixed, then lets
 *                     the child go;
 *   vfork_wide        a vfork child maps over [ADDR-32M, ADDR+32M)
 *                     (MAP_FIXED) and unmaps it, then, with ADDR2, the
 *                     parent makes a MAP_FIXED_NOREPLACE of LEN at ADDR2;
 *   budget            uses up the kernel's room for seccomp filters (under
 *                     no-new-privs, filters that allow everything, until
 *                     the kernel refuses even a one-instruction one), maps
 *                     over [ADDR-32M, ADDR+32M) (MAP_FIXED) and unmaps it,
 *                     then, with ADDR2, MAP_FIXED_NOREPLACE of LEN at ADDR2;
 *   detached          for after an `optd --pid` detach (the driver lets the
 *                     "start" checkpoint go then): requests aimed at ADDR
 *                     (lines "window: "), the same ones at ADDR+64M
 *                     ("elsewhere: "), and requests that name no address,
 *                     a thread and the heap ("anywhere: ").
 * ADDR2 (hexadecimal) is only for vfork_wide and budget.
 * The checkpoint "start" comes before the first request, "end" after the
 * last. Exit status 0 when every request ran, whatever its result; 2 for a
 * usage or setup failure (said on stderr). A note on stderr says when the
 * range was not free at start (natively that means ADDR was badly chosen).
 *
 * Each line is one write(2) to stdout, so that a run that dies shows how far
 * it got. Nothing here uses malloc before the threads kind (no stdio on
 * stdout, /proc/self/maps is read with read(2)), so the program break moves
 * only when the brk kind moves it.
 */
#include "tgt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef SHM_REMAP
#define SHM_REMAP 040000
#endif

#define PAGE 4096UL
#define KIB 1024UL
#define MIB (1024UL * 1024)
#define STEP (64 * KIB)

static uintptr_t base; /* ADDR */
static size_t span;    /* LEN */
static const char *cur = "collide";
static uintptr_t base2; /* ADDR2, 0 when not given */
static const char *argv0, *addr_arg, *len_arg, *checkpoint_arg;
static int setup_failed;

/* ---- output: one write(2) per line, so that a run that dies shows how far it got ---- */

static void write_fd(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* Writes one line, prefix then fmt, to fd with one write(2) per part. */
static void vline(int fd, const char *prefix, const char *fmt, va_list ap)
{
	char line[512];
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (prefix)
		write_fd(fd, prefix, strlen(prefix));
	write_fd(fd, line, (size_t)n);
}

static void __attribute__((format(printf, 1, 2))) emit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(STDOUT_FILENO, NULL, fmt, ap);
	va_end(ap);
}

/* A setup failure: said on stderr, and the exit status becomes 2. */
static void __attribute__((format(printf, 1, 2))) setup_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(STDERR_FILENO, "collide: ", fmt, ap);
	va_end(ap);
	setup_failed = 1;
}

/* Rotating buffers for the formatting helpers, so that one emit() can use several. */
static char *scratch(void)
{
	static char bufs[16][48];
	static unsigned next;

	return bufs[next++ % 16];
}

/* @a relative to ADDR: "+0x1000", "-0x10000", "+0x0". */
static const char *rel(uintptr_t a)
{
	char *b = scratch();

	if (a >= base)
		snprintf(b, 48, "+%#" PRIxPTR, a - base);
	else
		snprintf(b, 48, "-%#" PRIxPTR, base - a);
	if (a == base)
		strcpy(b, "+0x0");
	return b;
}

static const char *errname(int e)
{
	const char *s = strerrorname_np(e);
	char *b;

	if (s)
		return s;
	b = scratch();
	snprintf(b, 48, "errno%d", e);
	return b;
}

/* "-1 ENOMEM" */
static const char *failed(int e)
{
	char *b = scratch();

	snprintf(b, 48, "-1 %s", errname(e));
	return b;
}

static const char *int_result(long r, int e)
{
	char *b;

	if (r == -1)
		return failed(e);
	b = scratch();
	snprintf(b, 48, "%ld", r);
	return b;
}

static const char *prot_str(int prot)
{
	char *b = scratch();

	snprintf(b, 48, "%c%c%c", prot & PROT_READ ? 'r' : '-', prot & PROT_WRITE ? 'w' : '-',
		 prot & PROT_EXEC ? 'x' : '-');
	if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC))
		snprintf(b + 3, 45, "|%#x", prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC));
	return b;
}

static const char *map_flags_str(int flags)
{
	static const struct {
		int flag;
		const char *name;
	} names[] = {
	    {MAP_SHARED, "SHARED"},  {MAP_PRIVATE, "PRIVATE"},
	    {MAP_FIXED, "FIXED"},    {MAP_FIXED_NOREPLACE, "FIXED_NOREPLACE"},
	    {MAP_ANONYMOUS, "ANON"},
	};
	char *b = scratch();
	size_t n = 0;

	b[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].flag))
			continue;
		n += (size_t)snprintf(b + n, 48 - n, "%s%s", n ? "|" : "", names[i].name);
		flags &= ~names[i].flag;
	}
	if (flags)
		snprintf(b + n, 48 - n, "%s%#x", n ? "|" : "", flags);
	return b;
}

/* ---- memory contents ---- */

static void fill(void *p, size_t len, uint64_t seed)
{
	uint64_t state = seed, *q = p;

	for (size_t i = 0; i < len / 8; i++)
		q[i] = tgt_next(&state);
}

static bool zeroed(const void *p, size_t len)
{
	const uint64_t *q = p;

	for (size_t i = 0; i < len / 8; i++)
		if (q[i])
			return false;
	return true;
}

static uint32_t crc(const void *p, size_t len)
{
	return tgt_crc32(0, p, len);
}

/* What a new mapping must be: zeros, then what is written into it. */
static void check_new(void *p, size_t len, uint64_t seed)
{
	bool z = zeroed(p, len);

	fill(p, len, seed);
	emit("%s:   zeroed %s, written and read back crc %08x", cur, z ? "yes" : "no", crc(p, len));
}

/* ---- /proc/self/maps ---- */

struct seg {
	uintptr_t start, end;
	char perms[5];
	char what[16];
};

static char maps_buf[1 << 20];
static struct seg segs[4096];
static size_t nsegs;

/* Reads /proc/self/maps into segs[]. 0, or -errno. */
static int read_maps(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	char *line, *next;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, maps_buf + len, sizeof(maps_buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(maps_buf) - 1) {
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	maps_buf[len] = 0;
	nsegs = 0;
	for (line = maps_buf; *line && nsegs < sizeof(segs) / sizeof(segs[0]); line = next) {
		struct seg *s = &segs[nsegs];
		unsigned long long start, end, ino;
		char perms[5];
		int path_at = 0;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		else
			next = line + strlen(line);
		if (sscanf(line, "%llx-%llx %4s %*x %*x:%*x %llu %n", &start, &end, perms, &ino,
			   &path_at) < 4)
			continue;
		s->start = (uintptr_t)start;
		s->end = (uintptr_t)end;
		memcpy(s->perms, perms, 5);
		if (!path_at || !line[path_at])
			strcpy(s->what, "anon");
		else if (line[path_at] == '[')
			snprintf(s->what, sizeof(s->what), "%s", line + path_at);
		else if (strncmp(line + path_at, "/SYSV", 5) == 0)
			strcpy(s->what, "shm");
		else
			strcpy(s->what, "file");
		nsegs++;
	}
	return 0;
}

/* Prints what the maps say about [start, end): clipped, merged, relative to ADDR. */
static void show_range(uintptr_t start, uintptr_t end)
{
	struct seg run = {0};
	bool any = false;
	int r = read_maps();

	if (r < 0) {
		setup_error("cannot read /proc/self/maps: %s", strerror(-r));
		return;
	}
	for (size_t i = 0; i <= nsegs; i++) {
		struct seg s = {0};

		if (i < nsegs) {
			s = segs[i];
			if (s.end <= start || s.start >= end)
				continue;
			if (s.start < start)
				s.start = start;
			if (s.end > end)
				s.end = end;
			if (any && run.end == s.start && !strcmp(run.perms, s.perms) &&
			    !strcmp(run.what, s.what)) {
				run.end = s.end;
				continue;
			}
		}
		if (any)
			emit("%s:   maps %s..%s %s %s", cur, rel(run.start), rel(run.end),
			     run.perms, run.what);
		if (i == nsegs)
			break;
		run = s;
		any = true;
	}
	if (!any)
		emit("%s:   maps %s..%s nothing", cur, rel(start), rel(end));
}

/* Whether anything is mapped in [start, end). */
static bool mapped(uintptr_t start, uintptr_t end)
{
	if (read_maps() < 0)
		return false;
	for (size_t i = 0; i < nsegs; i++)
		if (segs[i].start < end && segs[i].end > start)
			return true;
	return false;
}

/* The permissions of the mapping holding @a, or "none". */
static const char *perms_at(uintptr_t a)
{
	if (read_maps() < 0)
		return "unknown";
	for (size_t i = 0; i < nsegs; i++)
		if (segs[i].start <= a && a < segs[i].end)
			return segs[i].perms;
	return "none";
}

/* ---- the requests, each printed with its result ---- */

static void *x_mmap(uintptr_t addr, size_t len, int prot, int flags, int fd)
{
	void *p = mmap((void *)addr, len, prot, flags, fd, 0);
	int e = errno;
	const char *res;

	if (p == MAP_FAILED)
		res = failed(e);
	else if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
		res = rel((uintptr_t)p);
	else
		res = (uintptr_t)p == addr ? "hint" : "elsewhere";
	emit("%s: mmap(%s, %#zx, %s, %s%s) = %s", cur, rel(addr), len, prot_str(prot),
	     map_flags_str(flags), fd >= 0 ? ", fd" : "", res);
	errno = e;
	return p;
}

static int x_munmap(uintptr_t addr, size_t len)
{
	int r = munmap((void *)addr, len);
	int e = errno;

	emit("%s: munmap(%s, %#zx) = %s", cur, rel(addr), len, int_result(r, e));
	errno = e;
	return r;
}

/* A mapping the program makes for itself (not a request under test); NULL on failure. */
static void *own_map(uintptr_t addr, size_t len)
{
	void *p = mmap((void *)addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (addr ? MAP_FIXED_NOREPLACE : 0), -1, 0);

	if (p == MAP_FAILED || (addr && (uintptr_t)p != addr)) {
		setup_error("%s: cannot map %#zx bytes at %#" PRIxPTR " for itself: %s", cur, len,
			    addr, strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, len);
		return NULL;
	}
	return p;
}

/* ---- the kinds ---- */

static void kind_mmap_fixed(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	uintptr_t mid = base + (span / 2 & ~(PAGE - 1)), at = base + (span / 4 & ~(PAGE - 1));
	size_t flen = 4 * PAGE;
	char path[64];
	void *p;
	int fd;

	p = x_mmap(base, span, rw, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 1);
		show_range(base, base + span);
	}
	x_munmap(base, span);

	p = x_mmap(mid, PAGE, rw, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, PAGE, 2);
		show_range(mid, mid + PAGE);
	}
	x_munmap(mid, PAGE);

	snprintf(path, sizeof(path), "%s/collide.XXXXXX", getenv("TMPDIR") ?: "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		setup_error("cannot create a file in %s: %s", path, strerror(errno));
		return;
	}
	unlink(path);
	{
		static uint64_t content[4 * PAGE / 8];
		uint32_t written;

		fill(content, flen, 3);
		if (pwrite(fd, content, flen, 0) != (ssize_t)flen) {
			setup_error("cannot write the temporary file: %s", strerror(errno));
			close(fd);
			return;
		}
		p = x_mmap(at, flen, rw, MAP_FIXED | MAP_SHARED, fd);
		if (p != MAP_FAILED) {
			emit("%s:   file contents read through the mapping crc %08x", cur,
			     crc(p, flen));
			fill(p, flen, 4);
			written = crc(p, flen);
			msync(p, flen, MS_SYNC);
			memset(content, 0, flen);
			if (pread(fd, content, flen, 0) != (ssize_t)flen)
				setup_error("cannot read the temporary file: %s", strerror(errno));
			emit("%s:   written through the mapping crc %08x, read with pread crc %08x",
			     cur, written, crc(content, flen));
			show_range(at, at + flen);
		}
		x_munmap(at, flen);
	}
	close(fd);
}

static void kind_mmap_noreplace(void)
{
	const int rw = PROT_READ | PROT_WRITE,
		  flags = MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS;
	uintptr_t half = base + (span / 2 & ~(PAGE - 1)), last = base + span - PAGE;
	void *p;

	p = x_mmap(base, span, rw, flags, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 5);
		show_range(base, base + span);
		x_munmap((uintptr_t)p, span);
	}
	p = x_mmap(half, base + span - half, rw, flags, -1);
	if (p != MAP_FAILED) {
		check_new(p, base + span - half, 6);
		show_range(half, base + span);
		x_munmap((uintptr_t)p, base + span - half);
	}
	/* Over a page of the program's own: EEXIST, and the page is untouched. */
	p = own_map(last, PAGE);
	if (!p)
		return;
	fill(p, PAGE, 7);
	emit("%s: the program maps its own page at %s, crc %08x", cur, rel(last), crc(p, PAGE));
	p = x_mmap(base, span, rw, flags, -1);
	if (p != MAP_FAILED)
		x_munmap((uintptr_t)p, span);
	emit("%s:   its own page: crc %08x", cur, crc((void *)last, PAGE));
	show_range(base, base + span);
	x_munmap(last, PAGE);
}

static void kind_mmap_hint(void)
{
	const int rw = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
	uintptr_t half = base + (span / 2 & ~(PAGE - 1)), last = base + span - PAGE;
	void *p;

	p = x_mmap(base, span, rw, flags, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 8);
		if ((uintptr_t)p == base)
			show_range(base, base + span);
		munmap(p, span);
	}
	p = x_mmap(half, span, rw, flags, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 9);
		if ((uintptr_t)p == half)
			show_range(half, half + span);
		munmap(p, span);
	}
	/* Over a page of the program's own: the kernel puts it elsewhere. */
	p = own_map(last, PAGE);
	if (!p)
		return;
	emit("%s: the program maps its own page at %s", cur, rel(last));
	p = x_mmap(base, span, rw, flags, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 10);
		munmap(p, span);
	}
	x_munmap(last, PAGE);
}

static void kind_brk(void)
{
	uintptr_t start = (uintptr_t)sbrk(0), goal = base + span + MIB, now = start;
	unsigned step = 0;

	emit("%s: the break starts at %s; grows in steps of %#lx past %s", cur, rel(start), STEP,
	     rel(goal));
	while (now <= goal) {
		void *old = sbrk((intptr_t)STEP);
		int e = errno;

		step++;
		if (old == (void *)-1) {
			emit("%s: step %u: sbrk(%#lx) = %s", cur, step, STEP, failed(e));
			break;
		}
		now = (uintptr_t)sbrk(0);
		emit("%s: step %u: sbrk(%#lx) = %s, break %s", cur, step, STEP, rel((uintptr_t)old),
		     rel(now));
	}
	if (now > start) {
		check_new((void *)start, now - start, 11);
		show_range(start, now);
		if (brk((void *)start) == 0)
			emit("%s: brk(%s) = 0, break %s", cur, rel(start), rel((uintptr_t)sbrk(0)));
		else
			emit("%s: brk(%s) = %s", cur, rel(start), failed(errno));
	}
}

/* mremap with the call and its result printed relative to ADDR (or to @old). */
static void *x_mremap(uintptr_t old, size_t old_len, size_t new_len, int flags, uintptr_t to,
		      const char *old_name)
{
	void *p = mremap((void *)old, old_len, new_len, flags, (void *)to);
	int e = errno;
	char fl[64] = "";

	if (flags & MREMAP_MAYMOVE)
		strcat(fl, "|MAYMOVE");
	if (flags & MREMAP_FIXED)
		strcat(fl, "|FIXED");
	if (flags & MREMAP_DONTUNMAP)
		strcat(fl, "|DONTUNMAP");
	if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP))
		snprintf(fl + strlen(fl), sizeof(fl) - strlen(fl), "|%#x",
			 flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP));
	if (flags & MREMAP_FIXED)
		emit("%s: mremap(%s, %#zx, %#zx, %s, %s) = %s", cur, old_name, old_len, new_len,
		     fl[0] ? fl + 1 : "0", rel(to),
		     p == MAP_FAILED ? failed(e) : rel((uintptr_t)p));
	else
		emit("%s: mremap(%s, %#zx, %#zx, %s) = %s", cur, old_name, old_len, new_len,
		     fl[0] ? fl + 1 : "0",
		     p == MAP_FAILED	   ? failed(e)
		     : (uintptr_t)p == old ? "the same address"
					   : "elsewhere");
	errno = e;
	return p;
}

static void kind_mremap_grow(void)
{
	uintptr_t below = base - STEP;
	uint32_t before;
	void *p = own_map(below, STEP);

	if (!p)
		return;
	fill(p, STEP, 12);
	before = crc(p, STEP);
	emit("%s: the program maps %#lx bytes at %s, crc %08x", cur, STEP, rel(below), before);
	p = x_mremap(below, STEP, STEP + span, 0, 0, rel(below));
	if (p != MAP_FAILED) {
		emit("%s:   the old part crc %08x", cur, crc(p, STEP));
		check_new((char *)p + STEP, span, 13);
		show_range(below, base + span);
		x_munmap(below, STEP + span);
	} else {
		show_range(below, base + span);
		munmap((void *)below, STEP);
	}
}

static void kind_mremap_fixed(void)
{
	const int flags = MREMAP_MAYMOVE | MREMAP_FIXED;
	uintptr_t last = base + span - STEP;
	uint32_t before;
	void *old, *p;

	old = own_map(0, STEP);
	if (!old)
		return;
	fill(old, STEP, 14);
	before = crc(old, STEP);
	emit("%s: the program maps %#lx bytes elsewhere, crc %08x", cur, STEP, before);
	p = x_mremap((uintptr_t)old, STEP, span, flags, base, "elsewhere");
	if (p != MAP_FAILED) {
		emit("%s:   the moved part crc %08x; the rest zeroed %s; the old place mapped %s",
		     cur, crc(p, STEP), zeroed((char *)p + STEP, span - STEP) ? "yes" : "no",
		     mapped((uintptr_t)old, (uintptr_t)old + STEP) ? "yes" : "no");
		show_range(base, base + span);
		x_munmap(base, span);
	} else {
		munmap(old, STEP);
	}

	old = own_map(0, STEP);
	if (!old)
		return;
	fill(old, STEP, 15);
	emit("%s: the program maps %#lx bytes elsewhere, crc %08x", cur, STEP, crc(old, STEP));
	p = x_mremap((uintptr_t)old, STEP, STEP, flags, last, "elsewhere");
	if (p != MAP_FAILED) {
		emit("%s:   the moved part crc %08x; the old place mapped %s", cur, crc(p, STEP),
		     mapped((uintptr_t)old, (uintptr_t)old + STEP) ? "yes" : "no");
		show_range(base, base + span);
		x_munmap(last, STEP);
	} else {
		munmap(old, STEP);
	}
}

static void kind_mremap_dontunmap(void)
{
	void *old = own_map(0, STEP), *p;

	if (!old)
		return;
	fill(old, STEP, 16);
	emit("%s: the program maps %#lx bytes elsewhere, crc %08x", cur, STEP, crc(old, STEP));
	p = x_mremap((uintptr_t)old, STEP, STEP, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
		     base, "elsewhere");
	if (p != MAP_FAILED) {
		bool still = mapped((uintptr_t)old, (uintptr_t)old + STEP);

		emit("%s:   the moved part crc %08x; the old place mapped %s, zeroed %s", cur,
		     crc(p, STEP), still ? "yes" : "no", still && zeroed(old, STEP) ? "yes" : "no");
		show_range(base, base + STEP);
		x_munmap(base, STEP);
	}
	munmap(old, STEP);
}

static void kind_munmap(void)
{
	uintptr_t below = base - PAGE;
	void *p;

	x_munmap(base, span);
	x_munmap(below, 2 * PAGE);
	p = own_map(below, PAGE);
	if (!p)
		return;
	fill(p, PAGE, 17);
	emit("%s: the program maps its own page at %s", cur, rel(below));
	x_munmap(below, PAGE + span);
	emit("%s:   its own page: %s", cur, perms_at(below));
	p = x_mmap(base, PAGE, PROT_READ | PROT_WRITE,
		   MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, PAGE, 18);
		x_munmap(base, PAGE);
	}
	p = x_mmap(base, span, PROT_READ | PROT_WRITE,
		   MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 19);
		show_range(base, base + span);
		x_munmap(base, span);
	}
}

static void kind_mprotect(void)
{
	uintptr_t below = base - PAGE;
	void *p = own_map(below, PAGE);
	uint32_t c;
	int r, e;

	if (!p)
		return;
	fill(p, PAGE, 20);
	c = crc(p, PAGE);
	emit("%s: the program maps its own page at %s, crc %08x", cur, rel(below), c);

	r = mprotect((void *)below, PAGE + span, PROT_READ);
	e = errno;
	emit("%s: mprotect(%s, %#zx, r--) = %s", cur, rel(below), PAGE + span, int_result(r, e));
	emit("%s:   its own page: %s", cur, perms_at(below));

	r = mprotect((void *)base, span, PROT_READ | PROT_WRITE);
	e = errno;
	emit("%s: mprotect(%s, %#zx, rw-) = %s", cur, rel(base), span, int_result(r, e));

	r = pkey_mprotect((void *)below, PAGE + span, PROT_READ | PROT_WRITE, -1);
	e = errno;
	emit("%s: pkey_mprotect(%s, %#zx, rw-, -1) = %s", cur, rel(below), PAGE + span,
	     int_result(r, e));
	emit("%s:   its own page: %s", cur, perms_at(below));

	r = pkey_mprotect((void *)base, span, PROT_READ, -1);
	e = errno;
	emit("%s: pkey_mprotect(%s, %#zx, r--, -1) = %s", cur, rel(base), span, int_result(r, e));

	emit("%s:   its own page: %s, crc %08x", cur, perms_at(below),
	     strchr(perms_at(below), 'r') ? crc(p, PAGE) : 0);
	show_range(below, base + span);
	x_munmap(below, PAGE);
}

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

static const struct advice {
	const char *name;
	int advice;
	bool lazy; /* the contents after it are up to the kernel's memory pressure */
} advices[] = {
    {"MADV_DONTNEED", MADV_DONTNEED, false},
    {"MADV_FREE", MADV_FREE, true},
    {"MADV_REMOVE", MADV_REMOVE, false},
    {"MADV_DONTFORK", MADV_DONTFORK, false},
    {"MADV_DOFORK", MADV_DOFORK, false},
    {"MADV_WIPEONFORK", MADV_WIPEONFORK, false},
    {"MADV_KEEPONFORK", MADV_KEEPONFORK, false},
    {"MADV_MERGEABLE", MADV_MERGEABLE, false},
    {"MADV_HUGEPAGE", MADV_HUGEPAGE, false},
    {"MADV_COLD", MADV_COLD, false},
    {"MADV_PAGEOUT", MADV_PAGEOUT, false},
    {"MADV_POPULATE_READ", MADV_POPULATE_READ, false},
    {"MADV_POPULATE_WRITE", MADV_POPULATE_WRITE, false},
    {"MADV_DONTNEED_LOCKED", MADV_DONTNEED_LOCKED, false},
};

static void kind_madvise(void)
{
	uintptr_t below = base - PAGE;
	void *p = own_map(below, PAGE);

	if (!p)
		return;
	emit("%s: the program maps its own page at %s", cur, rel(below));
	for (size_t i = 0; i < sizeof(advices) / sizeof(advices[0]); i++) {
		const struct advice *a = &advices[i];
		int r, e, r2, e2;
		uint32_t c;

		r = madvise((void *)base, span, a->advice);
		e = errno;
		fill(p, PAGE, 21 + i);
		c = crc(p, PAGE);
		r2 = madvise((void *)below, PAGE + span, a->advice);
		e2 = errno;
		emit("%s: madvise(%s, %#zx, %s) = %s; madvise(%s, %#zx) = %s; its own page %s", cur,
		     rel(base), span, a->name, int_result(r, e), rel(below), PAGE + span,
		     int_result(r2, e2),
		     a->lazy		 ? "not compared (lazy)"
		     : crc(p, PAGE) == c ? "kept"
		     : zeroed(p, PAGE)	 ? "zeroed"
					 : "changed");
		if (r2 == -1 && e2 == EINVAL && r == -1 && e == EINVAL)
			emit("%s:   %s: EINVAL even on a private anonymous page (not supported "
			     "here, or not for such pages)",
			     cur, a->name);
	}
	/* Undo what would last beyond the page (MADV_DONTFORK, MADV_WIPEONFORK). */
	madvise(p, PAGE, MADV_DOFORK);
	madvise(p, PAGE, MADV_KEEPONFORK);
	show_range(base, base + span);
	x_munmap(below, PAGE);
}

static void shmat_once(int id, uintptr_t at, int flags, uint64_t seed, size_t len)
{
	void *p = shmat(id, (void *)at, flags);
	int e = errno;

	emit("%s: shmat(id, %s, %s) = %s", cur, rel(at), flags & SHM_REMAP ? "SHM_REMAP" : "0",
	     p == (void *)-1 ? failed(e) : rel((uintptr_t)p));
	if (p == (void *)-1)
		return;
	emit("%s:   reads crc %08x", cur, crc(p, len));
	fill(p, len, seed);
	emit("%s:   written and read back crc %08x", cur, crc(p, len));
	show_range(base, base + span);
	if (shmdt(p) == 0)
		emit("%s: shmdt(%s) = 0", cur, rel((uintptr_t)p));
	else
		emit("%s: shmdt(%s) = %s", cur, rel((uintptr_t)p), failed(errno));
}

static void kind_shmat(void)
{
	uintptr_t last = base + span - PAGE;
	int id = shmget(IPC_PRIVATE, span, IPC_CREAT | 0600);
	void *p;

	if (id < 0) {
		emit("%s: shmget(IPC_PRIVATE, %#zx) = %s: no System V shared memory here, nothing "
		     "to do",
		     cur, span, failed(errno));
		return;
	}
	emit("%s: shmget(IPC_PRIVATE, %#zx) = id", cur, span);
	shmat_once(id, base, 0, 22, span);
	shmat_once(id, base, SHM_REMAP, 23, span);
	/* Over a page of the program's own: EINVAL without SHM_REMAP, replaced with it. */
	p = own_map(last, PAGE);
	if (p) {
		emit("%s: the program maps its own page at %s", cur, rel(last));
		shmat_once(id, base, 0, 24, span);
		shmat_once(id, base, SHM_REMAP, 25, span);
		emit("%s:   its own page: %s", cur, perms_at(last));
		munmap(p, PAGE);
	}
	if (shmctl(id, IPC_RMID, NULL) == 0)
		emit("%s: shmctl(id, IPC_RMID) = 0", cur);
	else
		emit("%s: shmctl(id, IPC_RMID) = %s", cur, failed(errno));
}

/* ---- stack ---- */

static unsigned stack_goal;
static uintptr_t stack_deepest;

/* Not a loop, not a tail call: each level's frame holds 64 KiB it reads after the call. */
static __attribute__((noinline)) uint32_t descend(unsigned depth)
{
	volatile unsigned char frame[STEP];
	uint32_t c;

	for (size_t i = STEP; i-- > 0;)
		frame[i] = (unsigned char)(depth * 131 + i * 7);
	if (depth + 1 < stack_goal) {
		c = descend(depth + 1);
	} else {
		stack_deepest = (uintptr_t)frame;
		c = 0;
	}
	return tgt_crc32(c, (const void *)frame, STEP);
}

/* The [stack] mapping as the maps say now; NULL after a setup error. */
static const struct seg *stack_seg(void)
{
	if (read_maps() < 0) {
		setup_error("cannot read /proc/self/maps");
		return NULL;
	}
	for (size_t i = 0; i < nsegs; i++)
		if (!strcmp(segs[i].what, "[stack]"))
			return &segs[i];
	setup_error("no [stack] in /proc/self/maps");
	return NULL;
}

static void kind_stack(void)
{
	const struct seg *stack = stack_seg();
	uintptr_t top = stack ? stack->end : 0;
	struct rlimit rl;
	uint32_t c;

	if (!stack)
		return;
	if (base + span >= top) {
		setup_error("stack: the range is not below the stack");
		return;
	}
	/* Two frames beyond ADDR+LEN, counted from the top: the same depth every run. */
	stack_goal = (unsigned)((top - (base + span)) / STEP + 2);
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)(stack_goal + 2) * (STEP + KIB) > rl.rlim_cur) {
		setup_error("stack: %u frames of 64 KiB exceed RLIMIT_STACK (%llu)", stack_goal,
			    (unsigned long long)rl.rlim_cur);
		return;
	}
	c = descend(0);
	emit("%s: %u frames of %#lx bytes down from the stack's top: crc %08x", cur, stack_goal,
	     STEP, c);
	emit("%s:   the deepest frame is below ADDR+LEN %s, below ADDR %s", cur,
	     stack_deepest < base + span ? "yes" : "no", stack_deepest < base ? "yes" : "no");
}

/*
 * Any access in the growth area grows the main stack (Linux 4.20 dropped
 * the check against the stack pointer), so the first write at ADDR makes
 * [stack] reach down to it.
 */
static void kind_stack_touch(void)
{
	volatile unsigned char *p = (volatile unsigned char *)base;
	const struct seg *stack;

	p[0] = 0xa5;
	p[span - 1] = 0x5a;
	stack = stack_seg();
	if (!stack)
		return;
	emit("%s: wrote +0x0 and %s: read back %02x %02x; [stack] reaches ADDR %s", cur,
	     rel(base + span - 1), p[0], p[span - 1], stack->start <= base ? "yes" : "no");
}

/* ---- threads, signals, fork, exec ---- */

#define NTHREADS 4
#define CHUNK 3000
#define FINAL 200000

struct worker {
	pthread_t thread;
	unsigned idx;
	uint64_t expected, result;
	unsigned long mismatches;
};

static pthread_barrier_t workers_running;
static int workers_stop;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	bool first = true;

	do {
		if (tgt_work(0xc011 + w->idx, CHUNK) != w->expected)
			w->mismatches++;
		if (first)
			pthread_barrier_wait(&workers_running);
		first = false;
	} while (!__atomic_load_n(&workers_stop, __ATOMIC_ACQUIRE));
	w->result = tgt_work(0xf1a1 + w->idx, FINAL);
	return NULL;
}

static void kind_threads(void)
{
	static struct worker w[NTHREADS];
	unsigned started = 0;
	int err;

	err = pthread_barrier_init(&workers_running, NULL, NTHREADS + 1);
	if (err) {
		setup_error("pthread_barrier_init: %s", strerror(err));
		return;
	}
	__atomic_store_n(&workers_stop, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){.idx = i, .expected = tgt_work(0xc011 + i, CHUNK)};
		err = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
		if (err) {
			setup_error("pthread_create: %s", strerror(err));
			/* The started ones still wait at the barrier: nothing can release them. */
			exit(2);
		}
		started++;
	}
	pthread_barrier_wait(&workers_running);
	emit("%s: %u threads are running tgt_work", cur, started);
	kind_mmap_fixed();
	__atomic_store_n(&workers_stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NTHREADS; i++) {
		err = pthread_join(w[i].thread, NULL);
		if (err) {
			setup_error("pthread_join: %s", strerror(err));
			continue;
		}
		emit("%s: thread %u: mismatches %lu, result %016" PRIx64, cur, i, w[i].mismatches,
		     w[i].result);
	}
	pthread_barrier_destroy(&workers_running);
}

static volatile sig_atomic_t handled;

static void on_sigusr1(int sig)
{
	(void)sig;
	emit("%s: in the SIGUSR1 handler", cur);
	kind_mmap_fixed();
	handled = 1;
}

static void kind_signal(void)
{
	struct sigaction sa = {.sa_handler = on_sigusr1}, old;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, &old) < 0) {
		setup_error("sigaction: %s", strerror(errno));
		return;
	}
	handled = 0;
	raise(SIGUSR1);
	emit("%s: raise(SIGUSR1) returned; the handler ran %s", cur, handled ? "yes" : "no");
	sigaction(SIGUSR1, &old, NULL);
}

/* Waits for child pid and prints how it ended, as @who. 0, or -1 after a setup error. */
static int reap_child(pid_t pid, const char *who)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			setup_error("waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(status))
		emit("%s: %s exited %d", cur, who, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		emit("%s: %s was killed by signal %d", cur, who, WTERMSIG(status));
	else
		emit("%s: %s's wait status %#x", cur, who, status);
	return 0;
}

static void kind_fork(void)
{
	const char *parent = cur;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		setup_error("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		cur = "fork child";
		kind_mmap_fixed();
		_exit(setup_failed ? 2 : 0);
	}
	if (reap_child(pid, "the child") < 0)
		return;
	cur = "fork parent";
	kind_mmap_fixed();
	cur = parent;
}

/*
 * Runs fn in a vfork child (in this address space; this thread is blocked in
 * vfork until the child exits), as "vfork child", and reaps it. 0, or -1
 * after a setup error.
 */
static int in_vfork_child(void (*fn)(void))
{
	/* Shared with the child: it runs in this address space until it exits. */
	static const char *parent;
	pid_t pid;

	parent = cur;
	cur = "vfork child";
	pid = vfork();
	if (pid == 0) {
		fn();
		_exit(setup_failed ? 2 : 0);
	}
	cur = parent;
	if (pid < 0) {
		setup_error("vfork: %s", strerror(errno));
		return -1;
	}
	return reap_child(pid, "the vfork child");
}

static void kind_vfork(void)
{
	const char *parent = cur;

	if (in_vfork_child(kind_mmap_fixed) < 0)
		return;
	show_range(base, base + span);
	cur = "vfork parent";
	kind_mmap_fixed();
	cur = parent;
}

static void kind_exec(void)
{
	char *args[6];
	int n = 0;

	args[n++] = (char *)argv0;
	if (checkpoint_arg)
		args[n++] = (char *)checkpoint_arg;
	args[n++] = "mmap_fixed";
	args[n++] = (char *)addr_arg;
	args[n++] = (char *)len_arg;
	args[n] = NULL;
	emit("%s: execv(/proc/self/exe, mmap_fixed)", cur);
	execv("/proc/self/exe", args);
	setup_error("execv /proc/self/exe: %s", strerror(errno));
}

/* ---- fails ---- */

static void kind_fails(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC), id, r, e;
	void *own, *p;

	if (fd < 0) {
		setup_error("cannot open /dev/null: %s", strerror(errno));
		return;
	}
	close(fd); /* now certainly not an open fd */
	x_mmap(base, span, rw, MAP_FIXED | MAP_PRIVATE, fd);
	x_mmap(base + 1, span, rw, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	x_mmap(base, 0, rw, MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	x_mmap(base, span, rw, MAP_FIXED | MAP_ANONYMOUS, -1); /* neither shared nor private */
	x_munmap(base + 1, span);
	x_munmap(base, 0);

	own = own_map(0, PAGE);
	if (own) {
		p = x_mremap((uintptr_t)own, PAGE, span, MREMAP_MAYMOVE | MREMAP_FIXED | 0x40, base,
			     "elsewhere");
		if (p != MAP_FAILED)
			own = p;
		p = x_mremap((uintptr_t)own, PAGE, span, MREMAP_FIXED, base, "elsewhere");
		if (p != MAP_FAILED)
			own = p;
		p = x_mremap((uintptr_t)own, PAGE, span, MREMAP_MAYMOVE | MREMAP_FIXED, base + 1,
			     "elsewhere");
		if (p != MAP_FAILED)
			own = p;
		munmap(own, PAGE);
	}
	p = x_mremap(base, PAGE, 2 * PAGE, 0, 0, "+0x0"); /* nothing there: EFAULT */

	r = mprotect((void *)base, span, PROT_READ | 0x10);
	e = errno;
	emit("%s: mprotect(%s, %#zx, %s) = %s", cur, rel(base), span, prot_str(PROT_READ | 0x10),
	     int_result(r, e));
	r = mprotect((void *)(base + 1), span, PROT_READ);
	e = errno;
	emit("%s: mprotect(%s, %#zx, r--) = %s", cur, rel(base + 1), span, int_result(r, e));
	r = pkey_mprotect((void *)base, span, PROT_READ, 15);
	e = errno;
	emit("%s: pkey_mprotect(%s, %#zx, r--, 15) = %s", cur, rel(base), span, int_result(r, e));

	r = madvise((void *)base, span, 12345);
	e = errno;
	emit("%s: madvise(%s, %#zx, 12345) = %s", cur, rel(base), span, int_result(r, e));
	r = madvise((void *)(base + 1), span, MADV_DONTNEED);
	e = errno;
	emit("%s: madvise(%s, %#zx, MADV_DONTNEED) = %s", cur, rel(base + 1), span,
	     int_result(r, e));

	p = shmat(-1, (void *)base, 0);
	e = errno;
	emit("%s: shmat(-1, %s, 0) = %s", cur, rel(base),
	     p == (void *)-1 ? failed(e) : rel((uintptr_t)p));
	id = shmget(IPC_PRIVATE, span, IPC_CREAT | 0600);
	if (id < 0) {
		emit("%s: shmget(IPC_PRIVATE, %#zx) = %s: no System V shared memory here", cur,
		     span, failed(errno));
		return;
	}
	p = shmat(id, (void *)(base + 1), 0);
	e = errno;
	emit("%s: shmat(id, %s, 0) = %s", cur, rel(base + 1),
	     p == (void *)-1 ? failed(e) : rel((uintptr_t)p));
	if (p != (void *)-1)
		shmdt(p);
	shmctl(id, IPC_RMID, NULL);
}

/* ---- budget ---- */

/*
 * Stacks filters that allow every syscall until the kernel refuses one of a
 * single instruction (it caps the instructions of a process's filters). They
 * only ever look at the syscall number, so the kernel's action cache skips
 * them. How many fit depends on the filters already there: not printed.
 */
static void fill_filters(void)
{
	enum { MAX = 4096 };
	static struct sock_filter prog[MAX];
	unsigned len = MAX;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		setup_error("prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return;
	}
	for (unsigned i = 0; i + 1 < MAX; i++)
		prog[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						       offsetof(struct seccomp_data, nr));
	prog[MAX - 1] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	while (len > 0) {
		struct sock_fprog fp = {.len = (unsigned short)len, .filter = prog + (MAX - len)};

		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) == 0)
			continue;
		if (errno != ENOMEM) {
			setup_error("seccomp(SET_MODE_FILTER) of %u instructions: %s", len,
				    strerror(errno));
			return;
		}
		len /= 2;
	}
	emit("%s: filters that allow everything, stacked until the kernel refused one of a "
	     "single instruction: %s",
	     cur, errname(ENOMEM));
}

/* MAP_FIXED over [ADDR-32M, ADDR+32M): wider than optd's window around ADDR. Then unmapped. */
static void map_wide(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	uintptr_t lo = base - 32 * MIB;

	if (base < 32 * MIB + STEP) {
		setup_error("%s: ADDR is too low for [ADDR-32M, ADDR+32M)", cur);
		return;
	}
	if (x_mmap(lo, 64 * MIB, rw, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1) != MAP_FAILED) {
		show_range(base, base + span);
		x_munmap(lo, 64 * MIB);
	}
}

/* With ADDR2, MAP_FIXED_NOREPLACE of LEN there. */
static void map_at_addr2(void)
{
	void *p;

	if (!base2)
		return;
	p = x_mmap(base2, span, PROT_READ | PROT_WRITE,
		   MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, span, 26);
		show_range(base2, base2 + span);
		x_munmap(base2, span);
	}
}

static void kind_budget(void)
{
	fill_filters();
	map_wide();
	map_at_addr2();
}

/*
 * vfork_thread: the main thread vforks and is blocked in vfork; the child
 * waits in a read from a function of the program's own; another thread of
 * the parent then makes the colliding requests and lets the child go.
 */
static int vt_ready[2], vt_go[2];

/* Not inlined: a frame of the program's own (relocated under optd) around the read. */
static __attribute__((noinline)) int wait_byte(int fd)
{
	ssize_t n;
	char c;

	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

static void *vfork_thread_main(void *arg)
{
	(void)arg;
	if (wait_byte(vt_ready[0]) < 0) {
		setup_error("vfork_thread: the child never got ready");
		return NULL;
	}
	cur = "vfork thread";
	kind_mmap_fixed();
	cur = "vfork child";
	if (write(vt_go[1], "g", 1) != 1)
		setup_error("vfork_thread: cannot let the child go: %s", strerror(errno));
	return NULL;
}

static void kind_vfork_thread(void)
{
	static const char *parent;
	pthread_t th;
	pid_t pid;
	int err;

	if (pipe2(vt_ready, O_CLOEXEC) < 0 || pipe2(vt_go, O_CLOEXEC) < 0) {
		setup_error("pipe2: %s", strerror(errno));
		return;
	}
	err = pthread_create(&th, NULL, vfork_thread_main, NULL);
	if (err) {
		setup_error("pthread_create: %s", strerror(err));
		return;
	}
	parent = cur;
	emit("%s: a thread waits for the vfork child", cur);
	pid = vfork();
	if (pid == 0) {
		if (write(vt_ready[1], "r", 1) != 1 || wait_byte(vt_go[0]) < 0)
			_exit(2);
		emit("%s: let go by the thread", cur);
		_exit(0);
	}
	cur = parent;
	if (pid < 0) {
		setup_error("vfork: %s", strerror(errno));
		/* The thread waits for a child that never came: nothing can release it. */
		exit(2);
	}
	(void)reap_child(pid, "the vfork child");
	err = pthread_join(th, NULL);
	if (err)
		setup_error("pthread_join: %s", strerror(err));
	else
		emit("%s: the thread is done", cur);
	for (int i = 0; i < 2; i++) {
		close(vt_ready[i]);
		close(vt_go[i]);
	}
}

/* map_wide in a vfork child, then map_at_addr2 in the parent. */
static void kind_vfork_wide(void)
{
	if (in_vfork_child(map_wide) == 0)
		map_at_addr2();
}

/* ---- detached ---- */

/* The same requests at @at, each printed, whatever the one before returned. */
static void requests_at(uintptr_t at)
{
	const int rw = PROT_READ | PROT_WRITE;
	void *p;
	int r, e;

	p = x_mmap(at, PAGE, rw, MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	x_munmap(at, PAGE);
	p = x_mmap(at, PAGE, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED && (uintptr_t)p != at)
		munmap(p, PAGE);
	x_munmap(at, PAGE);
	p = x_mmap(at, PAGE, rw, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	r = mprotect((void *)at, PAGE, PROT_READ);
	e = errno;
	emit("%s: mprotect(%s, %#lx, r--) = %s", cur, rel(at), PAGE, int_result(r, e));
	r = madvise((void *)at, PAGE, MADV_DONTNEED);
	e = errno;
	emit("%s: madvise(%s, %#lx, MADV_DONTNEED) = %s", cur, rel(at), PAGE, int_result(r, e));
	x_munmap(at, PAGE);
	show_range(at, at + PAGE);
}

static void *detached_worker(void *arg)
{
	return (void *)(uintptr_t)tgt_work((uint64_t)(uintptr_t)arg, 20000);
}

static void kind_detached(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	uintptr_t start = (uintptr_t)sbrk(0), now;
	pthread_t th;
	void *p, *res;
	int err;

	cur = "window";
	requests_at(base);
	cur = "elsewhere";
	requests_at(base + 64 * MIB);

	cur = "anywhere";
	p = x_mmap(0, MIB, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (p != MAP_FAILED) {
		check_new(p, MIB, 27);
		munmap(p, MIB);
	}
	if (sbrk((intptr_t)STEP) == (void *)-1) {
		emit("%s: sbrk(%#lx) = %s", cur, STEP, failed(errno));
	} else {
		now = (uintptr_t)sbrk(0);
		emit("%s: sbrk(%#lx): the break grew by %#lx", cur, STEP, now - start);
		check_new((void *)start, now - start, 28);
		emit("%s: brk(back) = %d", cur, brk((void *)start));
	}
	p = malloc(8 * MIB);
	if (p) {
		fill(p, 8 * MIB, 29);
		emit("%s: malloc(8M) written and read back crc %08x", cur, crc(p, 8 * MIB));
		free(p);
	} else {
		emit("%s: malloc(8M) = NULL", cur);
	}
	err = pthread_create(&th, NULL, detached_worker, (void *)(uintptr_t)0xde7a);
	if (err) {
		emit("%s: pthread_create = %s", cur, errname(err));
	} else {
		pthread_join(th, &res);
		emit("%s: a thread ran tgt_work: %016" PRIxPTR, cur, (uintptr_t)res);
	}
	cur = "detached";
}

/* ---- a seccomp filter of the program's own ---- */

static void kind_ownfilter(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 9),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 8, 0),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 6),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)base, 0, 4),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)((uint64_t)base >> 32), 0, 2),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_READ, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	long r;
	int e;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
		setup_error("cannot install a seccomp filter: %s", strerror(errno));
		return;
	}
	r = syscall(SYS_getppid);
	e = errno;
	emit("%s: getppid() = %s", cur, r < 0 ? failed(e) : "the parent");
	/* No maps line here: natively the range is empty, and under optd its region is there. */
	x_mmap(base, span, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1);
	kind_mmap_fixed();
}

/* ---- layout ---- */

static void kind_layout(void)
{
	uintptr_t exe = getauxval(AT_PHDR) & ~(PAGE - 1), exe_end = 0, stack_start = 0, top = 0;
	uintptr_t brk0 = (uintptr_t)sbrk(0);
	struct rlimit rl;
	int r = read_maps();

	if (r < 0) {
		setup_error("cannot read /proc/self/maps: %s", strerror(-r));
		return;
	}
	/* The executable's mappings are contiguous from its first page on. */
	for (size_t i = 0; i < nsegs; i++) {
		if (segs[i].start == exe ||
		    (exe_end && segs[i].start == exe_end && !strcmp(segs[i].what, "file")))
			exe_end = segs[i].end;
		if (!strcmp(segs[i].what, "[stack]")) {
			stack_start = segs[i].start;
			top = segs[i].end;
		}
	}
	emit("brk %#" PRIxPTR, brk0);
	emit("exe %#" PRIxPTR, exe);
	emit("exe_end %#" PRIxPTR, exe_end);
	emit("stack_start %#" PRIxPTR, stack_start);
	emit("stack_top %#" PRIxPTR, top);
	emit("sp %#" PRIxPTR, (uintptr_t)__builtin_frame_address(0));
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		emit("stack_rlimit %#llx", (unsigned long long)rl.rlim_cur);
	else
		emit("stack_rlimit unlimited");
}

/* ---- main ---- */

static void kind_all(void);

static const struct kind {
	const char *name;
	void (*run)(void);
	bool in_all;
} kinds[] = {
    {"mmap_fixed", kind_mmap_fixed, true},
    {"mmap_noreplace", kind_mmap_noreplace, true},
    {"mmap_hint", kind_mmap_hint, true},
    {"brk", kind_brk, false},
    {"mremap_grow", kind_mremap_grow, true},
    {"mremap_fixed", kind_mremap_fixed, true},
    {"mremap_dontunmap", kind_mremap_dontunmap, true},
    {"munmap", kind_munmap, true},
    {"mprotect", kind_mprotect, true},
    {"madvise", kind_madvise, true},
    {"shmat", kind_shmat, true},
    {"stack", kind_stack, false},
    {"stack_touch", kind_stack_touch, false},
    {"fails", kind_fails, true},
    {"ownfilter", kind_ownfilter, false},
    {"signal", kind_signal, true},
    {"threads", kind_threads, true},
    {"fork", kind_fork, true},
    {"vfork", kind_vfork, true},
    {"exec", kind_exec, false},
    {"vfork_thread", kind_vfork_thread, false},
    {"vfork_wide", kind_vfork_wide, false},
    {"budget", kind_budget, false},
    {"detached", kind_detached, false},
    {"all", kind_all, false},
};

static void kind_all(void)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (!kinds[i].in_all)
			continue;
		cur = kinds[i].name;
		emit("== %s", cur);
		kinds[i].run();
	}
	cur = "all";
}

static bool takes_addr2(const struct kind *k)
{
	return k->run == kind_vfork_wide || k->run == kind_budget;
}

static void usage(void)
{
	fprintf(stderr, "usage: collide [--checkpoint[=FD]] layout\n"
			"       collide [--checkpoint[=FD]] KIND ADDR LEN [ADDR2]\n"
			"KIND:");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		fprintf(stderr, " %s", kinds[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

/* LEN: decimal, 0x hexadecimal, or with a K, M or G suffix. */
static size_t parse_len(const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		usage();
	switch (*end) {
	case 'K':
	case 'k':
		v <<= 10, end++;
		break;
	case 'M':
	case 'm':
		v <<= 20, end++;
		break;
	case 'G':
	case 'g':
		v <<= 30, end++;
		break;
	}
	if (*end || !v || v % PAGE) {
		fprintf(stderr, "collide: LEN '%s' is not a positive multiple of %lu\n", s, PAGE);
		exit(2);
	}
	return (size_t)v;
}

int main(int argc, char **argv)
{
	const struct kind *k = NULL;
	int i = 1;

	argv0 = argv[0];

	if (i < argc && tgt_parse_checkpoint(argv[i]))
		checkpoint_arg = argv[i++];
	if (i >= argc)
		usage();
	if (!strcmp(argv[i], "layout")) {
		if (i + 1 != argc)
			usage();
		tgt_checkpoint("start");
		kind_layout();
		tgt_checkpoint("end");
		return setup_failed ? 2 : 0;
	}
	for (size_t j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++)
		if (!strcmp(argv[i], kinds[j].name))
			k = &kinds[j];
	if (!k || (i + 3 != argc && !(takes_addr2(k) && i + 4 == argc)))
		usage();
	addr_arg = argv[i + 1];
	len_arg = argv[i + 2];
	{
		unsigned long long a;
		char *end;

		errno = 0;
		a = strtoull(addr_arg, &end, 16);
		if (errno || end == addr_arg || *end || !a || a % PAGE || *addr_arg == '-') {
			fprintf(stderr, "collide: ADDR '%s' is not a page-aligned hex address\n",
				addr_arg);
			return 2;
		}
		base = (uintptr_t)a;
	}
	span = parse_len(len_arg);
	if (i + 4 == argc) {
		unsigned long long a;
		char *end;

		errno = 0;
		a = strtoull(argv[i + 3], &end, 16);
		if (errno || end == argv[i + 3] || *end || !a || a % PAGE) {
			fprintf(stderr, "collide: ADDR2 '%s' is not a page-aligned hex address\n",
				argv[i + 3]);
			return 2;
		}
		base2 = (uintptr_t)a;
	}
	if (base < STEP || base + span < base) {
		fprintf(stderr, "collide: [ADDR, ADDR+LEN) is out of range\n");
		return 2;
	}
	if (mapped(base, base + span))
		fprintf(stderr,
			"collide: note: [%#" PRIxPTR ", %#" PRIxPTR
			") is not free at start (optd's region?)\n",
			base, base + span);
	cur = k->name;
	tgt_checkpoint("start");
	k->run();
	tgt_checkpoint("end");
	return setup_failed ? 2 : 0;
}
