/*
 * Unit tests for common/maps.c.
 *
 * Recorded dumps (tests/data/maps/, see its README) are checked three ways:
 * against facts read off the dumps by hand, line by line against a small
 * independent sscanf parser, and through the lookups. Synthetic lines cover
 * what this kernel cannot show ([anon:NAME]) and every malformed shape.
 * malloc and realloc are wrapped at link time to test -ENOMEM.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
#include "util.h"

#ifndef OPTD_MAPS_DATA_DIR
#error "OPTD_MAPS_DATA_DIR must name tests/data/maps"
#endif

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static bool fail_alloc;

void *__wrap_malloc(size_t n)
{
	if (fail_alloc) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
	if (fail_alloc) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, n);
}

/* The whole file, NUL-terminated (the NUL is not counted in *ret_len). */
static char *load(const char *name, size_t *ret_len)
{
	char path[512];
	char *buf;
	FILE *f;
	long len;

	snprintf(path, sizeof(path), "%s/%s", OPTD_MAPS_DATA_DIR, name);
	f = fopen(path, "re");
	ck_assert_msg(f, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	ck_assert_int_gt(len, 0);
	rewind(f);
	buf = __real_malloc((size_t)len + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	fclose(f);
	*ret_len = (size_t)len;
	return buf;
}

static struct maps *parse_file(const char *name)
{
	struct maps *m = NULL;
	size_t len;
	char *text = load(name, &len);

	ck_assert_int_eq(maps_parse(text, len, &m), 0);
	ck_assert_ptr_nonnull(m);
	free(text);
	return m;
}

/* Facts read off each dump by hand. */
struct recorded {
	const char *file;
	size_t n, n_file, n_anon, n_special, n_deleted;
	bool has_heap;
	const char *exe;
	uint64_t exe_start, exe_end;
	uint64_t stack_start, stack_end;
	uint64_t vdso_start;
	uint64_t total;	    /* bytes mapped */
	size_t used_ranges; /* runs of adjacent mappings */
};

/* clang-format off */
static const struct recorded recorded[] = {
	{"sqlite3-pie.maps", 51, 40, 5, 0, 0, true, "/usr/bin/sqlite3", 0x5645e0747000,
	 0x5645e0793000, 0x7ffc5e94c000, 0x7ffc5e96d000, 0x7fb30cfe1000, 0x59e000, 6},
	{"python3-nopie.maps", 96, 82, 8, 0, 0, true, "/usr/bin/python3.11", 0x400000, 0xa85000,
	 0x7ffe07098000, 0x7ffe070b9000, 0x7f65c04dd000, 0x171d000, 7},
	{"nopie.maps", 24, 15, 3, 0, 0, true, "/tmp/rec/record-nopie", 0x400000, 0x405000,
	 0x7ffdd51d6000, 0x7ffdd51f7000, 0x7fd6466e8000, 0x26c000, 6},
	{"static.maps", 12, 5, 1, 0, 0, true, "/tmp/rec/record-static", 0x400000, 0x4bd000,
	 0x7ffca6aaa000, 0x7ffca6acb000, 0x7fda69579000, 0x10e000, 5},
	{"static-pie.maps", 12, 5, 1, 0, 0, true, "/tmp/rec/record-static-pie", 0x7fbedc3f3000,
	 0x7fbedc4bc000, 0x7ffed16cd000, 0x7ffed16ee000, 0x7fbedc3f1000, 0x11a000, 4},
	{"pie-deleted.maps", 34, 25, 4, 0, 8, false, "/tmp/rec/record-pie", 0x557ab2ae6000,
	 0x557ab2aeb000, 0x7ffd0ca3d000, 0x7ffd0ca5e000, 0x7f31dff60000, 0x261000, 4},
	{"pie-special.maps", 25, 16, 3, 1, 1, false, "/tmp/rec/record-pie", 0x55d57b1dd000,
	 0x55d57b1e2000, 0x7ffdf6c1f000, 0x7ffdf6c40000, 0x7f4917c7e000, 0x24e000, 5},
	{"pie-gaps-threads.maps", 34, 15, 13, 0, 0, true, "/tmp/rec/record-pie", 0x563cb2205000,
	 0x563cb220a000, 0x7ffeba258000, 0x7ffeba279000, 0x7f052173d000, 0x41273000, 12},
};
/* clang-format on */

START_TEST(test_recorded_facts)
{
	const struct recorded *r = &recorded[_i];
	struct maps *m = parse_file(r->file);
	size_t kinds[MAPS_SPECIAL + 1] = {0}, deleted = 0;
	const struct maps_entry *e;
	uint64_t start, end;

	ck_assert_uint_eq(m->n, r->n);
	for (size_t i = 0; i < m->n; i++) {
		kinds[m->v[i].kind]++;
		deleted += m->v[i].deleted;
	}
	ck_assert_uint_eq(kinds[MAPS_FILE], r->n_file);
	ck_assert_uint_eq(kinds[MAPS_ANON], r->n_anon);
	ck_assert_uint_eq(kinds[MAPS_SPECIAL], r->n_special);
	ck_assert_uint_eq(kinds[MAPS_HEAP], r->has_heap);
	ck_assert_uint_eq(kinds[MAPS_STACK], 1);
	ck_assert_uint_eq(kinds[MAPS_VDSO], 1);
	ck_assert_uint_eq(kinds[MAPS_VVAR], 2); /* [vvar] and [vvar_vclock] on 6.18 */
	ck_assert_uint_eq(kinds[MAPS_VSYSCALL], 1);
	ck_assert_uint_eq(deleted, r->n_deleted);

	ck_assert_int_eq(maps_span_of(m, r->exe, &start, &end), 0);
	ck_assert_uint_eq(start, r->exe_start);
	ck_assert_uint_eq(end, r->exe_end);

	e = maps_find_kind(m, MAPS_STACK);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->start, r->stack_start);
	ck_assert_uint_eq(e->end, r->stack_end);
	ck_assert_str_eq(e->path, "[stack]");
	ck_assert_uint_eq(e->prot, PROT_READ | PROT_WRITE);
	ck_assert(!e->shared);

	e = maps_find_kind(m, MAPS_VDSO);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->start, r->vdso_start);
	ck_assert_uint_eq(e->prot, PROT_READ | PROT_EXEC);

	e = maps_find_kind(m, MAPS_VVAR);
	ck_assert_str_eq(e->path, "[vvar]");
	ck_assert_str_eq(e[1].path, "[vvar_vclock]");
	ck_assert_uint_eq(e[1].kind, MAPS_VVAR);

	e = maps_find_kind(m, MAPS_VSYSCALL);
	ck_assert_uint_eq(e->start, 0xffffffffff600000);
	ck_assert_uint_eq(e->end, 0xffffffffff601000);
	ck_assert_uint_eq(e->prot, PROT_EXEC); /* --xp: vsyscall=xonly */
	ck_assert_ptr_eq(e, &m->v[m->n - 1]);

	e = maps_find_kind(m, MAPS_HEAP);
	ck_assert(!e == !r->has_heap);
	maps_free(m);
}
END_TEST

