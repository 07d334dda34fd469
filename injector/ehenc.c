/*
 * Readers of .eh_frame values (what and why: ehenc.h).
 */
#include <dwarf.h>
#include <string.h>

#include "ehenc.h"

/* The bits of a LEB128 number, and how many it had (the sign of an SLEB128 is the last). */
static bool read_leb(const uint8_t **p, const uint8_t *end, uint64_t *ret, unsigned *ret_bits)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (*p < end) {
		uint8_t b = *(*p)++;

		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			*ret = v;
			*ret_bits = shift;
			return true;
		}
	}
	return false;
}

bool ehenc_read_uleb(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	unsigned bits;

	return read_leb(p, end, ret, &bits);
}

bool ehenc_read_sleb(const uint8_t **p, const uint8_t *end, int64_t *ret)
{
	uint64_t v;
	unsigned bits;

	if (!read_leb(p, end, &v, &bits))
		return false;
	if (bits < 64 && (v >> (bits - 1) & 1))
		v |= ~0ULL << bits;
	*ret = (int64_t)v;
	return true;
}

bool ehenc_read_format(uint8_t enc, const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	size_t n;

	switch (enc & 0x0f) {
	case DW_EH_PE_uleb128:
		return ehenc_read_uleb(p, end, ret);
	case DW_EH_PE_sleb128:
		return ehenc_read_sleb(p, end, (int64_t *)ret);
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		n = 8;
		break;
	case DW_EH_PE_udata4:
	case DW_EH_PE_sdata4:
		n = 4;
		break;
	case DW_EH_PE_udata2:
	case DW_EH_PE_sdata2:
		n = 2;
		break;
	default:
		return false;
	}
	if (*p > end || (size_t)(end - *p) < n)
		return false;
	if (n == 8) {
		uint64_t v;

		memcpy(&v, *p, 8);
		*ret = v;
	} else if (n == 4) {
		uint32_t v;

		memcpy(&v, *p, 4);
		*ret = (enc & DW_EH_PE_signed) ? (uint64_t)(int64_t)(int32_t)v : v;
	} else {
		uint16_t v;

		memcpy(&v, *p, 2);
		*ret = (enc & DW_EH_PE_signed) ? (uint64_t)(int64_t)(int16_t)v : v;
	}
	*p += n;
	return true;
}

bool ehenc_ptr_supported(uint8_t enc)
{
	if (enc == DW_EH_PE_omit)
		return false;
	switch (enc & 0x70) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_pcrel:
		break;
	default:
		/* textrel, datarel, funcrel, aligned: not used by x86-64 .eh_frame. */
		return false;
	}
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_uleb128:
	case DW_EH_PE_udata2:
	case DW_EH_PE_udata4:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sleb128:
	case DW_EH_PE_sdata2:
	case DW_EH_PE_sdata4:
	case DW_EH_PE_sdata8:
		return true;
	default:
		return false;
	}
}

bool ehenc_read_ptr(uint8_t enc, const uint8_t **p, const uint8_t *end, uint64_t field_addr,
		    uint64_t *ret)
{
	uint64_t v;

	if (!ehenc_ptr_supported(enc))
		return false;
	if (!ehenc_read_format(enc, p, end, &v))
		return false;
	if (v != 0 && (enc & 0x70) == DW_EH_PE_pcrel)
		v += field_addr;
	*ret = v;
	return true;
}

bool ehenc_cie_aug(const Dwarf_CIE *cie, struct ehenc_cie_aug *ret)
{
	const char *aug = cie->augmentation;
	const uint8_t *p = cie->augmentation_data;
	const uint8_t *end = p + cie->augmentation_data_size;
	struct ehenc_cie_aug a = {
	    .fde_enc = DW_EH_PE_absptr,
	    .lsda_enc = DW_EH_PE_omit,
	    .per_enc = DW_EH_PE_omit,
	};
	uint64_t skip;

	if (aug[0] == '\0') {
		*ret = a;
		return true;
	}
	if (aug[0] != 'z')
		return false;
	a.sized = true;
	for (aug++; *aug; aug++) {
		switch (*aug) {
		case 'R':
			if (p >= end)
				return false;
			a.fde_enc = *p++;
			break;
		case 'L':
			if (p >= end)
				return false;
			a.lsda_enc = *p++;
			break;
		case 'P':
			if (p >= end)
				return false;
			a.per_enc = *p++;
			/* DW_EH_PE_aligned would need the section's address to skip. */
			if ((a.per_enc & 0x70) == DW_EH_PE_aligned)
				return false;
			a.per = p;
			if (!ehenc_read_format(a.per_enc, &p, end, &skip))
				return false;
			break;
		case 'S':
			a.signal_frame = true;
			break;
		case 'B':
			a.other_letters = true;
			break;
		default:
			return false;
		}
	}
	*ret = a;
	return true;
}

bool ehenc_fde_range(uint8_t enc, const Dwarf_FDE *fde, uint64_t field_addr, uint64_t *ret_start,
		     uint64_t *ret_end)
{
	const uint8_t *p = fde->start;
	uint64_t start, len;

	if (enc & DW_EH_PE_indirect)
		return false;
	if (!ehenc_read_ptr(enc, &p, fde->end, field_addr, &start) ||
	    !ehenc_read_format(enc, &p, fde->end, &len))
		return false;
	if (start == 0 || len == 0 || start + len < start)
		return false;
	*ret_start = start;
	*ret_end = start + len;
	return true;
}
