/*
 * /proc/.../stat fields. See procstat.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"
#include "util.h"

int procstat_field(const char *path, int field, char *buf, size_t len)
{
	char text[2048];
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	char *s, *end;
	size_t flen;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : negerrno();
	text[n] = 0;
	s = strrchr(text, ')');
	if (!s || field < 3)
		return -ENOENT;
	s++; /* at the space before field 3 */
	for (int f = 3; f <= field; f++) {
		if (*s != ' ')
			return -ENOENT;
		s++;
		if (f < field)
			s += strcspn(s, " \n");
	}
	end = s + strcspn(s, " \n");
	flen = (size_t)(end - s);
	if (!flen)
		return -ENOENT;
	if (flen >= len)
		return -ERANGE;
	memcpy(buf, s, flen);
	buf[flen] = 0;
	return 0;
}

int procstat_status_field(const char *path, const char *key, long *ret)
{
	char text[8192];
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t klen = strlen(key);
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negerrno();
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : negerrno();
	text[n] = 0;
	for (char *line = text; *line;) {
		char *next = strchr(line, '\n');
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			*ret = strtol(line + klen + 1, NULL, 10);
			return 0;
		}
		if (!next)
			break;
		line = next + 1;
	}
	return -ENOENT;
}

bool procstat_is_thread_of(pid_t tgid, pid_t tid)
{
	char path[64];
	struct stat sb;

	snprintf(path, sizeof(path), "/proc/%d/task/%d", tgid, tid);
	return stat(path, &sb) == 0;
}