/*
 * An independent reading of a line, with sscanf, to compare every field of
 * every recorded entry with.
 */
static void reference_parse(const char *line, struct maps_entry *e, char *name, size_t name_size)
{
	char perms[5] = {0};
	unsigned long long start, end, offset, inode;
	unsigned major, minor;
	int consumed = 0;
	size_t len;

	ck_assert_int_eq(sscanf(line, "%llx-%llx %4c %llx %x:%x %llu%n", &start, &end, perms,
				&offset, &major, &minor, &inode, &consumed),
			 7);
	*e = (struct maps_entry){.start = start,
				 .end = end,
				 .offset = offset,
				 .inode = inode,
				 .dev_major = major,
				 .dev_minor = minor};
	e->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	e->shared = perms[3] == 's';
	line += consumed;
	line += strspn(line, " ");
	snprintf(name, name_size, "%s", line);
	len = strlen(name);
	if (len > 10 && !strcmp(name + len - 10, " (deleted)")) {
		name[len - 10] = '\0';
		e->deleted = true;
	}
	e->path = *name ? name : NULL;
}

START_TEST(test_recorded_against_reference)
{
	const struct recorded *r = &recorded[_i];
	struct maps *m = parse_file(r->file);
	size_t len, i = 0;
	char *text = load(r->file, &len);
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), i++) {
		struct maps_entry want;
		const struct maps_entry *got;
		char name[512];

		ck_assert_uint_lt(i, m->n);
		got = &m->v[i];
		reference_parse(line, &want, name, sizeof(name));
		ck_assert_uint_eq(got->start, want.start);
		ck_assert_uint_eq(got->end, want.end);
		ck_assert_uint_eq(got->offset, want.offset);
		ck_assert_uint_eq(got->prot, want.prot);
		ck_assert_int_eq(got->shared, want.shared);
		ck_assert_uint_eq(got->dev_major, want.dev_major);
		ck_assert_uint_eq(got->dev_minor, want.dev_minor);
		ck_assert_uint_eq(got->inode, want.inode);
		ck_assert_int_eq(got->deleted, want.deleted);
		if (want.path)
			ck_assert_str_eq(got->path, want.path);
		else
			ck_assert_ptr_null(got->path);
	}
	ck_assert_uint_eq(i, m->n);
	free(text);
	maps_free(m);
}
END_TEST

/* Single entries read off the dumps by hand. */
struct entry_fact {
	const char *file;
	uint64_t addr;
	uint64_t start, end;
	const char *perms;
	uint64_t offset;
	unsigned major, minor;
	uint64_t inode;
	const char *path;
	bool deleted;
	enum maps_kind kind;
};

