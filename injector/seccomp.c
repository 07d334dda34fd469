/*
 * The guard's seccomp filter, generated as classic BPF.
 *
 * Layout: a dispatch on arch and nr that uses nothing but loads of arch and
 * nr and constant jumps (so the kernel's action cache can prove every other
 * syscall "always allowed"), then one small block per kind of check, then the
 * two shared returns, ALLOW and TRACE. The whole program is shorter than 256
 * instructions, so every conditional jump (8-bit offset) reaches the returns;
 * the emitter still checks each offset when it resolves labels.
 *
 * The emitter writes label numbers into the jump fields (jt, jf, or k for
 * BPF_JA) and replaces them with offsets once every label is placed. Every
 * jump goes forward, as cBPF requires.
 */
#include <assert.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "seccomp.h"
#include "util.h"

#ifndef __NR_map_shadow_stack
#define __NR_map_shadow_stack 453
#endif
#ifndef __NR_mseal
#define __NR_mseal 462
#endif

/* A 64-bit argument is two words of struct seccomp_data, the low one first. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the filter reads 64-bit arguments as little-endian word pairs"
#endif
_Static_assert(sizeof(((struct seccomp_data *)0)->args[0]) == 8, "64-bit seccomp arguments");

/* Syscalls whose range is [args[0], args[0] + args[1]). */
static const int range_syscalls[] = {
    __NR_mmap,
    __NR_munmap,
    __NR_mprotect,
    __NR_pkey_mprotect,
    __NR_madvise,
    __NR_msync,
    __NR_mincore,
    __NR_mlock,
    __NR_munlock,
    __NR_mlock2,
    __NR_remap_file_pages,
    __NR_mbind,
    __NR_map_shadow_stack,
    __NR_mseal,
};

bool inj_seccomp_tagged(long nr)
{
	return nr == __NR_munmap || nr == __NR_mprotect || nr == __NR_madvise || nr == __NR_mremap;
}

/*
 * Jump targets are labels. LABEL_NEXT is the instruction after the jump or,
 * given to a helper that emits several instructions, the one after the helper.
 */
#define LABEL_NEXT 0
#define MAX_LABELS 64
_Static_assert(MAX_LABELS <= UINT8_MAX + 1, "labels are held in jt and jf while emitting");
#define UNPLACED SIZE_MAX

/* Scratch memory slot of the low word of a sum. */
#define M_SUM_LO 0

struct emitter {
	const struct inj_guard_window *w;
	struct sock_filter insn[INJ_SECCOMP_MAX_INSNS];
	size_t n;
	size_t label_at[MAX_LABELS];
	int n_labels;
	int err; /* sticky: -E2BIG once a limit is passed */
	int allow, trace;
};

static uint32_t lo32(uint64_t v)
{
	return (uint32_t)v;
}

static uint32_t hi32(uint64_t v)
{
	return (uint32_t)(v >> 32);
}

static void emit(struct emitter *e, uint16_t code, uint32_t k, uint8_t jt, uint8_t jf)
{
	if (e->n == ARRAY_SIZE(e->insn)) {
		e->err = -E2BIG;
		return;
	}
	e->insn[e->n++] = (struct sock_filter){code, jt, jf, k};
}

static void stmt(struct emitter *e, uint16_t code, uint32_t k)
{
	emit(e, code, k, 0, 0);
}

/* op: BPF_JEQ, BPF_JGT, BPF_JGE or BPF_JSET against k; BPF_X added to compare with X. */
static void jump(struct emitter *e, uint16_t op, uint32_t k, int yes, int no)
{
	emit(e, BPF_JMP | op, k, (uint8_t)yes, (uint8_t)no);
}

static void jump_always(struct emitter *e, int to)
{
	emit(e, BPF_JMP | BPF_JA, (uint32_t)to, 0, 0);
}

static int label_new(struct emitter *e)
{
	if (e->n_labels == MAX_LABELS) {
		e->err = -E2BIG;
		return LABEL_NEXT;
	}
	e->label_at[e->n_labels] = UNPLACED;
	return e->n_labels++;
}

static void label_here(struct emitter *e, int label)
{
	if (label != LABEL_NEXT)
		e->label_at[label] = e->n;
}

/* The offset from the jump at pc to label; -E2BIG if it exceeds max. */
static int offset_to(const struct emitter *e, size_t pc, uint32_t label, uint32_t max,
		     uint32_t *ret)
{
	size_t at;

	if (label == LABEL_NEXT) {
		*ret = 0;
		return 0;
	}
	assert(label < (uint32_t)e->n_labels);
	at = e->label_at[label];
	assert(at != UNPLACED && at > pc); /* cBPF jumps go forward only */
	if (at - pc - 1 > max)
		return -E2BIG;
	*ret = (uint32_t)(at - pc - 1);
	return 0;
}

