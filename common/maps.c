/*
 * The /proc/PID/maps model.
 *
 * A line is what fs/proc/task_mmu.c prints:
 *
 *   START-END PERMS OFFSET MAJOR:MINOR INODE [padding NAME]
 *
 * in hex but for the decimal inode, with the name padded to a column and
 * printed verbatim after that (a file name may contain spaces; a newline in it
 * is printed as "\012", which we keep as it is).
 *
 * A parsed model is a single allocation: the struct maps, its entries and the
 * names they point to, so maps_free() is one free() and a half-built model
 * never leaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "util.h"

#define DELETED_SUFFIX " (deleted)"

/* A cursor over one line of text, which is not NUL-terminated. */
struct cursor {
	const char *p;
	const char *end;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* At least one hex digit, no overflow. */
static int parse_hex(struct cursor *c, uint64_t *ret)
{
	uint64_t v = 0;
	const char *start = c->p;
	int d;

	while (c->p < c->end && (d = hexval(*c->p)) >= 0) {
		if (v > UINT64_MAX >> 4)
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
		c->p++;
	}
	if (c->p == start)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_dec(struct cursor *c, uint64_t *ret)
{
	uint64_t v = 0;
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		unsigned d = (unsigned)(*c->p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
		c->p++;
	}
	if (c->p == start)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int expect(struct cursor *c, char ch)
{
	if (c->p >= c->end || *c->p != ch)
		return -EINVAL;
	c->p++;
	return 0;
}

/* One perms letter: the expected one or '-'. */
static int parse_flag(struct cursor *c, char yes, unsigned bit, unsigned *prot)
{
	if (c->p >= c->end)
		return -EINVAL;
	if (*c->p == yes)
		*prot |= bit;
	else if (*c->p != '-')
		return -EINVAL;
	c->p++;
	return 0;
}

static enum maps_kind kind_of(const char *name)
{
	/* clang-format off */
	static const struct {
		const char *name;
		enum maps_kind kind;
	} specials[] = {
		{"[heap]", MAPS_HEAP},
		{"[stack]", MAPS_STACK},
		{"[vdso]", MAPS_VDSO},
		{"[vvar]", MAPS_VVAR},
		{"[vvar_vclock]", MAPS_VVAR}, /* the clock pages, split from [vvar] in 6.x */
		{"[vsyscall]", MAPS_VSYSCALL},
	};
	/* clang-format on */

	if (!name)
		return MAPS_ANON;
	if (name[0] == '/')
		return MAPS_FILE;
	for (size_t i = 0; i < ARRAY_SIZE(specials); i++)
		if (!strcmp(name, specials[i].name))
			return specials[i].kind;
	/* [anon:NAME], [anon_shmem:NAME], [uprobes], the old [stack:TID], anon_inode:[...]. */
	return MAPS_SPECIAL;
}

/*
 * Parses one line (without its newline) into e. The name, if any, is copied
 * to *pool, which advances past it and its NUL.
 */
static int parse_line(const char *line, size_t len, struct maps_entry *e, char **pool)
{
	struct cursor c = {line, line + len};
	uint64_t major, minor;
	const char *name;
	size_t name_len;
	char perm_share;
	int r;

	*e = (struct maps_entry){0};
	r = parse_hex(&c, &e->start);
	r = r ?: expect(&c, '-');
	r = r ?: parse_hex(&c, &e->end);
	r = r ?: expect(&c, ' ');
	r = r ?: parse_flag(&c, 'r', PROT_READ, &e->prot);
	r = r ?: parse_flag(&c, 'w', PROT_WRITE, &e->prot);
	r = r ?: parse_flag(&c, 'x', PROT_EXEC, &e->prot);
	if (r < 0)
		return r;
	if (c.p >= c.end)
		return -EINVAL;
	perm_share = *c.p++;
	if (perm_share != 's' && perm_share != 'p')
		return -EINVAL;
	e->shared = perm_share == 's';
	r = expect(&c, ' ');
	r = r ?: parse_hex(&c, &e->offset);
	r = r ?: expect(&c, ' ');
	r = r ?: parse_hex(&c, &major);
	r = r ?: expect(&c, ':');
	r = r ?: parse_hex(&c, &minor);
	r = r ?: expect(&c, ' ');
	r = r ?: parse_dec(&c, &e->inode);
	if (r < 0)
		return r;
	/* The kernel's dev_t has 12 major and 20 minor bits. */
	if (major > 0xfff || minor > 0xfffff)
		return -EINVAL;
	e->dev_major = (unsigned)major;
	e->dev_minor = (unsigned)minor;
	if (e->start >= e->end || (e->start | e->end) & (PAGE_SIZE_4K - 1))
		return -EINVAL;

	/* Anything after the inode must be padding and then a name. */
	if (c.p < c.end && *c.p != ' ')
		return -EINVAL;
	while (c.p < c.end && *c.p == ' ')
		c.p++;
	if (c.p == c.end)
		return 0; /* no name */

	name = c.p;
	name_len = (size_t)(c.end - c.p);
	if (memchr(name, '\0', name_len))
		return -EINVAL;
	/* d_path() appends the suffix to unlinked files; bracketed names end in ']'. */
	if (name_len > strlen(DELETED_SUFFIX) && !memcmp(name + name_len - strlen(DELETED_SUFFIX),
							 DELETED_SUFFIX, strlen(DELETED_SUFFIX))) {
		e->deleted = true;
		name_len -= strlen(DELETED_SUFFIX);
	}
	memcpy(*pool, name, name_len);
	(*pool)[name_len] = '\0';
	e->path = *pool;
	*pool += name_len + 1;
	e->kind = kind_of(e->path);
	return 0;
}

/*
 * Parses len bytes of /proc/PID/maps text (no NUL needed). The last line may
 * lack its newline; any other empty line is malformed. Entries must be sorted
 * and disjoint, as the kernel prints them: text stitched from reads taken while
 * the address space changed can break that, and is reported as -EINVAL rather
 * than modelled wrongly. Returns 0 and *ret (free with maps_free()), -EINVAL or
 * -ENOMEM.
 */
int maps_parse(const char *text, size_t len, struct maps **ret)
{
	_cleanup_free_ struct maps *m = NULL;
	size_t lines = 0, entries_bytes, total;
	const char *p, *end;
	char *pool;

	if (!ret || (!text && len))
		return -EINVAL;
	if (!text)
		text = "";
	p = text;
	end = text + len;

	/* Upper bound of entries: newlines plus an unterminated last line. */
	for (const char *q = text; q < end; q++)
		lines += *q == '\n';
	lines++;

	/* struct maps, then the entries, then the names: each name is at most its line. */
	if (lines > (SIZE_MAX - sizeof(*m)) / sizeof(m->v[0]))
		return -ENOMEM;
	entries_bytes = lines * sizeof(m->v[0]);
	total = sizeof(*m) + entries_bytes;
	if (len > SIZE_MAX - total - lines)
		return -ENOMEM;
	total += len + lines;

	m = malloc(total);
	if (!m)
		return -ENOMEM;
	m->v = (struct maps_entry *)(m + 1);
	m->n = 0;
	pool = (char *)m->v + entries_bytes;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct maps_entry *e = &m->v[m->n];
		int r;

		r = parse_line(p, line_len, e, &pool);
		if (r < 0)
			return r;
		if (m->n > 0 && e->start < m->v[m->n - 1].end)
			return -EINVAL;
		m->n++;
		p += line_len + (nl ? 1 : 0);
	}

	*ret = TAKE_PTR(m);
	return 0;
}

void maps_free(struct maps *m)
{
	free(m);
}

/* Reads all of fd into a growing NUL-terminated buffer. 0 or -errno. */
/* Reads fd from offset 0 to its end (positional: an fd kept open reads anew). */
static int read_all(int fd, char **ret_buf, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		ssize_t n;

		if (cap - len < 4096 + 1) {
			size_t ncap = cap ? cap * 2 : 16384;
			char *nbuf;

			if (ncap < cap)
				return -ENOMEM;
			nbuf = realloc(buf, ncap);
			if (!nbuf)
				return -ENOMEM;
			buf = nbuf;
			cap = ncap;
		}
		n = pread(fd, buf + len, cap - len - 1, (off_t)len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negerrno();
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret_len = len;
	*ret_buf = TAKE_PTR(buf);
	return 0;
}

/*
 * Reads and parses /proc/PID/maps. The text is read to its end before any of
 * it is parsed; the kernel hands it out a page at a time, so a target that maps
 * or unmaps meanwhile can yield entries out of order: such a read is retried a
 * few times (a stopped target never needs it). A process that is gone gives
 * -ESRCH (a zombie, whose address space is gone, gives an empty model).
 */
int maps_read_fd(int fd, struct maps **ret)
{
	int r = -EINVAL;

	for (int attempt = 0; attempt < 4; attempt++) {
		_cleanup_free_ char *text = NULL;
		size_t len;

		r = read_all(fd, &text, &len);
		if (r < 0)
			return r;
		r = maps_parse(text, len, ret);
		if (r != -EINVAL)
			return r;
	}
	return r;
}

int maps_read(pid_t pid, struct maps **ret)
{
	char path[64];
	_cleanup_close_ int fd = -1;

	if (pid <= 0 || !ret)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	return maps_read_fd(fd, ret);
}

const struct maps_entry *maps_find(const struct maps *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < m->n && m->v[lo].start <= addr)
		return &m->v[lo];
	return NULL;
}

const struct maps_entry *maps_find_kind(const struct maps *m, enum maps_kind kind)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].kind == kind)
			return &m->v[i];
	return NULL;
}