/* clang-format off */
static const struct entry_fact entry_facts[] = {
	{"pie-deleted.maps", 0x7f31dfd5d000, 0x7f31dfd5d000, 0x7f31dfd5e000, "r--s", 0, 0, 1, 1,
	 "/SYSV00000000", true, MAPS_FILE},
	{"pie-deleted.maps", 0x7f31dfd5f123, 0x7f31dfd5e000, 0x7f31dfd60000, "rw-s", 0, 0, 1, 1027,
	 "/dev/zero", true, MAPS_FILE},
	{"pie-deleted.maps", 0x7f31dfd60000, 0x7f31dfd60000, 0x7f31dfd64000, "rw-p", 0, 0, 0, 0,
	 NULL, false, MAPS_ANON},
	{"pie-deleted.maps", 0x7f31dfd66fff, 0x7f31dfd66000, 0x7f31dfd67000, "r-xs", 0, 0, 1, 1025,
	 "/memfd:optd-jit", true, MAPS_FILE},
	{"pie-deleted.maps", 0x7f31dfd67000, 0x7f31dfd67000, 0x7f31dfd68000, "r--p", 0x2000, 0xfe,
	 0, 10952805, "/tmp/optd maps test/new\\012line.bin", true, MAPS_FILE},
	{"pie-deleted.maps", 0x7f31dff50000, 0x7f31dff50000, 0x7f31dff51000, "r--p", 0x2000, 0xfe,
	 0, 10952804, "/tmp/optd maps test/gone.bin", true, MAPS_FILE},
	{"pie-deleted.maps", 0x7f31dff55000, 0x7f31dff55000, 0x7f31dff58000, "rw-s", 0, 0xfe, 0,
	 10952769, "/tmp/optd maps test/with space.bin", false, MAPS_FILE},
	{"pie-special.maps", 0x7f4917c73000, 0x7f4917c73000, 0x7f4917c74000, "rw-s", 0, 0, 0xe,
	 9279, "/secretmem", true, MAPS_FILE},
	{"pie-special.maps", 0x7f4917c74000, 0x7f4917c74000, 0x7f4917c76000, "rw-s", 0, 0, 0x10, 26,
	 "anon_inode:[perf_event]", false, MAPS_SPECIAL},
	{"python3-nopie.maps", 0x41f000, 0x41f000, 0x6d2000, "r-xp", 0x1f000, 0xfe, 0, 247970,
	 "/usr/bin/python3.11", false, MAPS_FILE},
	{"python3-nopie.maps", 0xa85000, 0xa85000, 0xaca000, "rw-p", 0, 0, 0, 0, NULL, false,
	 MAPS_ANON},
	{"python3-nopie.maps", 0x1d7e1000, 0x1d7e1000, 0x1d950000, "rw-p", 0, 0, 0, 0, "[heap]",
	 false, MAPS_HEAP},
	{"pie-gaps-threads.maps", 0x10000, 0x10000, 0x11000, "r--p", 0, 0, 0, 0, NULL, false,
	 MAPS_ANON},
	{"pie-gaps-threads.maps", 0x100000000, 0x100000000, 0x100001000, "r--p", 0, 0, 0, 0, NULL,
	 false, MAPS_ANON},
	{"pie-gaps-threads.maps", 0x7f0500000000, 0x7f04e1400000, 0x7f0521400000, "---p", 0, 0, 0,
	 0, NULL, false, MAPS_ANON},
	{"pie-gaps-threads.maps", 0x7ffffffe0000, 0x7ffffffe0000, 0x7ffffffe1000, "r--p", 0, 0, 0,
	 0, NULL, false, MAPS_ANON},
	{"sqlite3-pie.maps", 0x7fb30cfe0000, 0x7fb30cfdf000, 0x7fb30cfe1000, "r--p", 0, 0, 0, 0,
	 "[vvar_vclock]", false, MAPS_VVAR},
	{"static.maps", 0x20ee0000, 0x20ee0000, 0x20f02000, "rw-p", 0, 0, 0, 0, "[heap]", false,
	 MAPS_HEAP},
	{"static-pie.maps", 0x55557daa4000, 0x55557daa4000, 0x55557dac6000, "rw-p", 0, 0, 0, 0,
	 "[heap]", false, MAPS_HEAP},
};
/* clang-format on */

