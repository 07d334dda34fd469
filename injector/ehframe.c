/*
 * Unwind info for copies (what and why: ehframe.h).
 *
 * libdw frames the original CIE and FDE (dwarf_next_cfi over the caller's
 * bytes); ehenc.c decodes their pointers and augmentation; what is left here
 * is the CFA program, walked one instruction at a time with its exact
 * operands, and the DWARF expressions inside it, walked one operation at a
 * time. Every entry is built in a scratch buffer and appended only when it
 * is complete, so a refusal leaves the builder as it was.
 *
 * The output's CIE pointers are relative and every address is absolute, so
 * the bytes do not depend on where the section is placed. They do depend on
 * where the copies are: after copier_relocate() moves one, its FDE is built
 * again.
 */
#include <dwarf.h>
#include <elf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ehenc.h"
#include "ehframe.h"
#include "util.h"

/* libgcc reads CIEs and FDEs as structures aligned to a pointer. */
#define ENTRY_ALIGN 8
/* rip's DWARF register number on x86-64 (also the return address column). */
#define REG_RIP 16
/* Longest DWARF expression checked; gcc's are a few bytes. */
#define EXPR_MAX 4096
/* A CIE pointer or length of 0xffffffff introduces 64-bit DWARF, which libgcc does not read. */
#define DWARF64_ESCAPE 0xffffffffU

/* ---- a growing byte buffer; a failed allocation sticks in err ---- */

struct buf {
	uint8_t *p;
	size_t n, cap;
	int err;
};

