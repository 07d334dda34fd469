/*
 * /proc/.../stat fields. See procstat.h.
 */
#include <errno.h>
#include <fcntl.h>
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
