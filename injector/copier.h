/*
 * The copier: copies one function's machine code to a new address so that the
 * copy behaves like the original. Pure transformation of bytes: no process
 * access, no syscalls, so it is tested by executing copies in the test itself.
 *
 * Every instruction is decoded with Zydis. Instructions without a relative
 * operand are kept byte for byte. Relative operands (jmp/jcc rel8 and rel32,
 * call rel32, loop/loope/loopne/jrcxz/jecxz, xbegin, and RIP-relative memory
 * operands of every kind, with or without an immediate after them) are
 * rewritten for the new address: the displacement field is patched in place
 * at the offset Zydis decoded, or, where a short branch no longer reaches, the
 * branch is widened (new bytes from Zydis's encoder). Branches to the
 * function's own instructions go to the copy's instructions; everything else
 * keeps its original absolute target, except direct calls and jumps that the
 * caller's redirect callback sends to another copy.
 *
 * Every operand that leaves the copy is a 32-bit field in the result, so a
 * later move of the copy never re-encodes anything: copier_relocate() walks the
 * relocation records and rewrites the fields.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The entry patch optd writes over the original: jmp rel32. */
#define COPIER_ENTRY_PATCH_LEN 5
/* Functions longer than this are refused (COPIER_TOO_LARGE); offsets fit in 32 bits. */
#define COPIER_MAX_LEN (16U << 20)

/* Why a function cannot be copied safely. */
enum copier_reason {
	COPIER_OK = 0,
	COPIER_UNDECODABLE,	 /* bytes that are no instruction: data in the code, or truncated */
	COPIER_BRANCH_INTO_INSN, /* a branch to the middle of one of the function's instructions */
	COPIER_BRANCH_INTO_ENTRY_PATCH, /* a branch into the bytes the entry patch overwrites */
	COPIER_RETURN_INTO_ENTRY_PATCH, /* a call whose return address lies in those bytes */
	COPIER_RIP_INTO_ENTRY_PATCH,	/* a RIP-relative operand that refers to those bytes */
	COPIER_CALL_NEXT,    /* call to the next instruction: reads its own address as data */
	COPIER_EIP_RELATIVE, /* 32-bit (addr32) RIP-relative addressing */
	COPIER_UNSUPPORTED,  /* a relative form not rewritten (rel16, 0x66 on a branch) */
	COPIER_OUT_OF_REACH, /* a rel32/disp32 target the copy cannot reach from dest_addr */
	COPIER_TOO_SMALL,    /* shorter than the entry patch */
	COPIER_TOO_LARGE,    /* longer than COPIER_MAX_LEN */
	COPIER_NO_ROOM,	     /* the copy does not fit in dest_cap */
};

/* A stable lower_snake_case name for r ("undecodable", "out_of_reach", ...). */
const char *copier_reason_to_string(enum copier_reason r);

/* Where and why copier_copy() refused. */
struct copier_refusal {
	enum copier_reason reason;
	uint32_t orig_off;  /* offending instruction, from the function's start */
	uint64_t target;    /* the address it refers to, when it refers to one; else 0 */
	size_t size_needed; /* COPIER_NO_ROOM: bytes the copy needs */
};

struct copier_input {
	const uint8_t *code; /* the function's bytes as they are at orig_addr */
	uint64_t orig_addr;
	size_t len;	    /* the function's length: [orig_addr, orig_addr + len) */
	uint64_t dest_addr; /* where the copy will execute */
	size_t dest_cap;    /* bytes available at out / dest_addr */

	/*
	 * Optional. Asked for the target of every direct call and direct jump
	 * (jmp, jcc, loop family, and the jmp appended after a last instruction
	 * that falls through) that leaves the function, with the target's
	 * original address. Returns the address to use instead (the copy of a
	 * copied function, or the resolved function behind a PLT stub), or 0 to
	 * keep the original target. Executing at the returned address must be
	 * equivalent to executing at the target. Calls within the function
	 * (recursion) always go to the copy without asking.
	 */
	uint64_t (*redirect)(void *ctx, uint64_t target);
	void *redirect_ctx;
};

/* One instruction of the original and what it became in the copy. */
struct copier_map_entry {
	uint32_t orig_off;
	uint32_t copy_off;
	uint8_t orig_len; /* 0 for the jump appended after a last instruction that falls through */
	uint8_t copy_len;
};

enum copier_reloc_kind {
	COPIER_RELOC_BRANCH = 1, /* jmp, jcc, loop family (rel32 jmp of an expansion), xbegin */
	COPIER_RELOC_CALL,	 /* call rel32 */
	COPIER_RELOC_RIPMEM,	 /* disp32 of a RIP-relative memory operand (lea included) */
};

enum copier_target_kind {
	COPIER_TARGET_INTERNAL = 1, /* one of this copy's instructions: moves with the copy */
	COPIER_TARGET_EXTERNAL,	    /* the original target (code or data), outside the copy */
	COPIER_TARGET_REDIRECTED,   /* the address the redirect callback gave */
};

/*
 * One relative field of the copy. The field holds target - (copy address of
 * base_off), as the CPU computes it from the end of the instruction (which,
 * for an instruction with an immediate after a disp32, is not the field's end).
 */
