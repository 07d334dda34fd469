/*
 * The copier, in four passes over one function:
 *
 *  1. decode: every instruction, classified by its relative operand (none,
 *     RIP-relative disp32, or a branch with rel8/rel32); everything that
 *     cannot be proven safe is refused here, at the instruction that shows it;
 *  2. resolve: branch targets inside the function become instruction indexes
 *     (a target that is no instruction start is refused), targets outside go
 *     through the redirect callback;
 *  3. layout: copy offsets from sizes; a short internal branch that no longer
 *     reaches is widened, which moves later instructions, so the pass repeats
 *     until nothing changes (sizes only grow, so it ends);
 *  4. emit: kept bytes are copied and their field patched in place at the
 *     offset Zydis decoded; new instructions come from Zydis's encoder. Every
 *     field written is then decoded back and checked against its record.
 *
 * Outbound short branches are always widened, even when rel8 would reach from
 * dest_addr: then every field that leaves the copy is 32 bits wide and a move
 * of the copy is a walk over the records, never a re-layout.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "copier.h"

enum insn_kind {
	K_PLAIN,  /* no relative operand */
	K_RIPMEM, /* RIP-relative memory operand (disp32) */
	K_JMP,	  /* jmp rel8 / rel32 */
	K_JCC,	  /* jcc rel8 / rel32 */
	K_LOOP,	  /* loop, loope, loopne, jrcxz, jecxz: rel8 only */
	K_CALL,	  /* call rel32 */
	K_REL32,  /* another rel32 branch (xbegin): patched, never widened */
	K_TAIL,	  /* not in the original: jmp rel32 to orig_addr + len */
};

/* The two short jumps that turn a loop-family rel8 into a rel32 reach. */
#define LOOP_SKIP_LEN 2 /* jmp rel8 over the next one */
#define JMP32_LEN 5	/* jmp rel32 */

struct insn {
	uint64_t target;     /* branch/RIP target as the original meant it */
	uint64_t new_target; /* external targets: after the redirect callback */
	uint32_t off;	     /* in the original */
	uint32_t new_off;    /* in the copy */
	uint32_t target_idx; /* internal targets: index of the target instruction */
	uint8_t len;
	uint8_t new_len;
	uint8_t wide_len; /* short branches: length once widened; 0 = cannot widen */
	uint8_t kind;	  /* enum insn_kind */
	uint8_t field_off;
	uint8_t field_size; /* bytes: 1 or 4 */
	bool internal;
	bool wide; /* a rel8 original emitted in its rel32 form */
	bool redirected;
};

struct copier {
	const struct copier_input *in;
	ZydisDecoder dec;
	struct insn *v;
	size_t n;
	size_t cap;
	uint32_t patch_off;
	uint32_t flags;
	size_t size;
	/* Jump-table heuristic: an indexed load and a jmp through a register. */
	bool indexed_load;
	bool reg_jmp;
};

const char *copier_reason_to_string(enum copier_reason r)
{
	static const char *const names[] = {
	    [COPIER_OK] = "ok",
	    [COPIER_UNDECODABLE] = "undecodable",
	    [COPIER_BRANCH_INTO_INSN] = "branch_into_insn",
	    [COPIER_BRANCH_INTO_ENTRY_PATCH] = "branch_into_entry_patch",
	    [COPIER_RETURN_INTO_ENTRY_PATCH] = "return_into_entry_patch",
	    [COPIER_RIP_INTO_ENTRY_PATCH] = "rip_into_entry_patch",
	    [COPIER_CALL_NEXT] = "call_next",
	    [COPIER_EIP_RELATIVE] = "eip_relative",
	    [COPIER_UNSUPPORTED] = "unsupported",
	    [COPIER_OUT_OF_REACH] = "out_of_reach",
	    [COPIER_TOO_SMALL] = "too_small",
	    [COPIER_TOO_LARGE] = "too_large",
	    [COPIER_NO_ROOM] = "no_room",
	};

	if ((unsigned)r >= sizeof(names) / sizeof(names[0]) || !names[r])
		return "unknown";
	return names[r];
}

static int refuse(struct copier_refusal *why, enum copier_reason reason, uint32_t off,
		  uint64_t target)
{
	if (why) {
		memset(why, 0, sizeof(*why));
		why->reason = reason;
		why->orig_off = off;
		why->target = target;
	}
	return -ENOTSUP;
}

