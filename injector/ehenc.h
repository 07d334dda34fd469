/*
 * Readers of the values .eh_frame holds: LEB128 numbers, DW_EH_PE encoded
 * pointers, a CIE's augmentation and an FDE's address range. libdw frames the
 * CIEs and FDEs (dwarf_next_cfi) but decodes none of these for its callers;
 * funcs.c (function bounds from FDEs) and ehframe.c (unwind info for copies)
 * share these readers. Internal to injector/; pure, no allocation.
 *
 * Every reader takes the end of the bytes it may read, advances *p past what
 * it read, and returns false for truncated input or an encoding it does not
 * know, leaving *ret unset (and *p anywhere up to end).
 */
#pragma once

#include <elfutils/libdw.h>
#include <stdbool.h>
#include <stdint.h>

bool ehenc_read_uleb(const uint8_t **p, const uint8_t *end, uint64_t *ret);
bool ehenc_read_sleb(const uint8_t **p, const uint8_t *end, int64_t *ret);

/*
 * Reads a value in the format (low nibble) of DW_EH_PE encoding enc, without
 * applying it: pcrel and the like are the caller's business (the address
 * range of an FDE is such a value).
 */
bool ehenc_read_format(uint8_t enc, const uint8_t **p, const uint8_t *end, uint64_t *ret);

/*
 * Reads an encoded pointer whose first byte is at run-time address
 * field_addr and applies it as libgcc does: absptr as it is, pcrel plus
 * field_addr, and a raw value of 0 stays 0 (no pointer: an FDE libgcc
 * ignores, no LSDA, no personality). The indirect bit is not followed: the
 * result is then the address of the pointer. Refuses the applications that
 * need a base that .eh_frame alone does not give (textrel, datarel, funcrel,
 * aligned) and DW_EH_PE_omit.
 */
bool ehenc_read_ptr(uint8_t enc, const uint8_t **p, const uint8_t *end, uint64_t field_addr,
		    uint64_t *ret);
/* Whether ehenc_read_ptr() understands enc: then it fails only on truncated input. */
bool ehenc_ptr_supported(uint8_t enc);

/* What a CIE's augmentation string and data say. */
struct ehenc_cie_aug {
	bool sized;	    /* 'z': augmentation data, and in each FDE its size */
	uint8_t fde_enc;    /* 'R'; DW_EH_PE_absptr without it */
	uint8_t lsda_enc;   /* 'L'; DW_EH_PE_omit without it */
	uint8_t per_enc;    /* 'P'; DW_EH_PE_omit without it */
	const uint8_t *per; /* 'P': the personality's encoded value, in the CIE's bytes */
	bool signal_frame;  /* 'S' */
	bool other_letters; /* 'B' (AArch64's B key): understood, carries no data */
};

/*
 * Parses the augmentation of a CIE that dwarf_next_cfi() framed. False for a
 * letter not known here (it may hide data before the ones after it), for the
 * old "eh" augmentation, and for augmentation data that does not hold what
 * the letters say.
 */
bool ehenc_cie_aug(const Dwarf_CIE *cie, struct ehenc_cie_aug *ret);

/*
 * An FDE's initial_location and address_range in the FDE encoding enc of its
 * CIE, as [*ret_start, *ret_end): libdw decodes them only inside its CFI
 * table, where dwarf_frame_info() gives a row's range, not the FDE's.
 * field_addr is the address of the initial_location field in the same
 * address space as the result (ELF or run time). False for an indirect
 * encoding, a range of 0 or one that wraps, and a pc_begin of 0 (an FDE the
 * unwinder ignores).
 */
bool ehenc_fde_range(uint8_t enc, const Dwarf_FDE *fde, uint64_t field_addr, uint64_t *ret_start,
		     uint64_t *ret_end);