static unsigned prot_of(const char *perms)
{
	return (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
	       (perms[2] == 'x' ? PROT_EXEC : 0);
}

START_TEST(test_entry_facts)
{
	const struct entry_fact *f = &entry_facts[_i];
	struct maps *m = parse_file(f->file);
	const struct maps_entry *e = maps_find(m, f->addr);

	ck_assert_msg(e, "%s: nothing at %#" PRIx64, f->file, f->addr);
	ck_assert_uint_eq(e->start, f->start);
	ck_assert_uint_eq(e->end, f->end);
	ck_assert_uint_eq(e->prot, prot_of(f->perms));
	ck_assert_int_eq(e->shared, f->perms[3] == 's');
	ck_assert_uint_eq(e->offset, f->offset);
	ck_assert_uint_eq(e->dev_major, f->major);
	ck_assert_uint_eq(e->dev_minor, f->minor);
	ck_assert_uint_eq(e->inode, f->inode);
	if (f->path)
		ck_assert_str_eq(e->path, f->path);
	else
		ck_assert_ptr_null(e->path);
	ck_assert_int_eq(e->deleted, f->deleted);
	ck_assert_int_eq(e->kind, f->kind);
	maps_free(m);
}
END_TEST

/* One synthetic line: either its parse or the error it must give. */
struct line_case {
	const char *text;
	int ret;
	uint64_t start, end;
	unsigned prot;
	bool shared;
	uint64_t offset;
	unsigned major, minor;
	uint64_t inode;
	const char *path;
	bool deleted;
	enum maps_kind kind;
};

#define BAD(t)                                                                                     \
	{                                                                                          \
		.text = (t), .ret = -EINVAL                                                        \
	}
#define RW (PROT_READ | PROT_WRITE)
#define RX (PROT_READ | PROT_EXEC)

/* clang-format off */
static const struct line_case line_cases[] = {
	/* Valid lines. */
	{"00400000-00401000 r-xp 00001000 fe:00 42                         /usr/bin/a b  c", 0,
	 0x400000, 0x401000, RX, false, 0x1000, 0xfe, 0, 42, "/usr/bin/a b  c", false, MAPS_FILE},
	{"00400000-00401000 r--p 00000000 08:01 7 /usr/lib/x.so (deleted)", 0, 0x400000, 0x401000,
	 PROT_READ, false, 0, 8, 1, 7, "/usr/lib/x.so", true, MAPS_FILE},
	{"00400000-00401000 r--p 00000000 08:01 7 /tmp/y (deleted) (deleted)", 0, 0x400000,
	 0x401000, PROT_READ, false, 0, 8, 1, 7, "/tmp/y (deleted)", true, MAPS_FILE},
	{"00400000-00401000 r--p 00000000 08:01 7 /tmp/(deleted)", 0, 0x400000, 0x401000, PROT_READ,
	 false, 0, 8, 1, 7, "/tmp/(deleted)", false, MAPS_FILE},
	{"00400000-00401000 r--p 00000000 08:01 7 /tmp/ends in space ", 0, 0x400000, 0x401000,
	 PROT_READ, false, 0, 8, 1, 7, "/tmp/ends in space ", false, MAPS_FILE},
	{"7f0000000000-7f0000004000 rw-p 00000000 00:00 0                     [anon:optd arena]",
	 0, 0x7f0000000000, 0x7f0000004000, RW, false, 0, 0, 0, 0, "[anon:optd arena]", false,
	 MAPS_SPECIAL},
	{"7f0000000000-7f0000004000 rw-s 00000000 00:01 1025                  [anon_shmem:jit]",
	 0, 0x7f0000000000, 0x7f0000004000, RW, true, 0, 0, 1, 1025, "[anon_shmem:jit]", false,
	 MAPS_SPECIAL},
	{"7fffff7fe000-7fffff7ff000 r-xp 00000000 00:00 0                          [uprobes]", 0,
	 0x7fffff7fe000, 0x7fffff7ff000, RX, false, 0, 0, 0, 0, "[uprobes]", false, MAPS_SPECIAL},
	{"7f0000000000-7f0000004000 rw-p 00000000 00:00 0                          [stack:1234]", 0,
	 0x7f0000000000, 0x7f0000004000, RW, false, 0, 0, 0, 0, "[stack:1234]", false,
	 MAPS_SPECIAL},
	{"7f0000000000-7f0000004000 rw-p 00000000 00:00 0 [anon:x (deleted)]", 0, 0x7f0000000000,
	 0x7f0000004000, RW, false, 0, 0, 0, 0, "[anon:x (deleted)]", false, MAPS_SPECIAL},
	{"7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0                          [vvar]", 0,
	 0x7ffff7fc1000, 0x7ffff7fc5000, PROT_READ, false, 0, 0, 0, 0, "[vvar]", false, MAPS_VVAR},
	{"7ffff7fc5000-7ffff7fc7000 r--p 00000000 00:00 0                          [vvar_vclock]",
	 0, 0x7ffff7fc5000, 0x7ffff7fc7000, PROT_READ, false, 0, 0, 0, 0, "[vvar_vclock]", false,
	 MAPS_VVAR},
	{"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]", 0,
	 0xffffffffff600000, 0xffffffffff601000, PROT_EXEC, false, 0, 0, 0, 0, "[vsyscall]", false,
	 MAPS_VSYSCALL},
	{"ffffffffff600000-ffffffffff601000 ---p 00000000 00:00 0                  [vsyscall]", 0,
	 0xffffffffff600000, 0xffffffffff601000, 0, false, 0, 0, 0, 0, "[vsyscall]", false,
	 MAPS_VSYSCALL},
	{"00400000-00401000 rw-p 00000000 00:00 0", 0, 0x400000, 0x401000, RW, false, 0, 0, 0, 0,
	 NULL, false, MAPS_ANON},
	{"00400000-00401000 rw-p 00000000 00:00 0 ", 0, 0x400000, 0x401000, RW, false, 0, 0, 0, 0,
	 NULL, false, MAPS_ANON},
	{"00400000-00401000 rw-p 00000000 00:00 0                          ", 0, 0x400000, 0x401000,
	 RW, false, 0, 0, 0, 0, NULL, false, MAPS_ANON},
	BAD("7F00AB000000-7F00AB001000 RW-P 00000000 00:00 0"),
	{"7F00AB000000-7F00AB001000 rw-p 0000ABCD 0A:0B 0", 0, 0x7f00ab000000, 0x7f00ab001000, RW,
	 false, 0xabcd, 0xa, 0xb, 0, NULL, false, MAPS_ANON},
	{"00400000-00401000 r--s fffffffffffff000 103:02 18446744073709551615 /dev/nvme0n1p2", 0,
	 0x400000, 0x401000, PROT_READ, true, 0xfffffffffffff000, 0x103, 2, UINT64_MAX,
	 "/dev/nvme0n1p2", false, MAPS_FILE},
	{"0-1000 rw-p 0 0:0 0", 0, 0, 0x1000, RW, false, 0, 0, 0, 0, NULL, false, MAPS_ANON},
	{"00400000-00401000 rw-p 00000000 00:00 0 /", 0, 0x400000, 0x401000, RW, false, 0, 0, 0, 0,
	 "/", false, MAPS_FILE},
	{"00400000-00401000 rw-p 00000000 00:00 0 heap", 0, 0x400000, 0x401000, RW, false, 0, 0, 0,
	 0, "heap", false, MAPS_SPECIAL},
	{"7fffffffe000-7ffffffff000 rw-p 00000000 00:00 0 [stack]", 0, 0x7fffffffe000,
	 0x7ffffffff000, RW, false, 0, 0, 0, 0, "[stack]", false, MAPS_STACK},
	{"555555559000-55555557a000 rw-p 00000000 00:00 0 [heap]", 0, 0x555555559000,
	 0x55555557a000, RW, false, 0, 0, 0, 0, "[heap]", false, MAPS_HEAP},
	{"7ffff7fc7000-7ffff7fc9000 r-xp 00000000 00:00 0 [vdso]", 0, 0x7ffff7fc7000,
	 0x7ffff7fc9000, RX, false, 0, 0, 0, 0, "[vdso]", false, MAPS_VDSO},
	{"00400000-00401000 rw-p 00000000 00:00 0\n", 0, 0x400000, 0x401000, RW, false, 0, 0, 0, 0,
	 NULL, false, MAPS_ANON},

	/* Malformed lines. */
	BAD("garbage"),
	BAD(" 00400000-00401000 rw-p 00000000 00:00 0"),
	BAD("-00401000 rw-p 00000000 00:00 0"),
	BAD("00400000 rw-p 00000000 00:00 0"),
	BAD("00400000-00401000"),
	BAD("00400000-00401000 "),
	BAD("00400000-00401000 rw-"),
	BAD("00400000-00401000 rw-p"),
	BAD("00400000-00401000 rw-q 00000000 00:00 0"),
	BAD("00400000-00401000 rwxpp 00000000 00:00 0"),
	BAD("00400000-00401000 r-z- 00000000 00:00 0"),
	BAD("00400000-00401000 wr-p 00000000 00:00 0"),
	BAD("00400000-00401000  rw-p 00000000 00:00 0"),
	BAD("00400000-00401000\trw-p 00000000 00:00 0"),
	BAD("0x400000-0x401000 rw-p 00000000 00:00 0"),
	BAD("00401000-00400000 rw-p 00000000 00:00 0"),
	BAD("00400000-00400000 rw-p 00000000 00:00 0"),
	BAD("00400800-00401000 rw-p 00000000 00:00 0"),
	BAD("00400000-00401800 rw-p 00000000 00:00 0"),
	BAD("10000000000000000-10000000000001000 rw-p 00000000 00:00 0"),
	BAD("00400000-00401000 rw-p 10000000000000000 00:00 0"),
	BAD("00400000-00401000 rw-p 00000000 fe 0"),
	BAD("00400000-00401000 rw-p 00000000 fe:"),
	BAD("00400000-00401000 rw-p 00000000 fe:00"),
	BAD("00400000-00401000 rw-p 00000000 fe:00 "),
	BAD("00400000-00401000 rw-p 00000000 1000:00 0"),
	BAD("00400000-00401000 rw-p 00000000 00:100000 0"),
	BAD("00400000-00401000 rw-p 00000000 fe:00 12a /x"),
	BAD("00400000-00401000 rw-p 00000000 fe:00 -1 /x"),
	BAD("00400000-00401000 rw-p 00000000 fe:00 18446744073709551616 /x"),
	BAD("00400000-00401000 rw-p 00000000 fe:00 0\t/x"),
	BAD("00400000-00401000 rw-p 00000000 00:00 0\r"),
	BAD("00400000-00401000 rw-p 00000000 00:00 0\n\n"),
	BAD("\n"),
};
/* clang-format on */

START_TEST(test_line)
{
	const struct line_case *c = &line_cases[_i];
	struct maps *m = (struct maps *)0x1;
	const struct maps_entry *e;
	int r = maps_parse(c->text, strlen(c->text), &m);

	ck_assert_msg(r == c->ret, "\"%s\": got %d, want %d", c->text, r, c->ret);
	if (c->ret < 0) {
		ck_assert_ptr_eq(m, (struct maps *)0x1); /* ret_ untouched on failure */
		return;
	}
	ck_assert_uint_eq(m->n, 1);
	e = &m->v[0];
	ck_assert_uint_eq(e->start, c->start);
	ck_assert_uint_eq(e->end, c->end);
	ck_assert_uint_eq(e->prot, c->prot);
	ck_assert_int_eq(e->shared, c->shared);
	ck_assert_uint_eq(e->offset, c->offset);
	ck_assert_uint_eq(e->dev_major, c->major);
	ck_assert_uint_eq(e->dev_minor, c->minor);
	ck_assert_uint_eq(e->inode, c->inode);
	if (c->path)
		ck_assert_str_eq(e->path, c->path);
	else
		ck_assert_ptr_null(e->path);
	ck_assert_int_eq(e->deleted, c->deleted);
	ck_assert_int_eq(e->kind, c->kind);
	maps_free(m);
}
END_TEST

/* Whole texts: line structure and ordering. */
struct text_case {
	const char *text;
	size_t len; /* 0: strlen */
	int ret;
	size_t n;
};

#define L1 "00400000-00401000 r--p 00000000 00:00 0 /a"
#define L2 "00401000-00402000 r-xp 00001000 00:00 0 /a"
#define L3 "00500000-00600000 rw-p 00000000 00:00 0"

/* clang-format off */
static const struct text_case text_cases[] = {
	{"", 0, 0, 0},
	{L1, 0, 0, 1},
	{L1 "\n", 0, 0, 1},
	{L1 "\n" L2 "\n" L3 "\n", 0, 0, 3},
	{L1 "\n" L2 "\n" L3, 0, 0, 3},
	{L1 "\n\n" L2 "\n", 0, -EINVAL, 0},
	{"\n" L1 "\n", 0, -EINVAL, 0},
	{L2 "\n" L1 "\n", 0, -EINVAL, 0},  /* out of order */
	{L1 "\n" L1 "\n", 0, -EINVAL, 0},  /* the same twice */
	{L3 "\n00500000-00501000 rw-p 00000000 00:00 0\n", 0, -EINVAL, 0}, /* overlap */
	{L3 "\n005ff000-00700000 rw-p 00000000 00:00 0\n", 0, -EINVAL, 0}, /* overlap */
	{L1 "\n" L2, sizeof(L1 "\n" L2) - 5, -EINVAL, 0}, /* cut inside a field */
	{L1 "\n" L2 "\n", sizeof(L1 "\n" L2 "\n"), -EINVAL, 0}, /* a NUL after the text */
	{"00400000-00401000 rw-p 00000000 00:00 0 /a\0b\n", 46, -EINVAL, 0}, /* NUL in the name */
	{L1 "\n" L2 "\nXYZ", 0, -EINVAL, 0},
};
/* clang-format on */

START_TEST(test_text)
{
	const struct text_case *c = &text_cases[_i];
	size_t len = c->len ? c->len : strlen(c->text);
	struct maps *m = NULL;
	int r = maps_parse(c->text, len, &m);

	ck_assert_msg(r == c->ret, "case %d: got %d, want %d", _i, r, c->ret);
	if (r == 0) {
		ck_assert_uint_eq(m->n, c->n);
		for (size_t i = 1; i < m->n; i++)
			ck_assert_uint_le(m->v[i - 1].end, m->v[i].start);
		maps_free(m);
	} else {
		ck_assert_ptr_null(m);
	}
}
END_TEST

START_TEST(test_parse_args)
{
	struct maps *m = NULL;

	ck_assert_int_eq(maps_parse(NULL, 0, &m), 0);
	ck_assert_uint_eq(m->n, 0);
	ck_assert_ptr_null(maps_find(m, 0));
	ck_assert_ptr_null(maps_find_kind(m, MAPS_STACK));
	maps_free(m);
	ck_assert_int_eq(maps_parse(NULL, 5, &m), -EINVAL);
	ck_assert_int_eq(maps_parse(L1, strlen(L1), NULL), -EINVAL);
	maps_free(NULL);
}
END_TEST

START_TEST(test_find)
{
	struct maps *m = parse_file(recorded[_i].file);

	ck_assert_ptr_null(maps_find(m, 0));
	ck_assert_ptr_null(maps_find(m, m->v[0].start - 1));
	ck_assert_ptr_null(maps_find(m, UINT64_MAX));
	ck_assert_ptr_null(maps_find(m, m->v[m->n - 1].end));
	for (size_t i = 0; i < m->n; i++) {
		const struct maps_entry *e = &m->v[i];
		const struct maps_entry *next = i + 1 < m->n ? &m->v[i + 1] : NULL;

		ck_assert_ptr_eq(maps_find(m, e->start), e);
		ck_assert_ptr_eq(maps_find(m, e->end - 1), e);
		ck_assert_ptr_eq(maps_find(m, e->start + (e->end - e->start) / 2), e);
		if (next && next->start == e->end) {
			ck_assert_ptr_eq(maps_find(m, e->end), next);
		} else {
			ck_assert_ptr_null(maps_find(m, e->end));
			if (next)
				ck_assert_ptr_null(maps_find(m, next->start - 1));
		}
	}
	maps_free(m);
}
END_TEST

START_TEST(test_used)
{
	const struct recorded *r = &recorded[_i];
	struct maps *m = parse_file(r->file);
	struct rangeset s = RANGESET_INIT;

	/* Stale contents are replaced, not merged. */
	ck_assert_int_eq(rangeset_add(&s, 0x1000, 0x2000), 0);
	ck_assert_int_eq(maps_used(m, &s), 0);
	ck_assert_uint_eq(s.n, r->used_ranges);
	ck_assert_uint_eq(rangeset_total(&s), r->total);
	ck_assert(!rangeset_contains(&s, 0x1000));
	for (size_t i = 0; i < m->n; i++) {
		ck_assert(rangeset_covers(&s, m->v[i].start, m->v[i].end));
		if (i + 1 < m->n && m->v[i].end < m->v[i + 1].start)
			ck_assert(!rangeset_overlaps(&s, m->v[i].end, m->v[i + 1].start));
	}
	rangeset_free(&s);
	maps_free(m);
}
END_TEST

/* Ways one model can differ from another; each must make them unequal. */
enum mutation {
	MUT_NONE,
	MUT_START,
	MUT_END,
	MUT_OFFSET,
	MUT_PROT,
	MUT_SHARED,
	MUT_DEV,
	MUT_INODE,
	MUT_PATH,
	MUT_PATH_NULL,
	MUT_DELETED,
	MUT_COUNT,
	MUT_MAX,
};

START_TEST(test_equal)
{
	struct maps *a = parse_file("pie-deleted.maps");
	struct maps *b = parse_file("pie-deleted.maps");
	struct maps_entry *e = &b->v[12]; /* the first libc mapping */
	char other[] = "/usr/lib/x86_64-linux-gnu/libc.so.7";

	ck_assert_str_eq(e->path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
	switch ((enum mutation)_i) {
	case MUT_NONE:
		break;
	case MUT_START:
		e->start -= 0x1000;
		break;
	case MUT_END:
		e->end += 0x1000;
		break;
	case MUT_OFFSET:
		e->offset += 0x1000;
		break;
	case MUT_PROT:
		e->prot |= PROT_WRITE;
		break;
	case MUT_SHARED:
		e->shared = true;
		break;
	case MUT_DEV:
		e->dev_minor = 1;
		break;
	case MUT_INODE:
		e->inode++;
		break;
	case MUT_PATH:
		e->path = other;
		break;
	case MUT_PATH_NULL:
		e->path = NULL;
		break;
	case MUT_DELETED:
		e->deleted = true;
		break;
	case MUT_COUNT:
		b->n--;
		break;
	case MUT_MAX:
		break;
	}
	ck_assert_int_eq(maps_equal(a, b), _i == MUT_NONE);
	ck_assert_int_eq(maps_equal(b, a), _i == MUT_NONE);
	ck_assert(maps_equal(a, a));
	maps_free(a);
	maps_free(b);
}
END_TEST

START_TEST(test_equal_across_dumps)
{
	struct maps *a = parse_file("nopie.maps");
	struct maps *b = parse_file("static.maps");

	ck_assert(!maps_equal(a, b));
	maps_free(a);
	maps_free(b);
}
END_TEST

START_TEST(test_span_of)
{
	struct maps *m = parse_file("pie-deleted.maps");
	uint64_t start = 1, end = 2;

	/* A deleted file is found by its name without the suffix. */
	ck_assert_int_eq(maps_span_of(m, "/tmp/optd maps test/gone.bin", &start, &end), 0);
	ck_assert_uint_eq(start, 0x7f31dff50000);
	ck_assert_uint_eq(end, 0x7f31dff54000);
	/* Two separate mappings of the "same" name span what lies between. */
	ck_assert_int_eq(maps_span_of(m, "/dev/zero", &start, &end), 0);
	ck_assert_uint_eq(start, 0x7f31dfd5e000);
	ck_assert_uint_eq(end, 0x7f31dfd66000);
	ck_assert_int_eq(maps_span_of(m, "/usr/lib/x86_64-linux-gnu/libc.so.6", &start, &end), 0);
	ck_assert_uint_eq(start, 0x7f31dfd6b000);
	ck_assert_uint_eq(end, 0x7f31dff40000);
	ck_assert_int_eq(maps_span_of(m, "[stack]", &start, &end), 0);
	ck_assert_uint_eq(start, 0x7ffd0ca3d000);

	start = 1;
	end = 2;
	ck_assert_int_eq(maps_span_of(m, "/tmp/optd maps test/gone.bin (deleted)", &start, &end),
			 -ENOENT);
	ck_assert_int_eq(maps_span_of(m, "/usr/lib/x86_64-linux-gnu/libc.so", &start, &end),
			 -ENOENT);
	ck_assert_int_eq(maps_span_of(m, "", &start, &end), -ENOENT);
	ck_assert_uint_eq(start, 1); /* ret_ untouched on failure */
	ck_assert_uint_eq(end, 2);
	maps_free(m);
}
END_TEST

START_TEST(test_parse_enomem)
{
	size_t len;
	char *text = load("sqlite3-pie.maps", &len);
	struct maps *m = NULL;
	int parse_ret, read_ret;

	/* Check allocates too: assert only once allocations work again. */
	fail_alloc = true;
	parse_ret = maps_parse(text, len, &m);
	read_ret = maps_read(getpid(), &m);
	fail_alloc = false;
	ck_assert_int_eq(parse_ret, -ENOMEM);
	ck_assert_int_eq(read_ret, -ENOMEM);
	ck_assert_ptr_null(m);
	free(text);
}
END_TEST

/* -- maps_read on live processes -- */

START_TEST(test_read_self)
{
	struct maps *m = NULL;
	int local = 0;
	const struct maps_entry *e;
	char exe[4096];
	ssize_t n;

	ck_assert_int_eq(maps_read(getpid(), &m), 0);
	ck_assert_uint_gt(m->n, 5);

	e = maps_find(m, (uintptr_t)&local);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->kind, MAPS_STACK);
	ck_assert_ptr_eq(e, maps_find_kind(m, MAPS_STACK));
	ck_assert_uint_eq(e->prot, PROT_READ | PROT_WRITE);

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	e = maps_find(m, (uintptr_t)&maps_parse);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->kind, MAPS_FILE);
	ck_assert_str_eq(e->path, exe);
	ck_assert_uint_eq(e->prot, PROT_READ | PROT_EXEC);
	ck_assert(!e->deleted);

	/* libc's code is there, by name (not by a symbol's address: sanitizers interpose those). */
	e = NULL;
	for (size_t i = 0; i < m->n && !e; i++)
		if (m->v[i].path && strstr(m->v[i].path, "/libc.so") && m->v[i].prot & PROT_EXEC)
			e = &m->v[i];
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->kind, MAPS_FILE);

	ck_assert_ptr_nonnull(maps_find_kind(m, MAPS_VDSO));
	maps_free(m);
}
END_TEST