static bool fits(int64_t v, unsigned size)
{
	if (size == 1)
		return v >= INT8_MIN && v <= INT8_MAX;
	return v >= INT32_MIN && v <= INT32_MAX;
}

/* Wrapping subtraction read as signed: exact for any two user addresses. */
static int64_t distance(uint64_t to, uint64_t from)
{
	return (int64_t)(to - from);
}

static void put_field(uint8_t *p, unsigned size, int64_t v)
{
	if (size == 1) {
		int8_t b = (int8_t)v;
		memcpy(p, &b, 1);
	} else {
		int32_t w = (int32_t)v;
		memcpy(p, &w, 4); /* x86-64 only: host order is the target's */
	}
}

static int64_t get_field(const uint8_t *p, unsigned size)
{
	if (size == 1) {
		int8_t b;
		memcpy(&b, p, 1);
		return b;
	}
	int32_t w;
	memcpy(&w, p, 4);
	return w;
}

static int push_insn(struct copier *c, struct insn **ret)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct insn *v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	*ret = &c->v[c->n++];
	memset(*ret, 0, sizeof(**ret));
	return 0;
}

static bool is_jcc(ZydisMnemonic m)
{
	switch (m) {
	case ZYDIS_MNEMONIC_JB:
	case ZYDIS_MNEMONIC_JBE:
	case ZYDIS_MNEMONIC_JL:
	case ZYDIS_MNEMONIC_JLE:
	case ZYDIS_MNEMONIC_JNB:
	case ZYDIS_MNEMONIC_JNBE:
	case ZYDIS_MNEMONIC_JNL:
	case ZYDIS_MNEMONIC_JNLE:
	case ZYDIS_MNEMONIC_JNO:
	case ZYDIS_MNEMONIC_JNP:
	case ZYDIS_MNEMONIC_JNS:
	case ZYDIS_MNEMONIC_JNZ:
	case ZYDIS_MNEMONIC_JO:
	case ZYDIS_MNEMONIC_JP:
	case ZYDIS_MNEMONIC_JS:
	case ZYDIS_MNEMONIC_JZ:
		return true;
	default:
		return false;
	}
}

static bool is_loop_family(ZydisMnemonic m)
{
	return m == ZYDIS_MNEMONIC_LOOP || m == ZYDIS_MNEMONIC_LOOPE ||
	       m == ZYDIS_MNEMONIC_LOOPNE || m == ZYDIS_MNEMONIC_JRCXZ ||
	       m == ZYDIS_MNEMONIC_JECXZ || m == ZYDIS_MNEMONIC_JCXZ;
}

/* Control never reaches the next byte: no jump back to the original is needed after it. */
static bool ends_flow(ZydisMnemonic m)
{
	return m == ZYDIS_MNEMONIC_RET || m == ZYDIS_MNEMONIC_JMP || m == ZYDIS_MNEMONIC_UD0 ||
	       m == ZYDIS_MNEMONIC_UD1 || m == ZYDIS_MNEMONIC_UD2;
}

/* A jmp with an absolute target, as the encoder builds it (width: 8 or 32 bits). */
static int encode_jmp(uint8_t *buf, size_t cap, uint64_t at, uint64_t target, bool short_form,
		      size_t *ret_len)
{
	ZydisEncoderRequest req;
	ZyanUSize len = cap;

	memset(&req, 0, sizeof(req));
	req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	req.mnemonic = ZYDIS_MNEMONIC_JMP;
	req.branch_type = short_form ? ZYDIS_BRANCH_TYPE_SHORT : ZYDIS_BRANCH_TYPE_NEAR;
	req.branch_width = short_form ? ZYDIS_BRANCH_WIDTH_8 : ZYDIS_BRANCH_WIDTH_32;
	req.operand_count = 1;
	req.operands[0].type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
	req.operands[0].imm.u = target;
	if (ZYAN_FAILED(ZydisEncoderEncodeInstructionAbsolute(&req, buf, &len, at)))
		return -EPROTO;
	*ret_len = len;
	return 0;
}

