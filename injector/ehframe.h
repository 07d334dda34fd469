/*
 * Unwind info for copies: builds an .eh_frame section that describes copied
 * functions (copier.h) as their originals' FDEs describe the originals, so
 * that C++ exceptions, pthread_cancel and backtrace() unwind through a copy's
 * frame as they would through the original's. The daemon writes the section
 * into the target and registers it there with libgcc's
 * __register_frame_info(). Pure transformation of bytes: no process access.
 *
 * For every copy, the original FDE is rewritten:
 *   - its range becomes the copy's, [dest_addr, dest_addr + size);
 *   - every location of its CFA program moves from the original's offset to
 *     the copy's through the copier's map (widened branches and expanded
 *     loops shift what follows them), each advance in the smallest form that
 *     holds the new distance; a location inside an instruction is refused;
 *     the original's end (a row after the last instruction) becomes the jmp
 *     the copier appended after a last instruction that falls through, or
 *     else the copy's end; DW_CFA_set_loc becomes absolute;
 *   - DWARF expressions are kept byte for byte, refused if they read rip;
 *   - pointers are absolute (DW_EH_PE_absptr, 8 bytes), so the section may be
 *     placed anywhere: pc_begin and pc_range, the LSDA and the personality
 *     (keeping DW_EH_PE_indirect: then the address of the pointer's slot).
 * Each distinct original CIE (one module's CIE at one address) becomes one
 * new CIE with the original's code and data alignment factors, return
 * address register, signal-frame flag ('S') and initial instructions.
 *
 * What cannot be carried over is refused, never approximated: a copy that
 * is refused simply has no unwind info (as without this module). In
 * particular an LSDA (C++ landing pads, cleanups) holds offsets from the
 * function's start, so it is kept only for a copy with the original's
 * layout, whose landing pads then run in the copy.
 *
 * The FDEs hold the copies' addresses: after copier_relocate() moves a copy,
 * the section is built again.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "copier.h"

/* One module's .eh_frame as it is loaded in the target (see struct module in funcs.h). */
struct ehframe_src {
	const uint8_t *data;
	size_t size;
	uint64_t addr; /* run-time address of data[0]: the section's address + the module's bias */
};

/* Why a copy gets no FDE. */
enum ehframe_reason {
	EHFRAME_OK = 0,
	EHFRAME_MALFORMED,	 /* truncated or inconsistent CFI, an entry that is no FDE */
	EHFRAME_UNSUPPORTED_AUG, /* an augmentation or pointer encoding not handled */
	EHFRAME_UNSUPPORTED_CFI, /* a CFA instruction or DWARF operation not handled */
	EHFRAME_FDE_MISMATCH,	 /* the FDE does not cover exactly the copied function */
	EHFRAME_CFI_MID_INSN,	 /* a CFI location inside one of the copy's instructions */
	EHFRAME_CFI_USES_IP,	 /* a rule reads rip (register 16), which differs in the copy */
	EHFRAME_LSDA_LAYOUT,	 /* an LSDA, but the copy's layout is not the original's */
};

/* A stable lower_snake_case name for r ("cfi_mid_insn", "lsda_layout", ...). */
const char *ehframe_reason_to_string(enum ehframe_reason r);

struct ehframe_builder;

/* An empty builder. 0 and *ret; -ENOMEM. */
int ehframe_builder_new(struct ehframe_builder **ret);

/*
 * Adds an FDE for the copy res of the function whose original FDE is at
 * offset fde_off of src (struct func's fde_off). The FDE must start at
 * res->orig_addr and cover res->orig_len bytes. Nothing of src or res is
 * kept: both may be freed afterwards.
 *
 * Returns 0; -ENOTSUP with *why (may be NULL) when the copy cannot be given
 * unwind info; -EINVAL for NULL arguments; -ENOMEM; -E2BIG for an FDE of
 * 4 GiB or more. On failure the builder is as it was.
 */
int ehframe_add(struct ehframe_builder *b, const struct ehframe_src *src, uint64_t fde_off,
		const struct copier_result *res, enum ehframe_reason *why);

/* Number of FDEs added. */
size_t ehframe_count(const struct ehframe_builder *b);

/*
 * Bytes of the section ehframe_emit() writes: the CIEs and FDEs (each padded
 * to 8 bytes) and the 4-byte zero terminator. 4 when nothing was added.
 */
size_t ehframe_size(const struct ehframe_builder *b);

/*
 * Writes the section to out (cap bytes): every CIE, then every FDE in the
 * order they were added, then the terminator. Independent of where out is
 * placed in the target; libgcc expects it 8-byte aligned there. Returns 0
 * having written ehframe_size() bytes; -ENOSPC if cap is smaller; -EOVERFLOW
 * if an FDE lies 4 GiB or more after its CIE.
 */
int ehframe_emit(const struct ehframe_builder *b, uint8_t *out, size_t cap);

/* Accepts NULL. */
void ehframe_builder_free(struct ehframe_builder *b);
