/*
 * Creating and removing optd's region in a target. Every step that changes
 * the target is undone, in reverse order, when a later step fails.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "place.h"
#include "procstat.h"
#include "region.h"
#include "syscall.h"
#include "util.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uint64_t read_u64_file(const char *path, uint64_t fallback)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	unsigned long long v;

	if (!f || fscanf(f, "%llu", &v) != 1)
		return fallback;
	return v;
}

int inj_region_find_place(struct inj_thread *t, const struct maps *m, uint64_t near_start,
			  uint64_t near_end, uint64_t size, uint64_t align,
			  const struct inj_place_policy *policy, uint64_t *ret_addr)
{
	struct place_request req = {
	    .size = size,
	    .align = align,
	    .near_start = near_start,
	    .near_end = near_end,
	    .heap_reserve = policy->heap_reserve,
	    .gap = policy->gap,
	    .avoid = policy->avoid,
	};
	const struct maps_entry *stack = maps_find_kind(m, MAPS_STACK);
	int r;

	req.brk = place_break(m, policy->start_brk);
	if (!req.brk) {
		r = inj_region_brk(t, &req.brk);
		if (r < 0)
			return r;
	}

	if (stack) {
		req.stack_top = stack->end;
		req.stack_reserve = inj_stack_limit(t->proc->pid) + policy->stack_guard_gap;
	}
	req.mmap_min_addr = inj_mmap_min_addr();
	return place_find(m, &req, ret_addr);
}

int inj_region_brk(struct inj_thread *t, uint64_t *ret)
{
	long brk_now = 0;
	int r = inj_syscall(t, SYS_brk, &brk_now, 0);

	if (r < 0)
		return r;
	*ret = brk_now > 0 ? (uint64_t)brk_now : 0;
	return 0;
}

uint64_t inj_stack_limit(pid_t pid)
{
	/* An unlimited stack can grow until it meets a mapping; keep a generous 4 GiB. */
	uint64_t lim = 4ULL << 30;
	struct rlimit rl;

	if (prlimit(pid, RLIMIT_STACK, NULL, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < lim)
		lim = rl.rlim_cur;
	return lim;
}

uint64_t inj_mmap_min_addr(void)
{
	static uint64_t v; /* a sysctl that is set at boot: read once */

	if (!v)
		v = read_u64_file("/proc/sys/vm/mmap_min_addr", 65536) ?: 4096;
	return v;
}

int inj_region_read_header(struct inj_process *p, uint64_t addr, struct optd_region_header *ret)
{
	struct optd_region_header h;
	int r = inj_mem_read(p, addr, &h, sizeof(h));

	if (r == -EFAULT)
		return -ENOENT;
	if (r < 0)
		return r;
	if (memcmp(h.magic, OPTD_REGION_MAGIC, OPTD_REGION_MAGIC_LEN) != 0 ||
	    h.version != OPTD_REGION_VERSION || h.base != addr)
		return -ENOENT;
	*ret = h;
	return 0;
}

/* optd's start time (field 22, clock ticks after boot), to tell a restarted optd from this one. */
static uint64_t self_start_time(void)
{
	char v[32];

	return procstat_field("/proc/self/stat", 22, v, sizeof(v)) == 0 ? strtoull(v, NULL, 10) : 0;
}

/*
 * The remote half of inj_region_create(): maps, advises, writes and protects.
 * Undoes its own steps in reverse order on failure.
 */