/*
 * Re-encodes a decoded short jmp/jcc in its rel32 form for execution at `at`.
 * The request comes from the decoded instruction, so prefixes such as branch
 * hints survive; only the width and the target change.
 */
static int encode_wide_branch(const ZydisDecodedInstruction *zi, const ZydisDecodedOperand *ops,
			      uint64_t at, uint64_t target, uint8_t *buf, size_t cap,
			      size_t *ret_len)
{
	ZydisEncoderRequest req;
	ZyanUSize len = cap;

	if (ZYAN_FAILED(ZydisEncoderDecodedInstructionToEncoderRequest(
		zi, ops, zi->operand_count_visible, &req)))
		return -EPROTO;
	req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
	req.branch_width = ZYDIS_BRANCH_WIDTH_32;
	for (unsigned i = 0; i < req.operand_count; i++)
		if (req.operands[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
			req.operands[i].imm.u = target;
	if (ZYAN_FAILED(ZydisEncoderEncodeInstructionAbsolute(&req, buf, &len, at)))
		return -EPROTO;
	*ret_len = len;
	return 0;
}

static bool in_function(const struct copier *c, uint64_t a)
{
	return a - c->in->orig_addr < c->in->len;
}

/* The bytes the entry patch overwrites, except its first (landing there is fine). */
static bool in_patch_interior(const struct copier *c, uint64_t a)
{
	uint64_t start = c->in->orig_addr + c->patch_off;

	return a > start && a < start + COPIER_ENTRY_PATCH_LEN;
}

static int classify_branch(struct copier *c, struct insn *x, const ZydisDecodedInstruction *zi,
			   const ZydisDecodedOperand *op, struct copier_refusal *why)
{
	uint64_t addr = c->in->orig_addr + x->off;
	int k = -1;

	for (int i = 0; i < 2; i++)
		if (zi->raw.imm[i].is_relative)
			k = i;
	if (k < 0)
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	/* Intel ignores 0x66 on near branches, AMD truncates the target to 16 bits. */
	if (zi->attributes & ZYDIS_ATTRIB_HAS_OPERANDSIZE)
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(zi, op, addr, &x->target)))
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	x->field_off = zi->raw.imm[k].offset;
	x->field_size = zi->raw.imm[k].size / 8;
	if (x->field_size != 1 && x->field_size != 4)
		return refuse(why, COPIER_UNSUPPORTED, x->off, x->target);

	if (zi->mnemonic == ZYDIS_MNEMONIC_JMP)
		x->kind = K_JMP;
	else if (is_jcc(zi->mnemonic))
		x->kind = K_JCC;
	else if (is_loop_family(zi->mnemonic))
		x->kind = K_LOOP;
	else if (zi->mnemonic == ZYDIS_MNEMONIC_CALL)
		x->kind = K_CALL;
	else if (x->field_size == 4)
		x->kind = K_REL32;
	else
		return refuse(why, COPIER_UNSUPPORTED, x->off, x->target);

	if (x->kind == K_CALL && x->target == addr + x->len)
		return refuse(why, COPIER_CALL_NEXT, x->off, x->target);

	if (x->field_size == 4) {
		x->wide_len = x->len;
	} else if (x->kind == K_LOOP) {
		x->wide_len = x->len + LOOP_SKIP_LEN + JMP32_LEN;
	} else {
		/* Measured, not assumed: prefixes the encoder keeps count too. */
		uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
		size_t len;

		if (encode_wide_branch(zi, op, addr, addr, buf, sizeof(buf), &len) == 0)
			x->wide_len = len;
	}
	return 0;
}

static int classify_ripmem(struct copier *c, struct insn *x, const ZydisDecodedInstruction *zi,
			   const ZydisDecodedOperand *op, struct copier_refusal *why)
{
	uint64_t addr = c->in->orig_addr + x->off;
	uint64_t patch = c->in->orig_addr + c->patch_off;

	if (op->mem.base == ZYDIS_REGISTER_EIP)
		return refuse(why, COPIER_EIP_RELATIVE, x->off, 0);
	if (zi->raw.disp.size != 32)
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(zi, op, addr, &x->target)))
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	x->kind = K_RIPMEM;
	x->field_off = zi->raw.disp.offset;
	x->field_size = 4;

	if (!in_function(c, x->target))
		return 0;
	/* It keeps referring to the original, which stays intact but for the patch. */
	c->flags |= COPIER_F_SELF_REFERENCE;
	if (op->mem.type == ZYDIS_MEMOP_TYPE_AGEN || op->mem.type == ZYDIS_MEMOP_TYPE_MIB) {
		if (in_patch_interior(c, x->target))
			return refuse(why, COPIER_RIP_INTO_ENTRY_PATCH, x->off, x->target);
	} else {
		uint64_t size = op->size >= 8 ? op->size / 8 : 1;

		if (x->target < patch + COPIER_ENTRY_PATCH_LEN && x->target + size > patch)
			return refuse(why, COPIER_RIP_INTO_ENTRY_PATCH, x->off, x->target);
	}
	return 0;
}