static int resolve_labels(struct emitter *e)
{
	for (size_t pc = 0; pc < e->n; pc++) {
		struct sock_filter *f = &e->insn[pc];
		uint32_t jt, jf;
		int r;

		if (BPF_CLASS(f->code) != BPF_JMP)
			continue;
		if (BPF_OP(f->code) == BPF_JA) {
			r = offset_to(e, pc, f->k, UINT32_MAX, &f->k);
			if (r < 0)
				return r;
			continue;
		}
		r = offset_to(e, pc, f->jt, UINT8_MAX, &jt);
		if (r < 0)
			return r;
		r = offset_to(e, pc, f->jf, UINT8_MAX, &jf);
		if (r < 0)
			return r;
		f->jt = (uint8_t)jt;
		f->jf = (uint8_t)jf;
	}
	return 0;
}

enum word { LO = 0, HI = 4 };

static void load_arg(struct emitter *e, int arg, enum word w)
{
	stmt(e, BPF_LD | BPF_W | BPF_ABS,
	     (uint32_t)(offsetof(struct seccomp_data, args) + 8 * arg + w));
}

/*
 * A helper of several instructions given LABEL_NEXT as a target means the
 * instruction after the helper, which needs a label of its own.
 */
static int target(struct emitter *e, int label, int *after)
{
	if (label != LABEL_NEXT)
		return label;
	if (*after == LABEL_NEXT)
		*after = label_new(e);
	return *after;
}

/* Jumps to zero if args[arg] == 0, to nonzero otherwise. */
static void jump_zero64(struct emitter *e, int arg, int zero, int nonzero)
{
	int after = LABEL_NEXT;

	zero = target(e, zero, &after);
	nonzero = target(e, nonzero, &after);
	load_arg(e, arg, LO);
	jump(e, BPF_JEQ, 0, LABEL_NEXT, nonzero);
	load_arg(e, arg, HI);
	jump(e, BPF_JEQ, 0, zero, nonzero);
	label_here(e, after);
}

/* Jumps to yes if args[arg] < k, to no otherwise; the high words decide unless equal. */
static void jump_lt64(struct emitter *e, int arg, uint64_t k, int yes, int no)
{
	int after = LABEL_NEXT;

	yes = target(e, yes, &after);
	no = target(e, no, &after);
	load_arg(e, arg, HI);
	jump(e, BPF_JGT, hi32(k), no, LABEL_NEXT);
	jump(e, BPF_JEQ, hi32(k), LABEL_NEXT, yes);
	load_arg(e, arg, LO);
	jump(e, BPF_JGE, lo32(k), no, yes);
	label_here(e, after);
}

/* Jumps to yes if args[arg] > k, to no otherwise. */
static void jump_gt64(struct emitter *e, int arg, uint64_t k, int yes, int no)
{
	int after = LABEL_NEXT;

	yes = target(e, yes, &after);
	no = target(e, no, &after);
	load_arg(e, arg, HI);
	jump(e, BPF_JGT, hi32(k), yes, LABEL_NEXT);
	jump(e, BPF_JEQ, hi32(k), LABEL_NEXT, no);
	load_arg(e, arg, LO);
	jump(e, BPF_JGT, lo32(k), yes, no);
	label_here(e, after);
}

/*
 * Jumps to TRACE if [args[addr], args[addr] + args[len]) intersects the
 * window; falls through otherwise. A sum past 2^64 is greater than any start.
 */
static void check_range(struct emitter *e, int addr, int len)
{
	int miss = label_new(e), no_carry = label_new(e), high = label_new(e);

	jump_zero64(e, len, miss, LABEL_NEXT);
	jump_lt64(e, addr, e->w->end, LABEL_NEXT, miss);

	/* Low words; the sum carries iff it is below an addend (here the length's, in X). */
	load_arg(e, len, LO);
	stmt(e, BPF_MISC | BPF_TAX, 0);
	load_arg(e, addr, LO);
	stmt(e, BPF_ALU | BPF_ADD | BPF_X, 0);
	stmt(e, BPF_ST, M_SUM_LO);
	jump(e, BPF_JGE | BPF_X, 0, no_carry, LABEL_NEXT);
	/* Carry into the high word; if that word is all ones the sum passes 2^64. */
	load_arg(e, addr, HI);
	stmt(e, BPF_ALU | BPF_ADD | BPF_K, 1);
	jump(e, BPF_JEQ, 0, e->trace, high);
	label_here(e, no_carry);
	load_arg(e, addr, HI);
	label_here(e, high);

	/* High words: A = addr.hi + carry (in X) + len.hi; below X means it passed 2^64. */
	stmt(e, BPF_MISC | BPF_TAX, 0);
	load_arg(e, len, HI);
	stmt(e, BPF_ALU | BPF_ADD | BPF_X, 0);
	jump(e, BPF_JGE | BPF_X, 0, LABEL_NEXT, e->trace);

	/* The sum, high word in A and low word in M, against start. */
	jump(e, BPF_JGT, hi32(e->w->start), e->trace, LABEL_NEXT);
	jump(e, BPF_JEQ, hi32(e->w->start), LABEL_NEXT, miss);
	stmt(e, BPF_LD | BPF_MEM, M_SUM_LO);
	jump(e, BPF_JGT, lo32(e->w->start), e->trace, miss);
	label_here(e, miss);
}

