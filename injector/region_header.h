/*
 * The header in the first page of every optd region. It is written into the
 * target and read back by tools and by an optd that re-adopts its pages, so
 * its layout is an interface: fixed size, fixed offsets, little endian.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define OPTD_REGION_MAGIC "optd-rgn" /* 8 bytes, no terminating NUL in the header */
#define OPTD_REGION_MAGIC_LEN 8
#define OPTD_REGION_VERSION 1
#define OPTD_REGION_HEADER_PAGE 4096 /* the header owns the whole first page */

struct optd_region_header {
	char magic[OPTD_REGION_MAGIC_LEN];
	uint32_t version;
	uint32_t header_size;	   /* sizeof(struct optd_region_header) */
	uint64_t base;		   /* address of the region (of this header) */
	uint64_t size;		   /* bytes, a multiple of the page size */
	uint64_t code_offset;	   /* code area, from base */
	uint64_t code_size;	   /* bytes reserved for code */
	uint64_t code_used;	   /* bytes of code written */
	uint64_t reloc_offset;	   /* relocation table, from base; 0 = none */
	uint64_t reloc_count;	   /* records in the table */
	uint64_t owner_pid;	   /* the optd that owns the region */
	uint64_t owner_start_time; /* its start time in clock ticks after boot (/proc/PID/stat field
				      22) */
	uint64_t generation;	   /* bumped at every change of layout or address */
	uint64_t flags;		   /* OPTD_REGION_F_* */
	/*
	 * The copies' unwind information (.eh_frame), from base; 0 = none. While
	 * it is registered with the target's unwinder, the page at data_offset
	 * (read-write, never executable) holds the unwinder's record of it.
	 */
	uint64_t unwind_offset;
	uint64_t unwind_size;
	uint64_t data_offset;
};

#define OPTD_REGION_F_HUGEPAGE 0x1 /* MADV_HUGEPAGE was applied to the code area */
#define OPTD_REGION_F_PIECES 0x2   /* parts of the region moved: the piece table is valid */

/*
 * Where the region's bytes are. The guard moves only the pages that collide
 * with a request of the target, so the region may lie in pieces: each piece
 * holds the bytes [off, off + len) of the region as it was laid out (the
 * header's code_offset, unwind_offset and data_offset count in that layout)
 * at addr. The table follows the header in the header page, sorted by off,
 * the pieces covering [0, size) without overlap; the header page is the
 * start of the piece at off 0, and the header's base is its address. With
 * OPTD_REGION_F_PIECES clear the region is whole at base.
 */
#define OPTD_REGION_PIECES_OFFSET 128
#define OPTD_REGION_MAX_PIECES 8

struct optd_region_piece {
	uint64_t off;
	uint64_t len;
	uint64_t addr;
};

struct optd_region_pieces {
	uint64_t count;
	struct optd_region_piece v[OPTD_REGION_MAX_PIECES];
};

_Static_assert(sizeof(struct optd_region_header) == 128, "region header is 128 bytes");
_Static_assert(offsetof(struct optd_region_header, version) == 8, "version at 8");
_Static_assert(offsetof(struct optd_region_header, base) == 16, "base at 16");
_Static_assert(offsetof(struct optd_region_header, size) == 24, "size at 24");
_Static_assert(offsetof(struct optd_region_header, code_offset) == 32, "code_offset at 32");
_Static_assert(offsetof(struct optd_region_header, owner_pid) == 72, "owner_pid at 72");
_Static_assert(offsetof(struct optd_region_header, generation) == 88, "generation at 88");
_Static_assert(offsetof(struct optd_region_header, flags) == 96, "flags at 96");
_Static_assert(offsetof(struct optd_region_header, unwind_offset) == 104, "unwind_offset at 104");
_Static_assert(offsetof(struct optd_region_header, data_offset) == 120, "data_offset at 120");
_Static_assert(OPTD_REGION_PIECES_OFFSET + sizeof(struct optd_region_pieces) <= 1024,
	       "the piece table stays clear of the header page's spare half");