/* Notes what an indirect jmp or call, or a table-like load, says about the function. */
static void note_indirect(struct copier *c, const ZydisDecodedInstruction *zi,
			  const ZydisDecodedOperand *ops)
{
	const ZydisDecodedOperand *op = &ops[0];

	/* A load indexed by a register: how switch dispatch reads its table at any -O level. */
	if ((zi->mnemonic == ZYDIS_MNEMONIC_MOV || zi->mnemonic == ZYDIS_MNEMONIC_MOVSXD) &&
	    zi->operand_count_visible >= 2 && ops[1].type == ZYDIS_OPERAND_TYPE_MEMORY &&
	    ops[1].mem.index != ZYDIS_REGISTER_NONE)
		c->indexed_load = true;

	if (zi->mnemonic != ZYDIS_MNEMONIC_JMP && zi->mnemonic != ZYDIS_MNEMONIC_CALL)
		return;
	if (zi->operand_count_visible < 1 || op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
		return;
	if (zi->mnemonic == ZYDIS_MNEMONIC_CALL) {
		c->flags |= COPIER_F_INDIRECT_CALL;
		return;
	}
	if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.base == ZYDIS_REGISTER_RIP)
		return; /* a tail call through a GOT slot or function pointer variable */
	c->flags |= COPIER_F_INDIRECT_JUMP;
	if (zi->attributes & ZYDIS_ATTRIB_HAS_NOTRACK)
		c->flags |= COPIER_F_JUMP_TABLE; /* compilers mark switch dispatch notrack */
	if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.index != ZYDIS_REGISTER_NONE)
		c->flags |= COPIER_F_JUMP_TABLE;
	if (op->type == ZYDIS_OPERAND_TYPE_REGISTER)
		c->reg_jmp = true;
}

static int classify(struct copier *c, struct insn *x, const ZydisDecodedInstruction *zi,
		    const ZydisDecodedOperand *ops, struct copier_refusal *why)
{
	uint32_t end = x->off + x->len;
	int r;

	if (zi->meta.category == ZYDIS_CATEGORY_CALL && end > c->patch_off &&
	    end < c->patch_off + COPIER_ENTRY_PATCH_LEN)
		return refuse(why, COPIER_RETURN_INTO_ENTRY_PATCH, x->off, 0);

	note_indirect(c, zi, ops);

	/* Every operand, hidden ones included: ZYDIS_ATTRIB_IS_RELATIVE is not relied on. */
	for (unsigned i = 0; i < zi->operand_count; i++) {
		const ZydisDecodedOperand *op = &ops[i];

		if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op->imm.is_relative)
			r = classify_branch(c, x, zi, op, why);
		else if (op->type == ZYDIS_OPERAND_TYPE_MEMORY &&
			 (op->mem.base == ZYDIS_REGISTER_RIP || op->mem.base == ZYDIS_REGISTER_EIP))
			r = classify_ripmem(c, x, zi, op, why);
		else
			continue;
		return r;
	}
	if (zi->attributes & ZYDIS_ATTRIB_IS_RELATIVE)
		return refuse(why, COPIER_UNSUPPORTED, x->off, 0);
	x->kind = K_PLAIN;
	return 0;
}

