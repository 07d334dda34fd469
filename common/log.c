/*
 * Logging to stderr.
 *
 * Each message is formatted into a stack buffer and handed to the kernel with
 * a single write(2): no stdio lock, no allocation, so a message can be logged
 * from a SIGCHLD path or right after fork() without deadlocking, and lines of
 * concurrent threads never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LOG_PREFIX_MAX 64
#define LOG_LINE_MAX 2048

static volatile int log_level = LOG_LVL_INFO;

/*
 * Two prefix buffers: a new prefix is written into the one not in use and then
 * published by switching the index, so a concurrent reader sees either the old
 * or the new prefix, never a half-written one (short of two setters racing,
 * which only main() does, once).
 */
static char log_prefixes[2][LOG_PREFIX_MAX] = {"optd", "optd"};
static volatile int log_prefix_cur;

void log_set_level(enum log_level level)
{
	if (level < LOG_LVL_ERROR)
		level = LOG_LVL_ERROR;
	if (level > LOG_LVL_TRACE)
		level = LOG_LVL_TRACE;
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	return (enum log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* NULL or "" restores the default "optd". Longer prefixes are truncated. */
void log_set_prefix(const char *prefix)
{
	int next = !__atomic_load_n(&log_prefix_cur, __ATOMIC_ACQUIRE);

	if (!prefix || !*prefix)
		prefix = "optd";
	snprintf(log_prefixes[next], sizeof(log_prefixes[next]), "%s", prefix);
	__atomic_store_n(&log_prefix_cur, next, __ATOMIC_RELEASE);
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report it */
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * Writes "PREFIX: message\n" to stderr if level is enabled. A message too long
 * for one line buffer is cut and ends in "...". errno is preserved, so callers
 * may log between a failing call and their use of errno.
 */
void log_emit(enum log_level level, const char *fmt, ...)
{
	int saved_errno = errno;
	char line[LOG_LINE_MAX];
	const char *prefix;
	size_t len;
	va_list ap;
	int n;

	if (!log_enabled(level))
		goto out;

	prefix = log_prefixes[__atomic_load_n(&log_prefix_cur, __ATOMIC_ACQUIRE)];
	n = snprintf(line, sizeof(line), "%s: ", prefix);
	if (n < 0)
		goto out;
	len = (size_t)n;

	va_start(ap, fmt);
	/* %m in fmt must see the caller's errno, not one changed by snprintf. */
	errno = saved_errno;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto out;
	len += (size_t)n;

	/* Keep room for the newline; mark a cut message. */
	if (len > sizeof(line) - 2) {
		len = sizeof(line) - 2;
		memcpy(line + len - 3, "...", 3);
	}
	/* Callers may or may not end with a newline; emit exactly one. */
	if (len == 0 || line[len - 1] != '\n')
		line[len++] = '\n';
	write_all(STDERR_FILENO, line, len);
out:
	errno = saved_errno;
}