static int region_install(struct inj_thread *t, struct inj_region *reg, unsigned char *fill)
{
	uint64_t addr = reg->base, size = reg->size;
	uint64_t huge_lo, huge_hi;
	long res, ignored;
	int r;

	r = inj_thread_prepare(t);
	if (r < 0)
		return r;

	r = inj_syscall(t, SYS_mmap, &res, (long)addr, (long)size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (r < 0)
		goto out_cure;
	if (res < 0 && res > -4096) {
		r = (int)res;
		goto out_cure;
	}
	if ((uint64_t)res != addr) {
		/* A kernel without MAP_FIXED_NOREPLACE took it as a hint. */
		(void)inj_syscall(t, SYS_munmap, &ignored, res, (long)size);
		r = -EEXIST;
		goto out_cure;
	}

	huge_lo = ALIGN_UP(addr + OPTD_REGION_HEADER_PAGE, INJ_HUGE_PAGE);
	huge_hi = ALIGN_DOWN(addr + size, INJ_HUGE_PAGE);
	if (huge_hi > huge_lo) {
		r = inj_syscall(t, SYS_madvise, &res, (long)huge_lo, (long)(huge_hi - huge_lo),
				MADV_HUGEPAGE);
		if (r < 0)
			goto out_unmap;
		/* EINVAL: no transparent huge pages in this kernel. Not an error. */
		if (res == 0)
			reg->huge_pages = (huge_hi - huge_lo) / INJ_HUGE_PAGE;
	}
	reg->hdr.flags = reg->huge_pages ? OPTD_REGION_F_HUGEPAGE : 0;

	/* The header page is zero past the header; the code area is int3 until code is written. */
	memset(fill, 0, OPTD_REGION_HEADER_PAGE);
	memcpy(fill, &reg->hdr, sizeof(reg->hdr));
	memset(fill + OPTD_REGION_HEADER_PAGE, 0xcc, size - OPTD_REGION_HEADER_PAGE);
	r = inj_mem_write(t->proc, addr, fill, size, NULL);
	if (r < 0)
		goto out_unmap;

	r = inj_syscall(t, SYS_mprotect, &res, (long)addr, (long)size, PROT_READ | PROT_EXEC);
	if (r < 0)
		goto out_unmap;
	if (res < 0) {
		r = (int)res;
		goto out_unmap;
	}
	return inj_thread_cure(t);

out_unmap:
	if (r != -ESRCH)
		(void)inj_syscall(t, SYS_munmap, &ignored, (long)addr, (long)size);
out_cure:
	if (r != -ESRCH)
		(void)inj_thread_cure(t);
	return r;
}

int inj_region_create(struct inj_thread *t, uint64_t addr, uint64_t size, struct inj_region **ret)
{
	_cleanup_free_ struct inj_region *reg = NULL;
	_cleanup_free_ unsigned char *fill = NULL;
	int r;

	if (size < 2 * OPTD_REGION_HEADER_PAGE || size % OPTD_REGION_HEADER_PAGE ||
	    addr % OPTD_REGION_HEADER_PAGE)
		return -EINVAL;
	reg = calloc(1, sizeof(*reg));
	fill = malloc(size);
	if (!reg || !fill)
		return -ENOMEM;

	reg->base = addr;
	reg->size = size;
	reg->pieces[0] = (struct optd_region_piece){0, size, addr};
	reg->n_pieces = 1;
	reg->hdr = (struct optd_region_header){
	    .version = OPTD_REGION_VERSION,
	    .header_size = sizeof(struct optd_region_header),
	    .base = addr,
	    .size = size,
	    .code_offset = OPTD_REGION_HEADER_PAGE,
	    .code_size = size - OPTD_REGION_HEADER_PAGE,
	    .owner_pid = (uint64_t)getpid(),
	    .owner_start_time = self_start_time(),
	    .generation = 1,
	};
	memcpy(reg->hdr.magic, OPTD_REGION_MAGIC, OPTD_REGION_MAGIC_LEN);

	r = region_install(t, reg, fill);
	if (r < 0)
		return r;
	log_debug("pid %d: region %#lx-%#lx r-x, %lu huge pages", t->proc->pid, (unsigned long)addr,
		  (unsigned long)(addr + size), (unsigned long)reg->huge_pages);
	*ret = TAKE_PTR(reg);
	return 0;
}

int inj_region_remove(struct inj_thread *t, struct inj_region *reg)
{
	for (unsigned i = 0; i < reg->n_pieces; i++) {
		const struct optd_region_piece *pc = &reg->pieces[i];
		long res;
		int r = inj_syscall(t, SYS_munmap, &res, (long)pc->addr, (long)pc->len);

		if (r < 0)
			return r;
		if (res < 0)
			return (int)res;
		log_debug("pid %d: region piece %#lx-%#lx removed", t->proc->pid,
			  (unsigned long)pc->addr, (unsigned long)(pc->addr + pc->len));
	}
	return 0;
}

const struct optd_region_piece *inj_region_piece_at(const struct inj_region *r, uint64_t addr)
{
	for (unsigned i = 0; i < r->n_pieces; i++)
		if (addr - r->pieces[i].addr < r->pieces[i].len)
			return &r->pieces[i];
	return NULL;
}

bool inj_region_overlaps(const struct inj_region *r, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < r->n_pieces; i++)
		if (start < r->pieces[i].addr + r->pieces[i].len && end > r->pieces[i].addr)
			return true;
	return false;
}