static int decode_all(struct copier *c, struct copier_refusal *why)
{
	const struct copier_input *in = c->in;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisMnemonic last = ZYDIS_MNEMONIC_INVALID;
	uint32_t off = 0;
	struct insn *x;
	int r;

	if (ZYAN_FAILED(ZydisDecoderDecodeFull(&c->dec, in->code, in->len, &zi, ops)))
		return refuse(why, COPIER_UNDECODABLE, 0, 0);
	c->patch_off = zi.mnemonic == ZYDIS_MNEMONIC_ENDBR64 ? zi.length : 0;
	if (in->len < c->patch_off + COPIER_ENTRY_PATCH_LEN)
		return refuse(why, COPIER_TOO_SMALL, 0, 0);

	while (off < in->len) {
		if (ZYAN_FAILED(
			ZydisDecoderDecodeFull(&c->dec, in->code + off, in->len - off, &zi, ops)))
			return refuse(why, COPIER_UNDECODABLE, off, 0);
		r = push_insn(c, &x);
		if (r < 0)
			return r;
		x->off = off;
		x->len = zi.length;
		r = classify(c, x, &zi, ops, why);
		if (r < 0)
			return r;
		off += zi.length;
		last = zi.mnemonic;
	}
	if (c->reg_jmp && c->indexed_load)
		c->flags |= COPIER_F_JUMP_TABLE;

	/* Falling off the copy's end must land where falling off the original would. */
	if (!ends_flow(last)) {
		r = push_insn(c, &x);
		if (r < 0)
			return r;
		x->off = in->len;
		x->kind = K_TAIL;
		x->target = in->orig_addr + in->len;
		x->field_off = 1;
		x->field_size = 4;
		x->wide_len = JMP32_LEN;
		c->flags |= COPIER_F_TAIL_JMP;
	}
	return 0;
}

static bool find_insn(const struct copier *c, uint32_t off, uint32_t *ret_idx)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->v[mid].off == off && c->v[mid].kind != K_TAIL) {
			*ret_idx = mid;
			return true;
		}
		if (c->v[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static int resolve(struct copier *c, struct copier_refusal *why)
{
	for (size_t i = 0; i < c->n; i++) {
		struct insn *x = &c->v[i];
		uint64_t to;

		if (x->kind == K_PLAIN || x->kind == K_RIPMEM)
			continue;
		if (x->kind != K_TAIL && in_function(c, x->target)) {
			if (in_patch_interior(c, x->target))
				return refuse(why, COPIER_BRANCH_INTO_ENTRY_PATCH, x->off,
					      x->target);
			if (!find_insn(c, x->target - c->in->orig_addr, &x->target_idx))
				return refuse(why, COPIER_BRANCH_INTO_INSN, x->off, x->target);
			x->internal = true;
			continue;
		}
		x->new_target = x->target;
		/* xbegin's abort target is no call or jump to another function. */
		if (c->in->redirect && x->kind != K_REL32) {
			to = c->in->redirect(c->in->redirect_ctx, x->target);
			if (to) {
				x->new_target = to;
				x->redirected = true;
				c->flags |= COPIER_F_REDIRECTED;
			}
		}
		if (x->field_size == 1)
			x->wide = true;
	}
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].kind == K_RIPMEM)
			c->v[i].new_target = c->v[i].target;
	return 0;
}

/* The absolute target the copy's field must encode. */
static uint64_t copy_target(const struct copier *c, const struct insn *x)
{
	if (x->internal)
		return c->in->dest_addr + c->v[x->target_idx].new_off;
	return x->new_target;
}

static int layout(struct copier *c, struct copier_refusal *why)
{
	bool changed;

	do {
		uint64_t off = 0;

		for (size_t i = 0; i < c->n; i++) {
			struct insn *x = &c->v[i];

			if (x->wide && !x->wide_len)
				return refuse(why, COPIER_UNSUPPORTED, x->off, x->target);
			x->new_off = off;
			x->new_len = x->wide || x->kind == K_TAIL ? x->wide_len : x->len;
			off += x->new_len;
		}
		if (off > UINT32_MAX)
			return refuse(why, COPIER_TOO_LARGE, 0, 0);
		c->size = off;

		changed = false;
		for (size_t i = 0; i < c->n; i++) {
			struct insn *x = &c->v[i];

			if (!x->internal || x->wide || x->field_size != 1)
				continue;
			if (!fits((int64_t)c->v[x->target_idx].new_off - (x->new_off + x->new_len),
				  1)) {
				x->wide = true;
				changed = true;
			}
		}
	} while (changed);

	for (size_t i = 0; i < c->n; i++) {
		const struct insn *x = &c->v[i];
		uint64_t base = c->in->dest_addr + x->new_off + x->new_len;

		if (x->kind == K_PLAIN || x->internal)
			continue;
		if (!fits(distance(x->new_target, base), 4))
			return refuse(why, COPIER_OUT_OF_REACH, x->off, x->new_target);
	}
	return 0;
}

