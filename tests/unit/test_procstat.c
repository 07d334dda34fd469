/*
 * procstat_field() over stat texts with hostile command names, and on this
 * process's own stat file.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

static const char *write_tmp(const char *text)
{
	static char path[] = "/tmp/optd-procstat-XXXXXX";
	int fd;

	strcpy(path, "/tmp/optd-procstat-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static const struct {
	const char *text;
	int field;
	int ret;
	const char *want;
} cases[] = {
    {"42 (cat) R 1 42 42 0 -1 4194560 103\n", 3, 0, "R"},
    {"42 (cat) R 1 42 42 0 -1 4194560 103\n", 4, 0, "1"},
    {"42 (cat) R 1 42 42 0 -1 4194560 103\n", 10, 0, "103"},
    {"42 (cat) R 1 42 42 0 -1 4194560 103\n", 11, -ENOENT, NULL},
    {"7 (a) b (c) d) S 3 7\n", 3, 0, "S"}, /* ')' and spaces in comm */
    {"7 (a) b (c) d) S 3 7\n", 4, 0, "3"},
    {"7 ( ) Z 1\n", 3, 0, "Z"},
    {"7 (x) T 1\n", 2, -ENOENT, NULL}, /* comm is not a field we count */
    {"garbage without parens\n", 3, -ENOENT, NULL},
    {"9 (y) S 123456789012345678901234567890\n", 4, -ERANGE, NULL},
};

START_TEST(test_table)
{
	char buf[16];
	const char *path = write_tmp(cases[_i].text);
	int r = procstat_field(path, cases[_i].field, buf, sizeof(buf));

	unlink(path);
	ck_assert_int_eq(r, cases[_i].ret);
	if (cases[_i].want)
		ck_assert_str_eq(buf, cases[_i].want);
}
END_TEST

START_TEST(test_self_and_gone)
{
	char buf[32], path[64];

	ck_assert_int_eq(procstat_field("/proc/self/stat", 3, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "R");
	ck_assert_int_eq(procstat_field("/proc/self/stat", 4, buf, sizeof(buf)), 0);
	ck_assert_int_eq(atoi(buf), getppid());
	snprintf(path, sizeof(path), "/proc/%d/stat", 0x7ffffff0);
	ck_assert_int_eq(procstat_field(path, 3, buf, sizeof(buf)), -ESRCH);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("procstat");
	TCase *tc = tcase_create("procstat");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, test_table, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_self_and_gone);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