struct copier_reloc {
	uint32_t insn_off;    /* copy offset of the instruction holding the field */
	uint32_t field_off;   /* copy offset of the field */
	uint32_t base_off;    /* copy offset the field is relative to: the instruction's end */
	uint8_t size;	      /* 1 (internal short branches only) or 4 */
	uint8_t kind;	      /* enum copier_reloc_kind */
	uint8_t target_kind;  /* enum copier_target_kind */
	uint64_t target;      /* absolute target as the copy's bytes currently encode it */
	uint64_t orig_target; /* what the original operand referred to */
};

enum copier_flags {
	/* A jmp through a register or memory (other than a RIP-relative pointer):
	 * a jump table, a computed goto or a tail call through a pointer. Control
	 * may continue in the original function. */
	COPIER_F_INDIRECT_JUMP = 1u << 0,
	/* Heuristic, errs towards yes: that jmp looks like table dispatch (a
	 * switch's jump table, a computed goto's label array): an indexed memory
	 * operand, notrack, or a jmp through a register in a function that loads
	 * with an index register. The table's targets are in the original code:
	 * the copy works but may continue in the original. */
	COPIER_F_JUMP_TABLE = 1u << 1,
	COPIER_F_INDIRECT_CALL = 1u << 2,
	/* A RIP-relative operand refers into the original function (a label's
	 * address, code read as data). It keeps referring to the original. */
	COPIER_F_SELF_REFERENCE = 1u << 3,
	COPIER_F_WIDENED = 1u << 4,    /* some short branch became rel32 (or an expansion) */
	COPIER_F_REDIRECTED = 1u << 5, /* some target came from the redirect callback */
	/* The last instruction may fall through; a jmp to orig_addr + len follows it. */
	COPIER_F_TAIL_JMP = 1u << 6,
};

struct copier_result {
	uint64_t orig_addr;
	size_t orig_len;
	uint64_t dest_addr; /* where the copy is; copier_relocate() updates it */
	size_t size;	    /* bytes of the copy */
	/* 0, or 4 after an endbr64: where the entry patch goes in the original.
	 * The copy keeps the same offset: the patch must jump to dest_addr + this. */
	uint32_t entry_patch_off;
	uint32_t flags; /* enum copier_flags */
	size_t n_map;	/* ordered by both orig_off and copy_off */
	struct copier_map_entry *map;
	size_t n_relocs; /* ordered by field_off */
	struct copier_reloc *relocs;
};

/*
 * Copies in->code (the function at in->orig_addr) for execution at
 * in->dest_addr, writing the copy to out (in->dest_cap bytes, caller-owned).
 * out may be NULL for a dry run: the same analysis, layout and refusals, no
 * bytes written (a dry run still needs dest_addr, since widening and reach
 * depend on it).
 *
 * Returns 0 and *ret_result (free with copier_result_free()); -ENOTSUP when
 * the copy cannot be proven safe, with *why (may be NULL) naming the reason
 * and the instruction; -EINVAL for a malformed input; -ENOMEM; -EPROTO if the
 * copier's own check of what it emitted fails (a bug).
 */
int copier_copy(const struct copier_input *in, uint8_t *out, struct copier_result **ret_result,
		struct copier_refusal *why);

/*
 * Re-applies r's relocation records after a move: everything that was in
 * [moved_start, moved_end) is now delta bytes further. The copy must lie
 * wholly inside that range (it moved) or wholly outside (it stayed; only
 * targets moved, e.g. other copies it calls). code holds the copy's r->size
 * bytes, wherever the caller keeps them; its fields are rewritten so that
 * each keeps referring to its target, moved or not. Internal fields never
 * change.
 *
 * Returns 0, having updated code, r->dest_addr and each record's target;
 * -ERANGE if some field could no longer reach its target (code and r are
 * then unchanged); -EINVAL if the copy straddles the range's edge.
 */
int copier_relocate(uint8_t *code, struct copier_result *r, uint64_t moved_start,
		    uint64_t moved_end, int64_t delta);

/*
 * Address translation through the map, at instruction boundaries only (a
 * thread's IP or a return address). A copy address inside an expansion (a
 * widened loop/jrcxz) has no original equivalent. 0 and *ret; -ENOENT if the
 * address is outside the function or copy; -EINVAL if it is not the start of
 * a mapped instruction.
 */
int copier_orig_to_copy(const struct copier_result *r, uint64_t orig, uint64_t *ret_copy);
int copier_copy_to_orig(const struct copier_result *r, uint64_t copy, uint64_t *ret_orig);

/* Accepts NULL. */
void copier_result_free(struct copier_result *r);

/*
 * Appends to *targets (growing it; *n entries of *cap) the target of every
 * direct branch and call found by a linear decode of [addr, addr + len).
 * Used to find branches from anywhere in a module into the bytes that an
 * entry patch would overwrite. 0, -ENOMEM, -EIO.
 */
int copier_branch_targets(const uint8_t *code, uint64_t addr, size_t len, uint64_t **targets,
			  size_t *n, size_t *cap);

/*
 * The GOT slot a PLT entry at addr jumps through. Understands the stub
 * shapes ld emits for x86-64: `jmp *slot(%rip)` (.plt entries, whose push and
 * jmp to PLT0 follow, and .plt.got), each optionally after `endbr64` and
 * with a `bnd` prefix (.plt.sec with IBT/MPX). code holds len bytes from
 * addr. 0 and *ret_slot; -ENOTSUP for any other shape (PLT0, padding).
 */
int copier_plt_slot(const uint8_t *code, size_t len, uint64_t addr, uint64_t *ret_slot);