static int emit(struct copier *c, uint8_t *out)
{
	const struct copier_input *in = c->in;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

	for (size_t i = 0; i < c->n; i++) {
		const struct insn *x = &c->v[i];
		uint8_t *p = out + x->new_off;
		uint64_t at = in->dest_addr + x->new_off;
		uint64_t to = copy_target(c, x);
		size_t len, len2;
		int r;

		if (x->kind == K_TAIL) {
			r = encode_jmp(p, x->new_len, at, to, false, &len);
			if (r < 0 || len != x->new_len)
				return -EPROTO;
			continue;
		}
		if (x->kind == K_LOOP && x->wide) {
			/* loopcc L1; jmp L2; L1: jmp target; L2: -- rel32 reach when taken. */
			memcpy(p, in->code + x->off, x->len);
			put_field(p + x->field_off, 1, LOOP_SKIP_LEN);
			r = encode_jmp(p + x->len, LOOP_SKIP_LEN, at + x->len, at + x->new_len,
				       true, &len);
			if (r < 0 || len != LOOP_SKIP_LEN)
				return -EPROTO;
			r = encode_jmp(p + x->len + len, JMP32_LEN, at + x->len + len, to, false,
				       &len2);
			if (r < 0 || x->len + len + len2 != x->new_len)
				return -EPROTO;
			continue;
		}
		if (x->wide) {
			if (ZYAN_FAILED(ZydisDecoderDecodeFull(&c->dec, in->code + x->off, x->len,
							       &zi, ops)))
				return -EPROTO;
			r = encode_wide_branch(&zi, ops, at, to, p, x->new_len, &len);
			if (r < 0 || len != x->new_len)
				return -EPROTO;
			continue;
		}
		memcpy(p, in->code + x->off, x->len);
		if (x->kind != K_PLAIN)
			put_field(p + x->field_off, x->field_size, distance(to, at + x->new_len));
	}
	return 0;
}

static int build_result(const struct copier *c, struct copier_result **ret)
{
	struct copier_result *r = calloc(1, sizeof(*r));
	size_t nr = 0;

	if (!r)
		return -ENOMEM;
	r->orig_addr = c->in->orig_addr;
	r->orig_len = c->in->len;
	r->dest_addr = c->in->dest_addr;
	r->size = c->size;
	r->entry_patch_off = c->patch_off;
	r->flags = c->flags;
	r->map = calloc(c->n, sizeof(*r->map));
	r->relocs = calloc(c->n, sizeof(*r->relocs));
	if (!r->map || !r->relocs) {
		copier_result_free(r);
		return -ENOMEM;
	}
	r->n_map = c->n;
	for (size_t i = 0; i < c->n; i++) {
		const struct insn *x = &c->v[i];
		struct copier_reloc *rel;

		r->map[i].orig_off = x->off;
		r->map[i].copy_off = x->new_off;
		r->map[i].orig_len = x->len;
		r->map[i].copy_len = x->new_len;
		if (x->kind == K_PLAIN)
			continue;
		if (x->wide)
			r->flags |= COPIER_F_WIDENED;
		rel = &r->relocs[nr++];
		rel->base_off = x->new_off + x->new_len;
		if (x->wide || x->kind == K_TAIL) {
			/* Every rel32 form the copier emits ends in its field. */
			rel->insn_off = x->kind == K_LOOP ? rel->base_off - JMP32_LEN : x->new_off;
			rel->field_off = rel->base_off - 4;
			rel->size = 4;
		} else {
			rel->insn_off = x->new_off;
			rel->field_off = x->new_off + x->field_off;
			rel->size = x->field_size;
		}
		rel->kind = x->kind == K_CALL	  ? COPIER_RELOC_CALL
			    : x->kind == K_RIPMEM ? COPIER_RELOC_RIPMEM
						  : COPIER_RELOC_BRANCH;
		rel->target_kind = x->internal	   ? COPIER_TARGET_INTERNAL
				   : x->redirected ? COPIER_TARGET_REDIRECTED
						   : COPIER_TARGET_EXTERNAL;
		rel->target = copy_target(c, x);
		rel->orig_target = x->target;
	}
	r->n_relocs = nr;
	*ret = r;
	return 0;
}