uint64_t inj_region_addr(const struct inj_region *r, uint64_t off)
{
	for (unsigned i = 0; i < r->n_pieces; i++)
		if (off - r->pieces[i].off < r->pieces[i].len)
			return r->pieces[i].addr + (off - r->pieces[i].off);
	return 0;
}

int inj_region_move_part(struct inj_region *r, uint64_t start, uint64_t end, uint64_t to)
{
	struct optd_region_piece v[OPTD_REGION_MAX_PIECES + 2], *pc = NULL;
	unsigned n = 0, k;

	for (unsigned i = 0; i < r->n_pieces; i++)
		if (start >= r->pieces[i].addr && end <= r->pieces[i].addr + r->pieces[i].len)
			pc = &r->pieces[i];
	if (!pc || start >= end)
		return -EINVAL;
	for (unsigned i = 0; i < r->n_pieces; i++) {
		const struct optd_region_piece *p = &r->pieces[i];
		uint64_t head = start - p->addr, tail = p->addr + p->len - end;

		if (p != pc) {
			v[n++] = *p;
			continue;
		}
		if (head)
			v[n++] = (struct optd_region_piece){p->off, head, p->addr};
		v[n++] = (struct optd_region_piece){p->off + head, end - start, to};
		if (tail)
			v[n++] =
			    (struct optd_region_piece){p->off + head + (end - start), tail, end};
	}
	/* Sorted by off already; join neighbours contiguous in both. */
	k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (k && v[k - 1].off + v[k - 1].len == v[i].off &&
		    v[k - 1].addr + v[k - 1].len == v[i].addr) {
			v[k - 1].len += v[i].len;
			continue;
		}
		v[k++] = v[i];
	}
	if (k > OPTD_REGION_MAX_PIECES)
		return -ENOSPC;
	memcpy(r->pieces, v, k * sizeof(*v));
	r->n_pieces = k;
	r->base = r->pieces[0].addr;
	r->hdr.base = r->base;
	if (k > 1)
		r->hdr.flags |= OPTD_REGION_F_PIECES;
	else
		r->hdr.flags &= ~(uint64_t)OPTD_REGION_F_PIECES;
	return 0;
}

int inj_region_write_header(struct inj_process *p, const struct inj_region *r)
{
	struct {
		struct optd_region_header hdr;
		struct optd_region_pieces pieces;
	} page = {.hdr = r->hdr, .pieces = {.count = r->n_pieces}};

	_Static_assert(offsetof(typeof(page), pieces) == OPTD_REGION_PIECES_OFFSET,
		       "the piece table follows the header");
	memcpy(page.pieces.v, r->pieces, r->n_pieces * sizeof(*r->pieces));
	return inj_mem_write_ro(p, r->base, &page, sizeof(page), NULL);
}

void inj_region_free(struct inj_region *r)
{
	free(r);
}
