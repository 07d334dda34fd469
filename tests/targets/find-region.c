/*
 * find-region: finds optd's regions in another process.
 *
 *   find-region [--header] PID
 *
 * Reads /proc/PID/maps and, for every anonymous mapping, the first bytes of
 * the mapping (process_vm_readv, or /proc/PID/mem when the pages are not
 * readable). Prints "START-END PERMS" (hex, as in maps) for each mapping
 * that starts with the region magic, extended over the contiguous anonymous
 * mappings that the header's size covers (the kernel splits a region whose
 * code area has MADV_HUGEPAGE); PERMS lists each distinct permission of
 * those, joined by commas. With --header, each line goes on with
 * " base=0x.. size=0x.. version=N owner=PID generation=N".
 *
 * Exit status: 0 when at least one region was found, 1 when none, 2 when
 * the process cannot be inspected.
 *
 * A mapping that disappears between reading maps and reading its bytes (the
 * target is running) is skipped: it was not a region that stays.
 */
#include "../../injector/region_header.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Anonymous: no file behind it ([heap], [stack] and the like are not). */
static bool is_anonymous(unsigned long inode, const char *path)
{
	return inode == 0 && (path[0] == '\0' || strncmp(path, "[anon:", 6) == 0);
}

/* Reads @len bytes at @addr in @pid; returns 0 or -errno. */
static int read_remote(pid_t pid, int *mem_fd, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
	ssize_t n;

	n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (n == (ssize_t)len)
		return 0;
	if (n < 0 && errno == ESRCH)
		return -ESRCH;

	/* not readable as the target sees it (PROT_NONE, --x): try /proc/PID/mem */
	if (*mem_fd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
		*mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (*mem_fd < 0)
			return -errno;
	}
	n = pread(*mem_fd, buf, len, (off_t)addr);
	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

struct mapping {
	uint64_t start, stop;
	char perms[8];
	bool anonymous;
};

/* Parses one line of maps; returns false for a line it cannot read. */
static bool parse_line(char *line, struct mapping *ret)
{
	unsigned long long offset;
	unsigned long inode;
	char dev[16], *p;
	int path_at = 0;

	if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %llx %15s %lu %n", &ret->start, &ret->stop,
		   ret->perms, &offset, dev, &inode, &path_at) < 6)
		return false;
	p = path_at ? line + path_at : "";
	p[strcspn(p, "\n")] = '\0';
	ret->anonymous = is_anonymous(inode, p);
	return true;
}

int main(int argc, char **argv)
{
	bool header = false;
	char path[64], line[4096];
	const char *pid_arg;
	int mem_fd = -1, found = 0;
	struct mapping *m = NULL;
	size_t n = 0, cap = 0;
	FILE *maps;
	char *end;
	long pid;

	if (argc == 3 && strcmp(argv[1], "--header") == 0)
		header = true;
	else if (argc != 2) {
		fprintf(stderr, "usage: find-region [--header] PID\n");
		return 2;
	}
	pid_arg = argv[argc - 1];
	pid = strtol(pid_arg, &end, 10);
	if (end == pid_arg || *end || pid <= 0) {
		fprintf(stderr, "find-region: bad pid '%s'\n", pid_arg);
		return 2;
	}

	snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
	maps = fopen(path, "r");
	if (!maps) {
		fprintf(stderr, "find-region: %s: %s\n", path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), maps)) {
		if (n == cap) {
			struct mapping *bigger;

			cap = cap ? 2 * cap : 256;
			bigger = realloc(m, cap * sizeof(*m));
			if (!bigger) {
				fprintf(stderr, "find-region: out of memory\n");
				return 2;
			}
			m = bigger;
		}
		if (parse_line(line, &m[n]))
			n++;
	}
	if (ferror(maps)) {
		fprintf(stderr, "find-region: reading %s: %s\n", path, strerror(errno));
		return 2;
	}
	fclose(maps);

	for (size_t i = 0; i < n; i++) {
		struct optd_region_header h;
		char perms[64];
		uint64_t start, stop;
		int err;

		if (!m[i].anonymous || m[i].stop - m[i].start < sizeof(h))
			continue;
		err = read_remote((pid_t)pid, &mem_fd, m[i].start, &h, sizeof(h));
		if (err == -ESRCH) {
			fprintf(stderr, "find-region: process %ld is gone\n", pid);
			return 2;
		}
		if (err < 0 || memcmp(h.magic, OPTD_REGION_MAGIC, OPTD_REGION_MAGIC_LEN) != 0)
			continue;

		/*
		 * The kernel splits one region into several mappings when parts
		 * of it differ (MADV_HUGEPAGE on the code area): the contiguous
		 * anonymous mappings up to the size in the header are the same
		 * region. Their permissions are listed when they differ.
		 */
		start = m[i].start;
		stop = m[i].stop;
		snprintf(perms, sizeof(perms), "%s", m[i].perms);
		while (i + 1 < n && m[i + 1].anonymous && m[i + 1].start == stop &&
		       m[i + 1].stop - start <= h.size) {
			i++;
			stop = m[i].stop;
			if (!strstr(perms, m[i].perms) && strlen(perms) + 6 < sizeof(perms)) {
				strcat(perms, ",");
				strcat(perms, m[i].perms);
			}
		}
		found++;
		printf("%" PRIx64 "-%" PRIx64 " %s", start, stop, perms);
		if (header)
			printf(" base=0x%" PRIx64 " size=0x%" PRIx64 " version=%" PRIu32
			       " owner=%" PRIu64 " generation=%" PRIu64,
			       h.base, h.size, h.version, h.owner_pid, h.generation);
		printf("\n");
	}
	free(m);
	if (mem_fd >= 0)
		close(mem_fd);
	return found ? 0 : 1;
}