/*
 * Thousands of mappings, so the text spans many of the kernel's page-sized
 * reads; every one must come back with its own bounds and protection.
 */
START_TEST(test_read_many)
{
	const size_t pages = 6000;
	struct maps *m = NULL, *again = NULL;
	uint8_t *base;

	base = mmap(NULL, pages * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(base, MAP_FAILED);
	/* Alternate protections so no two neighbours merge. */
	for (size_t i = 1; i < pages; i += 2)
		ck_assert_int_eq(mprotect(base + i * 4096, 4096, PROT_NONE), 0);

	ck_assert_int_eq(maps_read(getpid(), &m), 0);
	ck_assert_uint_gt(m->n, pages);
	for (size_t i = 0; i < pages; i++) {
		uint64_t a = (uintptr_t)base + i * 4096;
		const struct maps_entry *e = maps_find(m, a + 100);

		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(e->start, a);
		ck_assert_uint_eq(e->end, a + 4096);
		ck_assert_uint_eq(e->prot, i % 2 ? 0 : PROT_READ);
		ck_assert_ptr_null(e->path);
	}

	/* The same through an fd kept open, read twice (this process's own allocations aside). */
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(maps_read_fd(fd, &again), 0);
		for (size_t i = 0; i < pages; i++) {
			const struct maps_entry *e = maps_find(again, (uintptr_t)base + i * 4096);
			ck_assert_ptr_nonnull(e);
			ck_assert_uint_eq(e->start, (uintptr_t)base + i * 4096);
			ck_assert_uint_eq(e->prot, i % 2 ? 0 : PROT_READ);
		}
		maps_free(again);
	}

	/* A change shows up in the next read, and the models differ; through the fd too. */
	ck_assert_int_eq(munmap(base + 4096, 2 * 4096), 0);
	ck_assert_int_eq(maps_read(getpid(), &again), 0);
	ck_assert_ptr_null(maps_find(again, (uintptr_t)base + 4096));
	ck_assert_ptr_null(maps_find(again, (uintptr_t)base + 2 * 4096));
	ck_assert_ptr_nonnull(maps_find(again, (uintptr_t)base + 3 * 4096));
	ck_assert(!maps_equal(m, again));
	maps_free(m);
	ck_assert_int_eq(maps_read_fd(fd, &m), 0);
	ck_assert_ptr_null(maps_find(m, (uintptr_t)base + 4096));
	ck_assert_ptr_null(maps_find(m, (uintptr_t)base + 2 * 4096));
	ck_assert_ptr_nonnull(maps_find(m, (uintptr_t)base + 3 * 4096));
	close(fd);
	maps_free(again);
	maps_free(m);
	munmap(base, pages * 4096);
}
END_TEST