/*
 * Decodes every relocated instruction of the copy back and checks that it
 * has the length the map says and that its field, as the CPU reads it, names
 * the record's target. Catches an encoder that chose another form.
 */
static int verify(const struct copier *c, const uint8_t *out, const struct copier_result *r)
{
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

	for (size_t i = 0; i < r->n_relocs; i++) {
		const struct copier_reloc *rel = &r->relocs[i];
		uint64_t at = r->dest_addr + rel->insn_off;
		uint64_t abs = 0;
		bool found = false;

		if (ZYAN_FAILED(ZydisDecoderDecodeFull(&c->dec, out + rel->insn_off,
						       r->size - rel->insn_off, &zi, ops)))
			return -EPROTO;
		if (rel->insn_off + zi.length != rel->base_off)
			return -EPROTO;
		if (r->dest_addr + rel->base_off + get_field(out + rel->field_off, rel->size) !=
		    rel->target)
			return -EPROTO;
		for (unsigned k = 0; k < zi.operand_count && !found; k++) {
			const ZydisDecodedOperand *op = &ops[k];

			if ((op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op->imm.is_relative) ||
			    (op->type == ZYDIS_OPERAND_TYPE_MEMORY &&
			     op->mem.base == ZYDIS_REGISTER_RIP))
				found = ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&zi, op, at, &abs));
		}
		if (!found || abs != rel->target)
			return -EPROTO;
	}
	return 0;
}

int copier_copy(const struct copier_input *in, uint8_t *out, struct copier_result **ret_result,
		struct copier_refusal *why)
{
	struct copier c = {.in = in};
	struct copier_result *res = NULL;
	int r;

