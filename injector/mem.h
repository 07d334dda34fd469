/*
 * Remote memory. Reads try process_vm_readv first and fall back to
 * /proc/PID/mem (which reads through protections for a tracer). Writes try
 * process_vm_writev (writable pages only), then /proc/PID/mem (writes through
 * read-only protection, copy-on-write for private mappings), then
 * PTRACE_POKEDATA when the kernel forbids /proc/PID/mem writes
 * (proc_mem.force_override=never). POKEDATA needs a stopped thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "process.h"

enum inj_mem_path {
	INJ_MEM_VM = 0,	  /* process_vm_readv/writev */
	INJ_MEM_PROC_MEM, /* /proc/PID/mem */
	INJ_MEM_POKE,	  /* PTRACE_PEEKDATA/POKEDATA */
};

/* Reads len bytes. 0, -EFAULT if any byte is unmapped, -ESRCH, -errno. */
int inj_mem_read(struct inj_process *p, uint64_t addr, void *buf, size_t len);

/* A range of target memory and where it goes. */
struct inj_mem_span {
	uint64_t addr;
	size_t len;
	void *buf;
};

/*
 * Reads n ranges: as many at a time as one process_vm_readv takes, each one
 * that it cannot read through inj_mem_read(). 0, -EFAULT, -ESRCH, -errno.
 */
int inj_mem_read_spans(struct inj_process *p, const struct inj_mem_span *spans, size_t n);

/*
 * Writes len bytes. 0, -EFAULT, -ESRCH, -errno. *ret_path (may be NULL) says
 * which path succeeded. A stopped thread is needed only for the POKEDATA path.
 */
int inj_mem_write(struct inj_process *p, uint64_t addr, const void *buf, size_t len,
		  enum inj_mem_path *ret_path);

/*
 * Like inj_mem_write() for memory the target itself cannot write (code,
 * optd's r-x region): /proc/PID/mem first, since process_vm_writev would
 * refuse it, then POKEDATA. Writable memory is written all the same.
 */
int inj_mem_write_ro(struct inj_process *p, uint64_t addr, const void *buf, size_t len,
		     enum inj_mem_path *ret_path);

/* Like inj_mem_write but only through the given path (tests, benchmarks). */
int inj_mem_write_via(struct inj_process *p, enum inj_mem_path path, uint64_t addr, const void *buf,
		      size_t len);
