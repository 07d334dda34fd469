/*
 * Unit tests for common/log.c: stderr is pointed at a pipe and each message is
 * read back whole (one write per message, so one read gets it).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int pipe_rd = -1;
static int saved_stderr = -1;

static void capture_start(void)
{
	int fds[2];

	ck_assert_int_eq(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	saved_stderr = dup(STDERR_FILENO);
	ck_assert_int_ge(saved_stderr, 0);
	ck_assert_int_eq(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
	close(fds[1]);
	pipe_rd = fds[0];
	log_set_prefix(NULL);
	log_set_level(LOG_LVL_INFO);
}

static void capture_stop(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	close(pipe_rd);
}

/* What has been logged since the last call; "" if nothing. */
static const char *captured(void)
{
	static char buf[8192];
	ssize_t n = read(pipe_rd, buf, sizeof(buf) - 1);

	if (n < 0) {
		ck_assert_int_eq(errno, EAGAIN);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

START_TEST(test_format)
{
	log_error("cannot attach to %d: %s", 1234, "gone");
	ck_assert_str_eq(captured(), "optd: cannot attach to 1234: gone\n");
	log_warn("with newline\n");
	ck_assert_str_eq(captured(), "optd: with newline\n");
	log_info("%s", "");
	ck_assert_str_eq(captured(), "optd: \n");
}
END_TEST

START_TEST(test_prefix)
{
	log_set_prefix("optd[42]");
	log_info("x");
	ck_assert_str_eq(captured(), "optd[42]: x\n");
	log_set_prefix("");
	log_info("y");
	ck_assert_str_eq(captured(), "optd: y\n");
	log_set_prefix("test_log");
	log_info("z");
	log_set_prefix(NULL);
	log_info("w");
	ck_assert_str_eq(captured(), "test_log: z\noptd: w\n");
}
END_TEST

START_TEST(test_levels)
{
	ck_assert_int_eq(log_get_level(), LOG_LVL_INFO);
	log_debug("hidden %d", 1);
	log_trace("hidden %d", 2);
	log_emit(LOG_LVL_DEBUG, "hidden %d", 3);
	ck_assert_str_eq(captured(), "");
	log_set_level(LOG_LVL_TRACE);
	ck_assert(log_enabled(LOG_LVL_TRACE));
	log_debug("d");
	log_trace("t");
	ck_assert_str_eq(captured(), "optd: d\noptd: t\n");
	log_set_level(LOG_LVL_ERROR);
	log_warn("hidden");
	log_info("hidden");
	log_error("e");
	ck_assert_str_eq(captured(), "optd: e\n");
}
END_TEST

START_TEST(test_errno_preserved)
{
	errno = EXDEV;
	log_info("x");
	ck_assert_int_eq(errno, EXDEV);
	errno = ENOSPC;
	log_debug("not printed");
	ck_assert_int_eq(errno, ENOSPC);
	/* %m sees the caller's errno. */
	errno = ESRCH;
	log_error("gone: %m");
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_str_eq(captured(), "optd: x\noptd: gone: No such process\n");
	/* A closed stderr is no reason to change errno either. */
	close(STDERR_FILENO);
	errno = EXDEV;
	log_error("into the void");
	ck_assert_int_eq(errno, EXDEV);
}
END_TEST

START_TEST(test_long_message)
{
	char big[5000];
	const char *out;
	size_t len;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_error("%s", big);
	out = captured();
	len = strlen(out);
	ck_assert_uint_lt(len, sizeof(big));
	ck_assert_str_eq(out + len - 4, "...\n");
	ck_assert(!strncmp(out, "optd: aaaa", 10));
	/* The next message is whole again. */
	log_error("short");
	ck_assert_str_eq(captured(), "optd: short\n");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, capture_start, capture_stop);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_prefix);
	tcase_add_test(tc, test_levels);
	tcase_add_test(tc, test_errno_preserved);
	tcase_add_test(tc, test_long_message);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