/* Jumps to ALLOW if args[5] is the tag; falls through otherwise. */
static void check_tag(struct emitter *e)
{
	int untagged = label_new(e);

	load_arg(e, 5, LO);
	jump(e, BPF_JEQ, lo32(e->w->tag), LABEL_NEXT, untagged);
	load_arg(e, 5, HI);
	jump(e, BPF_JEQ, hi32(e->w->tag), e->allow, untagged);
	label_here(e, untagged);
}

/* The tagged syscalls of the range kind: the tag first, then the range. */
static void block_tagged_range(struct emitter *e, int label)
{
	label_here(e, label);
	check_tag(e);
}

static void block_range(struct emitter *e, int label)
{
	label_here(e, label);
	check_range(e, 0, 1);
	jump_always(e, e->allow);
}

static void block_mremap(struct emitter *e, int label)
{
	label_here(e, label);
	if (e->w->tag)
		check_tag(e);
	check_range(e, 0, 1); /* the old range */
	check_range(e, 0, 2); /* growing in place */
	load_arg(e, 3, LO);   /* the flags live in the low word */
	jump(e, BPF_JSET, MREMAP_FIXED, LABEL_NEXT, e->allow);
	check_range(e, 4, 2); /* the new range, at a fixed address */
	jump_always(e, e->allow);
}

/*
 * args[0] + 4096 > start, with the sum taken without wrapping. start is
 * page-aligned: below 4096 it is 0 and every break qualifies.
 */
static void block_brk(struct emitter *e, int label)
{
	label_here(e, label);
	if (e->w->start < PAGE_SIZE_4K)
		jump_always(e, e->trace);
	else
		jump_gt64(e, 0, e->w->start - PAGE_SIZE_4K, e->trace, e->allow);
}

static void block_shmat(struct emitter *e, int label)
{
	label_here(e, label);
	jump_zero64(e, 1, e->allow, LABEL_NEXT);
	jump_lt64(e, 1, e->w->end, e->trace, e->allow);
}

static void emit_filter(struct emitter *e)
{
	const struct inj_guard_window *w = e->w;
	int range = label_new(e), mremap = label_new(e), shmat = label_new(e);
	int brk = label_new(e);
	/* Falls through to range: the two blocks are emitted in this order. */
	int tagged = w->tag ? label_new(e) : range;
	/* A heap that starts at or above the window never grows into it. */
	bool brk_can_reach = w->brk_start == 0 || w->brk_start < w->end;

	e->allow = label_new(e);
	e->trace = label_new(e);

	/* Dispatch: arch and nr only, constant jumps only. */
	stmt(e, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	jump(e, BPF_JEQ, AUDIT_ARCH_X86_64, LABEL_NEXT, e->trace);
	stmt(e, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	jump(e, BPF_JSET, __X32_SYSCALL_BIT, e->trace, LABEL_NEXT);
	for (size_t i = 0; i < ARRAY_SIZE(range_syscalls); i++)
		jump(e, BPF_JEQ, (uint32_t)range_syscalls[i],
		     inj_seccomp_tagged(range_syscalls[i]) ? tagged : range, LABEL_NEXT);
	jump(e, BPF_JEQ, __NR_mremap, mremap, LABEL_NEXT);
	jump(e, BPF_JEQ, __NR_shmat, shmat, LABEL_NEXT);
	if (brk_can_reach)
		jump(e, BPF_JEQ, __NR_brk, brk, LABEL_NEXT);
	jump(e, BPF_JEQ, __NR_process_madvise, e->trace, e->allow);

	if (w->tag)
		block_tagged_range(e, tagged);
	block_range(e, range);
	block_mremap(e, mremap);
	if (brk_can_reach)
		block_brk(e, brk);
	block_shmat(e, shmat); /* last: falls through to ALLOW */

	label_here(e, e->allow);
	stmt(e, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	label_here(e, e->trace);
	stmt(e, BPF_RET | BPF_K, SECCOMP_RET_TRACE | INJ_SECCOMP_DATA);
}

int inj_seccomp_build(const struct inj_guard_window *w, struct sock_filter **ret, size_t *ret_n)
{
	_cleanup_free_ struct emitter *e = NULL;
	struct sock_filter *prog;
	int r;

	if (!w || !ret || !ret_n)
		return -EINVAL;
	if (w->start >= w->end || w->start % PAGE_SIZE_4K || w->end % PAGE_SIZE_4K)
		return -EINVAL;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->w = w;
	e->n_labels = 1; /* label 0 is LABEL_NEXT */

	emit_filter(e);
	if (e->err < 0)
		return e->err;
	r = resolve_labels(e);
	if (r < 0)
		return r;

	prog = malloc(e->n * sizeof(*prog));
	if (!prog)
		return -ENOMEM;
	memcpy(prog, e->insn, e->n * sizeof(*prog));
	*ret = prog;
	*ret_n = e->n;
	return 0;
}