static void put(struct buf *b, const void *v, size_t n)
{
	if (b->err)
		return;
	if (n > b->cap - b->n) {
		size_t ncap = b->cap ? b->cap : 256;
		uint8_t *p;

		while (ncap - b->n < n) {
			if (ncap > SIZE_MAX / 2) {
				b->err = -ENOMEM;
				return;
			}
			ncap *= 2;
		}
		p = realloc(b->p, ncap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = ncap;
	}
	memcpy(b->p + b->n, v, n);
	b->n += n;
}

static void put_u8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put_u16(struct buf *b, uint16_t v)
{
	put(b, &v, 2);
}

static void put_u32(struct buf *b, uint32_t v)
{
	put(b, &v, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
	put(b, &v, 8);
}

static void put_uleb(struct buf *b, uint64_t v)
{
	do {
		uint8_t byte = v & 0x7f;

		v >>= 7;
		put_u8(b, byte | (v ? 0x80 : 0));
	} while (v);
}

static void put_sleb(struct buf *b, int64_t v)
{
	for (;;) {
		uint8_t byte = v & 0x7f;
		bool done;

		v >>= 7; /* arithmetic: gcc defines it for negative values */
		done = (v == 0 && !(byte & 0x40)) || (v == -1 && (byte & 0x40));
		put_u8(b, byte | (done ? 0 : 0x80));
		if (done)
			return;
	}
}

/* Ends the entry that b holds from its first byte: pads it with DW_CFA_nop, sets its length. */
static void finish_entry(struct buf *b)
{
	uint32_t len;

	while (!b->err && b->n % ENTRY_ALIGN)
		put_u8(b, DW_CFA_nop);
	if (b->err)
		return;
	if (b->n - 4 >= DWARF64_ESCAPE) {
		b->err = -E2BIG;
		return;
	}
	len = (uint32_t)(b->n - 4);
	memcpy(b->p, &len, 4);
}

/* ---- the builder ---- */

struct cie {
	uint64_t key; /* run-time address of the original CIE */
	size_t off;   /* in cies */
};

struct fde {
	size_t off; /* in fdes */
	size_t cie; /* index of its struct cie */
};

struct ehframe_builder {
	struct buf cies, fdes;	       /* the entries' bytes */
	struct buf cie_recs, fde_recs; /* struct cie, struct fde */
};

static size_t n_cies(const struct ehframe_builder *b)
{
	return b->cie_recs.n / sizeof(struct cie);
}

static size_t n_fdes(const struct ehframe_builder *b)
{
	return b->fde_recs.n / sizeof(struct fde);
}

/* realloc() aligns for any type: the records can be read in place. */
static const struct cie *cie_rec(const struct ehframe_builder *b, size_t i)
{
	return (const struct cie *)(const void *)b->cie_recs.p + i;
}

static const struct fde *fde_rec(const struct ehframe_builder *b, size_t i)
{
	return (const struct fde *)(const void *)b->fde_recs.p + i;
}

const char *ehframe_reason_to_string(enum ehframe_reason r)
{
	switch (r) {
	case EHFRAME_OK:
		return "ok";
	case EHFRAME_MALFORMED:
		return "malformed";
	case EHFRAME_UNSUPPORTED_AUG:
		return "unsupported_aug";
	case EHFRAME_UNSUPPORTED_CFI:
		return "unsupported_cfi";
	case EHFRAME_FDE_MISMATCH:
		return "fde_mismatch";
	case EHFRAME_CFI_MID_INSN:
		return "cfi_mid_insn";
	case EHFRAME_CFI_USES_IP:
		return "cfi_uses_ip";
	case EHFRAME_LSDA_LAYOUT:
		return "lsda_layout";
	}
	return "unknown";
}

int ehframe_builder_new(struct ehframe_builder **ret)
{
	struct ehframe_builder *b;

	if (!ret)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*ret = b;
	return 0;
}

void ehframe_builder_free(struct ehframe_builder *b)
{
	if (!b)
		return;
	free(b->cies.p);
	free(b->fdes.p);
	free(b->cie_recs.p);
	free(b->fde_recs.p);
	free(b);
}

size_t ehframe_count(const struct ehframe_builder *b)
{
	return b ? n_fdes(b) : 0;
}

size_t ehframe_size(const struct ehframe_builder *b)
{
	return (b ? b->cies.n + b->fdes.n : 0) + 4;
}

/* ---- DWARF expressions ---- */

static bool bit(const uint8_t *set, size_t i)
{
	return set[i / 8] & (1u << (i % 8));
}

static void set_bit(uint8_t *set, size_t i)
{
	set[i / 8] |= (uint8_t)(1u << (i % 8));
}

/*
 * Checks an expression that is kept byte for byte: every operation is one
 * libgcc's unwinder evaluates, none reads rip, and every branch lands on an
 * operation (a branch into an operand could hide one).
 */
static enum ehframe_reason check_expr(const uint8_t *p, const uint8_t *end)
{
	uint8_t starts[EXPR_MAX / 8 + 1] = {0}, targets[EXPR_MAX / 8 + 1] = {0};
	const uint8_t *start = p;
	size_t len = (size_t)(end - p);

	if (len > EXPR_MAX)
		return EHFRAME_UNSUPPORTED_CFI;
	while (p < end) {
		uint8_t op = *p++;
		uint64_t u;
		int64_t s;
		size_t n = 0;

		set_bit(starts, (size_t)(p - 1 - start));
		if (op == DW_OP_reg0 + REG_RIP || op == DW_OP_breg0 + REG_RIP)
			return EHFRAME_CFI_USES_IP;
		if ((op >= DW_OP_lit0 && op <= DW_OP_lit31) ||
		    (op >= DW_OP_reg0 && op <= DW_OP_reg31))
			continue;
		if (op >= DW_OP_breg0 && op <= DW_OP_breg31) {
			if (!ehenc_read_sleb(&p, end, &s))
				return EHFRAME_MALFORMED;
			continue;
		}
		switch (op) {
		case DW_OP_deref:
		case DW_OP_dup:
		case DW_OP_drop:
		case DW_OP_over:
		case DW_OP_swap:
		case DW_OP_rot:
		case DW_OP_abs:
		case DW_OP_and:
		case DW_OP_div:
		case DW_OP_minus:
		case DW_OP_mod:
		case DW_OP_mul:
		case DW_OP_neg:
		case DW_OP_not:
		case DW_OP_or:
		case DW_OP_plus:
		case DW_OP_shl:
		case DW_OP_shr:
		case DW_OP_shra:
		case DW_OP_xor:
		case DW_OP_eq:
		case DW_OP_ge:
		case DW_OP_gt:
		case DW_OP_le:
		case DW_OP_lt:
		case DW_OP_ne:
		case DW_OP_nop:
			break;
		case DW_OP_const1u:
		case DW_OP_const1s:
		case DW_OP_pick:
		case DW_OP_deref_size:
			n = 1;
			break;
		case DW_OP_const2u:
		case DW_OP_const2s:
			n = 2;
			break;
		case DW_OP_const4u:
		case DW_OP_const4s:
			n = 4;
			break;
		case DW_OP_addr: /* an absolute address: the same for the copy */
		case DW_OP_const8u:
		case DW_OP_const8s:
			n = 8;
			break;
		case DW_OP_constu:
		case DW_OP_plus_uconst:
			if (!ehenc_read_uleb(&p, end, &u))
				return EHFRAME_MALFORMED;
			break;
		case DW_OP_consts:
			if (!ehenc_read_sleb(&p, end, &s))
				return EHFRAME_MALFORMED;
			break;
		case DW_OP_regx:
			if (!ehenc_read_uleb(&p, end, &u))
				return EHFRAME_MALFORMED;
			if (u == REG_RIP)
				return EHFRAME_CFI_USES_IP;
			break;
		case DW_OP_bregx:
			if (!ehenc_read_uleb(&p, end, &u) || !ehenc_read_sleb(&p, end, &s))
				return EHFRAME_MALFORMED;
			if (u == REG_RIP)
				return EHFRAME_CFI_USES_IP;
			break;
		case DW_OP_bra:
		case DW_OP_skip: {
			int16_t d;
			int64_t to;

			if (end - p < 2)
				return EHFRAME_MALFORMED;
			memcpy(&d, p, 2);
			p += 2;
			to = (p - start) + d;
			if (to < 0 || (uint64_t)to > len)
				return EHFRAME_MALFORMED;
			set_bit(targets, (size_t)to);
			break;
		}
		default:
			/* Pieces, calls, TLS, typed and GNU operations: nothing an unwinder
			 * evaluates (DW_OP_GNU_encoded_addr would be, but it may be pcrel). */
			return EHFRAME_UNSUPPORTED_CFI;
		}
		if ((size_t)(end - p) < n)
			return EHFRAME_MALFORMED;
		p += n;
	}
	set_bit(starts, len);
	for (size_t i = 0; i <= len; i++)
		if (bit(targets, i) && !bit(starts, i))
			return EHFRAME_MALFORMED;
	return EHFRAME_OK;
}

/* ---- the CFA program ---- */

/* The run-time address of p, a byte of src. */
static uint64_t addr_of(const struct ehframe_src *src, const uint8_t *p)
{
	return src->addr + (uint64_t)(p - src->data);
}

struct cfa_walk {
	const struct ehframe_src *src;
	/* NULL for a CIE's initial instructions, where no location may change. */
	const struct copier_result *res;
	uint64_t caf;
	uint8_t fde_enc;
	uint64_t orig_loc; /* current location, as an offset from the function's start */
	uint64_t copy_loc; /* the same in the copy */
};

/*
 * The copy's offset for the original's offset off, an instruction start or
 * the function's end. The end is the state after the last instruction: the
 * jmp the copier appended after a last instruction that falls through runs
 * in it; without that jmp, the end is the copy's end.
 */
static bool remap(const struct copier_result *res, uint64_t off, uint64_t *ret)
{
	uint64_t copy;

	if (off == res->orig_len) {
		if (res->n_map && res->map[res->n_map - 1].orig_len == 0)
			*ret = res->map[res->n_map - 1].copy_off;
		else
			*ret = res->size;
		return true;
	}
	if (copier_orig_to_copy(res, res->orig_addr + off, &copy) < 0)
		return false;
	*ret = copy - res->dest_addr;
	return true;
}

/* Moves the walk to the original's offset off and writes the advance the copy needs. */
static enum ehframe_reason advance_to(struct cfa_walk *w, uint64_t off, struct buf *out)
{
	uint64_t copy, units;

	if (!w->res)
		return EHFRAME_UNSUPPORTED_CFI; /* a location in a CIE */
	if (off < w->orig_loc || off > w->res->orig_len)
		return EHFRAME_MALFORMED;
	if (!remap(w->res, off, &copy))
		return EHFRAME_CFI_MID_INSN;
	/* The map is ordered by both offsets: the copy's location never goes back. */
	if (copy < w->copy_loc)
		return EHFRAME_MALFORMED;
	if ((copy - w->copy_loc) % w->caf)
		return EHFRAME_UNSUPPORTED_CFI;
	units = (copy - w->copy_loc) / w->caf;
	if (units < 0x40) {
		put_u8(out, DW_CFA_advance_loc | (uint8_t)units);
	} else if (units <= UINT8_MAX) {
		put_u8(out, DW_CFA_advance_loc1);
		put_u8(out, (uint8_t)units);
	} else if (units <= UINT16_MAX) {
		put_u8(out, DW_CFA_advance_loc2);
		put_u16(out, (uint16_t)units);
	} else if (units <= UINT32_MAX) {
		put_u8(out, DW_CFA_advance_loc4);
		put_u32(out, (uint32_t)units);
	} else {
		return EHFRAME_UNSUPPORTED_CFI;
	}
	w->orig_loc = off;
	w->copy_loc = copy;
	return EHFRAME_OK;
}

/* An advance of the original by units code alignment factors. */
static enum ehframe_reason advance_by(struct cfa_walk *w, uint64_t units, struct buf *out)
{
	uint64_t delta = units * w->caf;

	if (delta / w->caf != units || w->orig_loc + delta < w->orig_loc)
		return EHFRAME_MALFORMED;
	return advance_to(w, w->orig_loc + delta, out);
}

/* DW_CFA_set_loc: the address in the FDE's encoding, rewritten as the copy's absolute one. */
static enum ehframe_reason set_loc(struct cfa_walk *w, const uint8_t **p, const uint8_t *end,
				   struct buf *out)
{
	uint64_t addr, copy;

	if (!w->res)
		return EHFRAME_UNSUPPORTED_CFI;
	if (!ehenc_read_ptr(w->fde_enc, p, end, addr_of(w->src, *p), &addr))
		return EHFRAME_MALFORMED;
	if (addr < w->res->orig_addr || addr - w->res->orig_addr > w->res->orig_len)
		return EHFRAME_MALFORMED;
	if (!remap(w->res, addr - w->res->orig_addr, &copy))
		return EHFRAME_CFI_MID_INSN;
	put_u8(out, DW_CFA_set_loc);
	put_u64(out, w->res->dest_addr + copy);
	w->orig_loc = addr - w->res->orig_addr;
	w->copy_loc = copy;
	return EHFRAME_OK;
}

/* Steps over n LEB128 operands; refuses rip as operand rip_at (a register read, not written). */
static enum ehframe_reason operands(const uint8_t **p, const uint8_t *end, int n, int rip_at)
{
	for (int i = 0; i < n; i++) {
		uint64_t v;

		/* SLEB128 operands have the same length as ULEB128 ones. */
		if (!ehenc_read_uleb(p, end, &v))
			return EHFRAME_MALFORMED;
		if (i == rip_at && v == REG_RIP)
			return EHFRAME_CFI_USES_IP;
	}
	return EHFRAME_OK;
}

/* A block operand (an expression): its ULEB128 length, then the checked bytes. */
static enum ehframe_reason block(const uint8_t **p, const uint8_t *end)
{
	uint64_t len;
	enum ehframe_reason why;

	if (!ehenc_read_uleb(p, end, &len) || len > (uint64_t)(end - *p))
		return EHFRAME_MALFORMED;
	why = check_expr(*p, *p + len);
	*p += len;
	return why;
}

/*
 * Copies the CFA program [p, end) to out, remapping every location. An
 * instruction that does not move the location is copied byte for byte once
 * its operands are read and checked.
 */
static enum ehframe_reason walk_cfa(struct cfa_walk *w, const uint8_t *p, const uint8_t *end,
				    struct buf *out)
{
	while (p < end) {
		const uint8_t *insn = p;
		uint8_t op = *p++;
		enum ehframe_reason why = EHFRAME_OK;

		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
			why = advance_by(w, op & 0x3f, out);
			if (why)
				return why;
			continue;
		case DW_CFA_offset:
			why = operands(&p, end, 1, -1);
			break;
		case DW_CFA_restore:
			break;
		default:
			switch (op) {
			case DW_CFA_nop:
			case DW_CFA_remember_state:
			case DW_CFA_restore_state:
				break;
			case DW_CFA_set_loc:
				why = set_loc(w, &p, end, out);
				if (why)
					return why;
				continue;
			case DW_CFA_advance_loc1:
			case DW_CFA_advance_loc2:
			case DW_CFA_advance_loc4: {
				/* A 1-, 2- or 4-byte delta, little-endian like the host. */
				size_t n = op == DW_CFA_advance_loc1   ? 1
					   : op == DW_CFA_advance_loc2 ? 2
								       : 4;
				uint32_t units = 0;

				if ((size_t)(end - p) < n)
					return EHFRAME_MALFORMED;
				memcpy(&units, p, n);
				p += n;
				why = advance_by(w, units, out);
				if (why)
					return why;
				continue;
			}
			case DW_CFA_restore_extended:
			case DW_CFA_undefined:
			case DW_CFA_same_value:
			case DW_CFA_def_cfa_offset:
			case DW_CFA_def_cfa_offset_sf:
			case DW_CFA_GNU_args_size:
				why = operands(&p, end, 1, -1);
				break;
			case DW_CFA_def_cfa_register:
				why = operands(&p, end, 1, 0);
				break;
			case DW_CFA_offset_extended:
			case DW_CFA_offset_extended_sf:
			case DW_CFA_val_offset:
			case DW_CFA_val_offset_sf:
			case DW_CFA_GNU_negative_offset_extended:
				why = operands(&p, end, 2, -1);
				break;
			case DW_CFA_register: /* reg is in register reg2: reg2 must not be rip */
				why = operands(&p, end, 2, 1);
				break;
			case DW_CFA_def_cfa:
			case DW_CFA_def_cfa_sf:
				why = operands(&p, end, 2, 0);
				break;
			case DW_CFA_def_cfa_expression:
				why = block(&p, end);
				break;
			case DW_CFA_expression:
			case DW_CFA_val_expression:
				why = operands(&p, end, 1, -1);
				if (!why)
					why = block(&p, end);
				break;
			default:
				/* DW_CFA_GNU_window_save (SPARC, AArch64), vendor ones. */
				return EHFRAME_UNSUPPORTED_CFI;
			}
		}
		if (why)
			return why;
		put(out, insn, (size_t)(p - insn));
	}
	return EHFRAME_OK;
}

/* ---- reading the original ---- */

/* What ehframe_add() needs of the original CIE and FDE. */
struct orig {
	Dwarf_CIE cie;
	uint64_t cie_key; /* run-time address of the CIE */
	struct ehenc_cie_aug aug;
	uint64_t personality; /* absolute; with DW_EH_PE_indirect, the pointer's slot */
	uint64_t lsda;	      /* absolute, 0 for none */
	const uint8_t *insns, *insns_end;
};

static const unsigned char elf64_ident[EI_NIDENT] = {
    ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
};

/* The entry at off of src, framed by libdw; refuses 64-bit DWARF, which libgcc does not read. */
static enum ehframe_reason entry_at(const struct ehframe_src *src, uint64_t off,
				    Dwarf_CFI_Entry *ret)
{
	Elf_Data data = {
	    .d_buf = (void *)src->data,
	    .d_type = ELF_T_BYTE,
	    .d_size = src->size,
	    .d_version = EV_CURRENT,
	};
	Dwarf_Off next;
	uint32_t len;

	if (off >= src->size || src->size - off < 8)
		return EHFRAME_MALFORMED;
	memcpy(&len, src->data + off, 4);
	if (len == DWARF64_ESCAPE)
		return EHFRAME_UNSUPPORTED_CFI;
	if (dwarf_next_cfi(elf64_ident, &data, true, off, &next, ret) != 0)
		return EHFRAME_MALFORMED;
	return EHFRAME_OK;
}

/* A pointer of the augmentation, as the absolute value ehframe writes instead. */
static enum ehframe_reason aug_ptr(const struct ehframe_src *src, uint8_t enc, const uint8_t **p,
				   const uint8_t *end, uint64_t *ret)
{
	if (!ehenc_ptr_supported(enc))
		return EHFRAME_UNSUPPORTED_AUG;
	if (!ehenc_read_ptr(enc, p, end, addr_of(src, *p), ret))
		return EHFRAME_MALFORMED;
	return EHFRAME_OK;
}

static enum ehframe_reason read_orig(const struct ehframe_src *src, uint64_t fde_off,
				     const struct copier_result *res, struct orig *o)
{
	Dwarf_CFI_Entry fde, cie;
	const uint8_t *p, *end;
	uint64_t start, range, aug_len;
	enum ehframe_reason why;

	why = entry_at(src, fde_off, &fde);
	if (why)
		return why;
	if (dwarf_cfi_cie_p(&fde))
		return EHFRAME_MALFORMED;
	why = entry_at(src, fde.fde.CIE_pointer, &cie);
	if (why)
		return why;
	if (!dwarf_cfi_cie_p(&cie))
		return EHFRAME_MALFORMED;
	o->cie = cie.cie;
	o->cie_key = src->addr + fde.fde.CIE_pointer;
	if (o->cie.code_alignment_factor == 0)
		return EHFRAME_MALFORMED;

	if (!ehenc_cie_aug(&o->cie, &o->aug) || o->aug.other_letters ||
	    (o->aug.fde_enc & DW_EH_PE_indirect) || !ehenc_ptr_supported(o->aug.fde_enc))
		return EHFRAME_UNSUPPORTED_AUG;
	o->personality = 0;
	if (o->aug.per_enc != DW_EH_PE_omit) {
		p = o->aug.per;
		why = aug_ptr(src, o->aug.per_enc, &p,
			      o->cie.augmentation_data + o->cie.augmentation_data_size,
			      &o->personality);
		if (why)
			return why;
	}
	if (o->aug.lsda_enc != DW_EH_PE_omit && !ehenc_ptr_supported(o->aug.lsda_enc))
		return EHFRAME_UNSUPPORTED_AUG;

	p = fde.fde.start;
	end = fde.fde.end;
	if (!ehenc_read_ptr(o->aug.fde_enc, &p, end, addr_of(src, p), &start) ||
	    !ehenc_read_format(o->aug.fde_enc, &p, end, &range))
		return EHFRAME_MALFORMED;
	if (start != res->orig_addr || range != res->orig_len)
		return EHFRAME_FDE_MISMATCH;

	o->lsda = 0;
	if (o->aug.sized) {
		const uint8_t *data;

		if (!ehenc_read_uleb(&p, end, &aug_len) || aug_len > (uint64_t)(end - p))
			return EHFRAME_MALFORMED;
		data = p;
		p += aug_len;
		if (o->aug.lsda_enc != DW_EH_PE_omit) {
			why = aug_ptr(src, o->aug.lsda_enc, &data, p, &o->lsda);
			if (why)
				return why;
		}
	}
	o->insns = p;
	o->insns_end = end;
	return EHFRAME_OK;
}

/* True if every instruction of the copy is where it was in the original, with its length. */
static bool same_layout(const struct copier_result *res)
{
	for (size_t i = 0; i < res->n_map; i++) {
		const struct copier_map_entry *m = &res->map[i];

		if (m->orig_len && (m->copy_off != m->orig_off || m->copy_len != m->orig_len))
			return false;
	}
	return true;
}

/* ---- writing the copy's entries ---- */

/*
 * The new CIE: augmentation "zPLR" with the letters the original has (and R
 * always), absolute pointers; the original's factors, return address
 * register, 'S' and initial instructions (checked: they cannot hold a
 * location, and must not read rip).
 */
static enum ehframe_reason build_cie(const struct ehframe_src *src, const struct orig *o,
				     struct buf *out)
{
	struct cfa_walk w = {.src = src, .caf = o->cie.code_alignment_factor};
	bool per = o->aug.per_enc != DW_EH_PE_omit, lsda = o->aug.lsda_enc != DW_EH_PE_omit;
	/* Version 1 holds the return address register in a byte, version 3 in ULEB128. */
	bool v1 = o->cie.return_address_register <= UINT8_MAX;
	enum ehframe_reason why;
	char aug[8];
	size_t n = 0;

	aug[n++] = 'z';
	if (per)
		aug[n++] = 'P';
	if (lsda)
		aug[n++] = 'L';
	aug[n++] = 'R';
	if (o->aug.signal_frame)
		aug[n++] = 'S';
	aug[n++] = '\0';

	put_u32(out, 0); /* length, set by finish_entry() */
	put_u32(out, 0); /* CIE id */
	put_u8(out, v1 ? 1 : 3);
	put(out, aug, n);
	put_uleb(out, o->cie.code_alignment_factor);
	put_sleb(out, o->cie.data_alignment_factor);
	if (v1)
		put_u8(out, (uint8_t)o->cie.return_address_register);
	else
		put_uleb(out, o->cie.return_address_register);
	put_uleb(out, (per ? 1 + 8 : 0) + (lsda ? 1 : 0) + 1);
	if (per) {
		put_u8(out, DW_EH_PE_absptr | (o->aug.per_enc & DW_EH_PE_indirect));
		put_u64(out, o->personality);
	}
	if (lsda)
		put_u8(out, DW_EH_PE_absptr | (o->aug.lsda_enc & DW_EH_PE_indirect));
	put_u8(out, DW_EH_PE_absptr);
	why = walk_cfa(&w, o->cie.initial_instructions, o->cie.initial_instructions_end, out);
	if (why)
		return why;
	finish_entry(out);
	return EHFRAME_OK;
}

static enum ehframe_reason build_fde(const struct ehframe_src *src, const struct orig *o,
				     const struct copier_result *res, struct buf *out)
{
	struct cfa_walk w = {
	    .src = src,
	    .res = res,
	    .caf = o->cie.code_alignment_factor,
	    .fde_enc = o->aug.fde_enc,
	};
	bool lsda = o->aug.lsda_enc != DW_EH_PE_omit;
	enum ehframe_reason why;

	put_u32(out, 0); /* length, set by finish_entry() */
	put_u32(out, 0); /* CIE pointer, set by ehframe_emit() */
	put_u64(out, res->dest_addr);
	put_u64(out, res->size);
	put_uleb(out, lsda ? 8 : 0);
	if (lsda)
		put_u64(out, o->lsda);
	why = walk_cfa(&w, o->insns, o->insns_end, out);
	if (why)
		return why;
	finish_entry(out);
	return EHFRAME_OK;
}

static int refuse(enum ehframe_reason *why, enum ehframe_reason r)
{
	if (why)
		*why = r;
	return -ENOTSUP;
}

int ehframe_add(struct ehframe_builder *b, const struct ehframe_src *src, uint64_t fde_off,
		const struct copier_result *res, enum ehframe_reason *why)
{
	struct buf cie_buf = {0}, fde_buf = {0};
	enum ehframe_reason r = EHFRAME_OK;
	struct {
		size_t cies, cie_recs, fdes, fde_recs;
	} old;
	struct orig o;
	struct fde fde;
	bool new_cie;
	size_t ci;
	int err;

	if (!b || !src || !src->data || !res)
		return -EINVAL;
	old.cies = b->cies.n;
	old.cie_recs = b->cie_recs.n;
	old.fdes = b->fdes.n;
	old.fde_recs = b->fde_recs.n;
	r = read_orig(src, fde_off, res, &o);
	if (r)
		return refuse(why, r);
	if (o.lsda && !same_layout(res))
		return refuse(why, EHFRAME_LSDA_LAYOUT);

	for (ci = 0; ci < n_cies(b); ci++)
		if (cie_rec(b, ci)->key == o.cie_key)
			break;
	new_cie = ci == n_cies(b);
	if (new_cie)
		r = build_cie(src, &o, &cie_buf);
	if (!r)
		r = build_fde(src, &o, res, &fde_buf);
	if (r) {
		free(cie_buf.p);
		free(fde_buf.p);
		return refuse(why, r);
	}

	/* Appended last, so that undoing them is truncating. */
	fde = (struct fde){.off = b->fdes.n, .cie = ci};
	if (new_cie) {
		struct cie c = {.key = o.cie_key, .off = b->cies.n};

		put(&b->cies, cie_buf.p, cie_buf.n);
		put(&b->cie_recs, &c, sizeof(c));
	}
	put(&b->fdes, fde_buf.p, fde_buf.n);
	put(&b->fde_recs, &fde, sizeof(fde));
	err = cie_buf.err ?: fde_buf.err ?: b->cies.err ?: b->cie_recs.err ?: b->fdes.err
	    ?: b->fde_recs.err;
	free(cie_buf.p);
	free(fde_buf.p);
	if (err) {
		b->cies.n = old.cies;
		b->cie_recs.n = old.cie_recs;
		b->fdes.n = old.fdes;
		b->fde_recs.n = old.fde_recs;
		b->cies.err = b->cie_recs.err = b->fdes.err = b->fde_recs.err = 0;
		return err;
	}
	if (why)
		*why = EHFRAME_OK;
	return 0;
}

int ehframe_emit(const struct ehframe_builder *b, uint8_t *out, size_t cap)
{
	if (!b || !out)
		return -EINVAL;
	if (cap < ehframe_size(b))
		return -ENOSPC;
	if (b->cies.n)
		memcpy(out, b->cies.p, b->cies.n);
	if (b->fdes.n)
		memcpy(out + b->cies.n, b->fdes.p, b->fdes.n);
	for (size_t i = 0; i < n_fdes(b); i++) {
		const struct fde *f = fde_rec(b, i);
		size_t field = b->cies.n + f->off + 4;
		uint64_t delta = field - cie_rec(b, f->cie)->off;
		uint32_t v;

		if (delta >= DWARF64_ESCAPE)
			return -EOVERFLOW;
		v = (uint32_t)delta;
		memcpy(out + field, &v, 4);
	}
	memset(out + b->cies.n + b->fdes.n, 0, 4);
	return 0;
}
