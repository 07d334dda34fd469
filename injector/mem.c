/*
 * Remote memory access, cheapest path first (strace's ucopy.c habit):
 * process_vm_{readv,writev} need no stop and no fd, but honour page
 * protections; /proc/PID/mem and POKEDATA go through them (FOLL_FORCE).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "ptrace.h"
#include "util.h"

static int mem_fd(struct inj_process *p)
{
	char path[64];

	if (p->mem_fd >= 0)
		return p->mem_fd;
	snprintf(path, sizeof(path), "/proc/%d/mem", p->pid);
	p->mem_fd = open(path, O_RDWR | O_CLOEXEC);
	if (p->mem_fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	return p->mem_fd;
}

/* Loops over short transfers; a short transfer that makes no progress is -EFAULT. */
static int vm_rw(struct inj_process *p, bool write, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct iovec local = {(char *)buf + done, len - done};
		struct iovec remote = {(void *)(uintptr_t)(addr + done), len - done};
		ssize_t n = write ? process_vm_writev(p->pid, &local, 1, &remote, 1, 0)
				  : process_vm_readv(p->pid, &local, 1, &remote, 1, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negerrno();
		}
		if (n == 0)
			return -EFAULT;
		done += (size_t)n;
	}
	return 0;
}

static int proc_mem_rw(struct inj_process *p, bool write, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;
	int fd = mem_fd(p);

	if (fd < 0)
		return fd;
	while (done < len) {
		ssize_t n = write ? pwrite(fd, (char *)buf + done, len - done, (off_t)(addr + done))
				  : pread(fd, (char *)buf + done, len - done, (off_t)(addr + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* /proc/PID/mem says EIO for an unmapped address. */
			return errno == EIO ? -EFAULT : negerrno();
		}
		if (n == 0) /* the mm is gone (process exiting) */
			return -ESRCH;
		done += (size_t)n;
	}
	return 0;
}

static pid_t stopped_tid(struct inj_process *p)
{
	for (size_t i = 0; i < p->nthreads; i++)
		if (p->threads[i]->stop != INJ_RUNNING && p->threads[i]->stop != INJ_GONE)
			return p->threads[i]->tid;
	return 0;
}

static int poke_rw(struct inj_process *p, bool write, uint64_t addr, void *buf, size_t len)
{
	pid_t tid = stopped_tid(p);
	uint64_t start = ALIGN_DOWN(addr, 8), end = ALIGN_UP(addr + len, 8);

	if (!tid)
		return -EBUSY;
	for (uint64_t a = start; a < end; a += 8) {
		uint64_t word;
		uint64_t lo = a < addr ? addr : a, hi = a + 8 > addr + len ? addr + len : a + 8;
		int r = 0;

		/* Partial words need the bytes around them; whole words are written blind. */
		if (!write || lo != a || hi != a + 8)
			r = inj_ptrace_peek(tid, a, &word);
		if (r < 0)
			return r == -EIO ? -EFAULT : r;
		if (write) {
			memcpy((char *)&word + (lo - a), (char *)buf + (lo - addr), hi - lo);
			long pr = inj_ptrace(PTRACE_POKEDATA, tid, a, word);
			if (pr < 0)
				return pr == -EIO ? -EFAULT : (int)pr;
		} else {
			memcpy((char *)buf + (lo - addr), (char *)&word + (lo - a), hi - lo);
		}
	}
	return 0;
}

int inj_mem_read(struct inj_process *p, uint64_t addr, void *buf, size_t len)
{
	int r;

	if (!len)
		return 0;
	r = vm_rw(p, false, addr, buf, len);
	if (r == 0 || r == -ESRCH || r == -ENOMEM)
		return r;
	/* Unreadable pages (PROT_NONE, exec-only) still read through /proc/PID/mem. */
	return proc_mem_rw(p, false, addr, buf, len);
}

/* Ranges per process_vm_readv: well under IOV_MAX, on the stack. */
#define READ_BATCH 256

int inj_mem_read_spans(struct inj_process *p, const struct inj_mem_span *spans, size_t n)
{
	size_t done = 0;

	while (done < n) {
		struct iovec local[READ_BATCH], remote[READ_BATCH];
		size_t k = n - done < READ_BATCH ? n - done : READ_BATCH, whole = 0;
		ssize_t got;
		int r;

		for (size_t i = 0; i < k; i++) {
			local[i] = (struct iovec){spans[done + i].buf, spans[done + i].len};
			remote[i] = (struct iovec){(void *)(uintptr_t)spans[done + i].addr,
						   spans[done + i].len};
		}
		got = process_vm_readv(p->pid, local, k, remote, k, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == ESRCH)
			return -ESRCH;
		/* It stops at the first range it cannot read, never inside one. */
		for (size_t sum = 0;
		     got > 0 && whole < k && sum + spans[done + whole].len <= (size_t)got; whole++)
			sum += spans[done + whole].len;
		done += whole;
		if (whole == k)
			continue;
		r = inj_mem_read(p, spans[done].addr, spans[done].buf, spans[done].len);
		if (r < 0)
			return r;
		done++;
	}
	return 0;
}

int inj_mem_write_via(struct inj_process *p, enum inj_mem_path path, uint64_t addr, const void *buf,
		      size_t len)
{
	switch (path) {
	case INJ_MEM_VM:
		return vm_rw(p, true, addr, (void *)buf, len);
	case INJ_MEM_PROC_MEM:
		return proc_mem_rw(p, true, addr, (void *)buf, len);
	case INJ_MEM_POKE:
		return poke_rw(p, true, addr, (void *)buf, len);
	}
	return -EINVAL;
}

/* Writes through the paths from first on, each after the one before fails. */
static int mem_write_from(struct inj_process *p, enum inj_mem_path first, uint64_t addr,
			  const void *buf, size_t len, enum inj_mem_path *ret_path)
{
	enum inj_mem_path path = INJ_MEM_VM;
	int r = -EFAULT;

	if (!len)
		return 0;
	if (first == INJ_MEM_VM)
		r = inj_mem_write_via(p, INJ_MEM_VM, addr, buf, len);
	if (r == -EFAULT && !p->mem_fd_write_denied) {
		path = INJ_MEM_PROC_MEM;
		r = inj_mem_write_via(p, path, addr, buf, len);
	}
	/*
	 * /proc/PID/mem fails the same way (EIO) for an unmapped address and
	 * for a protected page when the kernel forbids forced writes there
	 * (proc_mem.force_override=never, or EPERM/EACCES from a security
	 * module). POKEDATA still writes through protections: try it, and if
	 * it works, go straight to it from now on. Only its failure means the
	 * address is really not mapped.
	 */
	if (r == -EFAULT || r == -EPERM || r == -EACCES) {
		int r2 = inj_mem_write_via(p, INJ_MEM_POKE, addr, buf, len);
		if (r2 == 0) {
			if (!p->mem_fd_write_denied)
				log_debug(
				    "pid %d: /proc/PID/mem writes refused, using PTRACE_POKEDATA",
				    p->pid);
			p->mem_fd_write_denied = true;
			path = INJ_MEM_POKE;
			r = 0;
		} else if (r2 != -EBUSY) {
			r = r2; /* -EFAULT when unmapped, -ESRCH when gone */
		}
	}
	if (r == 0 && ret_path)
		*ret_path = path;
	return r;
}

int inj_mem_write(struct inj_process *p, uint64_t addr, const void *buf, size_t len,
		  enum inj_mem_path *ret_path)
{
	return mem_write_from(p, INJ_MEM_VM, addr, buf, len, ret_path);
}

int inj_mem_write_ro(struct inj_process *p, uint64_t addr, const void *buf, size_t len,
		     enum inj_mem_path *ret_path)
{
	return mem_write_from(p, INJ_MEM_PROC_MEM, addr, buf, len, ret_path);
}
