/*
 * A model of a process's address space, read from /proc/PID/maps.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "range.h"

enum maps_kind {
	MAPS_ANON,     /* no path */
	MAPS_FILE,     /* a path starting with '/' */
	MAPS_HEAP,     /* [heap] */
	MAPS_STACK,    /* [stack] */
	MAPS_VDSO,     /* [vdso] */
	MAPS_VVAR,     /* [vvar] and [vvar_vclock] */
	MAPS_VSYSCALL, /* [vsyscall] */
	MAPS_SPECIAL,  /* any other [name] or non-path name, e.g. [anon:foo], [uprobes] */
};

/* prot bits use PROT_READ, PROT_WRITE, PROT_EXEC from <sys/mman.h>. */
struct maps_entry {
	uint64_t start;
	uint64_t end;
	uint64_t offset;
	unsigned prot;
	bool shared; /* 's' rather than 'p' */
	unsigned dev_major;
	unsigned dev_minor;
	uint64_t inode;
	char *path;   /* NULL when the line has no name; " (deleted)" stripped */
	bool deleted; /* the name ended in " (deleted)" */
	enum maps_kind kind;
};

struct maps {
	struct maps_entry *v;
	size_t n;
};

/* Parses the text of a /proc/PID/maps file. 0, -EINVAL on a malformed line, -ENOMEM. */
int maps_parse(const char *text, size_t len, struct maps **ret);
/* Reads and parses /proc/PID/maps. 0, -ESRCH if the process is gone, other -errno. */
int maps_read(pid_t pid, struct maps **ret);
/*
 * The same from an open /proc/PID/maps, read again from its start: keeping
 * the fd saves opening it (the kernel regenerates the text at offset 0).
 */
int maps_read_fd(int fd, struct maps **ret);
void maps_free(struct maps *m);
static inline void maps_freep(struct maps **m)
{
	maps_free(*m);
}

/* The entry containing addr, or NULL. Entries are sorted; binary search. */
const struct maps_entry *maps_find(const struct maps *m, uint64_t addr);
/* The first entry of the given kind, or NULL. */
const struct maps_entry *maps_find_kind(const struct maps *m, enum maps_kind kind);
/* Fills s with every mapped range (coalesced). 0 or -ENOMEM. */
int maps_used(const struct maps *m, struct rangeset *s);
/* True if the two models list the same mappings (addresses, prot, offsets, names). */
bool maps_equal(const struct maps *a, const struct maps *b);
/* Lowest start and highest end of all mappings of the file with this exact path. -ENOENT if none.
 */
int maps_span_of(const struct maps *m, const char *path, uint64_t *ret_start, uint64_t *ret_end);