/* Replaces s's contents. On -ENOMEM s holds a part of the ranges. */
int maps_used(const struct maps *m, struct rangeset *s)
{
	rangeset_clear(s);
	for (size_t i = 0; i < m->n; i++) {
		int r = rangeset_add(s, m->v[i].start, m->v[i].end);

		if (r < 0)
			return r;
	}
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

/* Compares every field, device and inode too: a file replaced under its name is a change. */
bool maps_equal(const struct maps *a, const struct maps *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct maps_entry *x = &a->v[i], *y = &b->v[i];

		if (x->start != y->start || x->end != y->end || x->offset != y->offset ||
		    x->prot != y->prot || x->shared != y->shared || x->dev_major != y->dev_major ||
		    x->dev_minor != y->dev_minor || x->inode != y->inode ||
		    x->deleted != y->deleted || x->kind != y->kind || !str_eq(x->path, y->path))
			return false;
	}
	return true;
}

/*
 * Deleted mappings of the path count too (their name is stored without the
 * suffix): a program whose file was replaced on disk still runs the old one.
 */
int maps_span_of(const struct maps *m, const char *path, uint64_t *ret_start, uint64_t *ret_end)
{
	uint64_t start = UINT64_MAX, end = 0;
	bool found = false;

	if (!path)
		return -EINVAL;
	for (size_t i = 0; i < m->n; i++) {
		if (!m->v[i].path || strcmp(m->v[i].path, path))
			continue;
		found = true;
		if (m->v[i].start < start)
			start = m->v[i].start;
		if (m->v[i].end > end)
			end = m->v[i].end;
	}
	if (!found)
		return -ENOENT;
	if (ret_start)
		*ret_start = start;
	if (ret_end)
		*ret_end = end;
	return 0;
}