	if (!in || !in->code || !ret_result || in->orig_addr + in->len < in->orig_addr ||
	    in->dest_addr + in->dest_cap < in->dest_addr)
		return -EINVAL;
	if (in->len > COPIER_MAX_LEN)
		return refuse(why, COPIER_TOO_LARGE, 0, 0);
	if (in->len < COPIER_ENTRY_PATCH_LEN)
		return refuse(why, COPIER_TOO_SMALL, 0, 0);
	if (ZYAN_FAILED(ZydisDecoderInit(&c.dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
		return -EPROTO;

	r = decode_all(&c, why);
	if (r == 0)
		r = resolve(&c, why);
	if (r == 0)
		r = layout(&c, why);
	if (r == 0 && c.size > in->dest_cap) {
		r = refuse(why, COPIER_NO_ROOM, 0, 0);
		if (why)
			why->size_needed = c.size;
	}
	if (r == 0 && out)
		r = emit(&c, out);
	if (r == 0)
		r = build_result(&c, &res);
	if (r == 0 && out)
		r = verify(&c, out, res);
	free(c.v);
	if (r < 0) {
		copier_result_free(res);
		return r;
	}
	*ret_result = res;
	return 0;
}

int copier_relocate(uint8_t *code, struct copier_result *r, uint64_t moved_start,
		    uint64_t moved_end, int64_t delta)
{
	uint64_t start, end, new_dest;
	bool moves;

	if (!code || !r || moved_start > moved_end)
		return -EINVAL;
	start = r->dest_addr;
	end = r->dest_addr + r->size;
	moves = start >= moved_start && end <= moved_end;
	if (!moves && start < moved_end && end > moved_start)
		return -EINVAL;
	new_dest = moves ? start + (uint64_t)delta : start;

	/* All or nothing: check every field before writing any. */
	for (size_t i = 0; i < r->n_relocs; i++) {
		const struct copier_reloc *rel = &r->relocs[i];
		uint64_t t = rel->target;

		if (rel->target_kind == COPIER_TARGET_INTERNAL)
			continue;
		if (t >= moved_start && t < moved_end)
			t += (uint64_t)delta;
		if (!fits(distance(t, new_dest + rel->base_off), rel->size))
			return -ERANGE;
	}
	for (size_t i = 0; i < r->n_relocs; i++) {
		struct copier_reloc *rel = &r->relocs[i];

		if (rel->target_kind == COPIER_TARGET_INTERNAL) {
			rel->target += new_dest - start;
			continue;
		}
		if (rel->target >= moved_start && rel->target < moved_end)
			rel->target += (uint64_t)delta;
		put_field(code + rel->field_off, rel->size,
			  distance(rel->target, new_dest + rel->base_off));
	}
	r->dest_addr = new_dest;
	return 0;
}

int copier_orig_to_copy(const struct copier_result *r, uint64_t orig, uint64_t *ret_copy)
{
	size_t lo = 0, hi;
	uint64_t off;

	if (!r || orig - r->orig_addr >= r->orig_len)
		return -ENOENT;
	off = orig - r->orig_addr;
	hi = r->n_map;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->map[mid].orig_off == off && r->map[mid].orig_len) {
			*ret_copy = r->dest_addr + r->map[mid].copy_off;
			return 0;
		}
		if (r->map[mid].orig_off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -EINVAL;
}

int copier_copy_to_orig(const struct copier_result *r, uint64_t copy, uint64_t *ret_orig)
{
	size_t lo = 0, hi;
	uint64_t off;

	if (!r || copy - r->dest_addr >= r->size)
		return -ENOENT;
	off = copy - r->dest_addr;
	hi = r->n_map;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->map[mid].copy_off == off) {
			*ret_orig = r->orig_addr + r->map[mid].orig_off;
			return 0;
		}
		if (r->map[mid].copy_off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -EINVAL;
}

void copier_result_free(struct copier_result *r)
{
	if (!r)
		return;
	free(r->map);
	free(r->relocs);
	free(r);
}

int copier_branch_targets(const uint8_t *code, uint64_t addr, size_t len, uint64_t **targets,
			  size_t *n, size_t *cap)
{
	ZydisDecoder dec;
	size_t off = 0;

	if (ZYAN_FAILED(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
		return -EIO;
	while (off < len) {
		ZydisDecodedInstruction zi;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

		if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, code + off, len - off, &zi, ops))) {
			off++; /* data or padding: resynchronise on the next byte */
			continue;
		}
		bool branch = zi.meta.category == ZYDIS_CATEGORY_COND_BR ||
			      zi.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
			      zi.meta.category == ZYDIS_CATEGORY_CALL;
		if (branch && zi.operand_count_visible > 0 &&
		    ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[0].imm.is_relative) {
			uint64_t target = 0;
			if (ZYAN_SUCCESS(
				ZydisCalcAbsoluteAddress(&zi, &ops[0], addr + off, &target))) {
				if (*n == *cap) {
					size_t ncap = *cap ? *cap * 2 : 1024;
					uint64_t *v = realloc(*targets, ncap * sizeof(*v));
					if (!v)
						return -ENOMEM;
					*targets = v;
					*cap = ncap;
				}
				(*targets)[(*n)++] = target;
			}
		}
		off += zi.length;
	}
	return 0;
}

int copier_plt_slot(const uint8_t *code, size_t len, uint64_t addr, uint64_t *ret_slot)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	size_t off = 0;

	if (ZYAN_FAILED(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
		return -EIO;
	if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, code, len, &zi, ops)))
		return -ENOTSUP;
	if (zi.mnemonic == ZYDIS_MNEMONIC_ENDBR64) {
		off = zi.length;
		if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, code + off, len - off, &zi, ops)))
			return -ENOTSUP;
	}
	/* jmp qword ptr [rip + disp32]: one memory operand, RIP-based, no index. */
	if (zi.mnemonic != ZYDIS_MNEMONIC_JMP || zi.operand_count_visible != 1 ||
	    ops[0].type != ZYDIS_OPERAND_TYPE_MEMORY || ops[0].mem.base != ZYDIS_REGISTER_RIP ||
	    ops[0].mem.index != ZYDIS_REGISTER_NONE || ops[0].size != 64 ||
	    ops[0].mem.segment != ZYDIS_REGISTER_DS || zi.address_width != 64)
		return -ENOTSUP;
	if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(&zi, &ops[0], addr + off, ret_slot)))
		return -ENOTSUP;
	return 0;
}