START_TEST(test_read_gone)
{
	struct maps *m = (struct maps *)0x1;
	pid_t pid;
	int status;
	FILE *f;
	long pid_max = 0;

	/* A child that was reaped is gone. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(maps_read(pid, &m), -ESRCH);
	ck_assert_ptr_eq(m, (struct maps *)0x1);

	/* Beyond pid_max nothing ever exists. */
	f = fopen("/proc/sys/kernel/pid_max", "re");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &pid_max), 1);
	fclose(f);
	ck_assert_int_eq(maps_read((pid_t)pid_max + 1, &m), -ESRCH);

	ck_assert_int_eq(maps_read(0, &m), -EINVAL);
	ck_assert_int_eq(maps_read(-1, &m), -EINVAL);
}
END_TEST

/* A zombie still has /proc/PID but no address space: an empty model, not an error. */
START_TEST(test_read_zombie)
{
	struct maps *m = NULL;
	siginfo_t si;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(maps_read(pid, &m), 0);
	ck_assert_uint_eq(m->n, 0);
	maps_free(m);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

static Suite *maps_suite(void)
{
	Suite *s = suite_create("maps");
	TCase *tc = tcase_create("parse");
	TCase *live = tcase_create("read");

	tcase_add_loop_test(tc, test_recorded_facts, 0, ARRAY_SIZE(recorded));
	tcase_add_loop_test(tc, test_recorded_against_reference, 0, ARRAY_SIZE(recorded));
	tcase_add_loop_test(tc, test_entry_facts, 0, ARRAY_SIZE(entry_facts));
	tcase_add_loop_test(tc, test_line, 0, ARRAY_SIZE(line_cases));
	tcase_add_loop_test(tc, test_text, 0, ARRAY_SIZE(text_cases));
	tcase_add_test(tc, test_parse_args);
	tcase_add_loop_test(tc, test_find, 0, ARRAY_SIZE(recorded));
	tcase_add_loop_test(tc, test_used, 0, ARRAY_SIZE(recorded));
	tcase_add_loop_test(tc, test_equal, MUT_NONE, MUT_MAX);
	tcase_add_test(tc, test_equal_across_dumps);
	tcase_add_test(tc, test_span_of);
	tcase_add_test(tc, test_parse_enomem);
	suite_add_tcase(s, tc);

	tcase_add_test(live, test_read_self);
	tcase_add_test(live, test_read_many);
	tcase_add_test(live, test_read_gone);
	tcase_add_test(live, test_read_zombie);
	tcase_set_timeout(live, 60);
	suite_add_tcase(s, live);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(maps_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
