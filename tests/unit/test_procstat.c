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

START_TEST(test_status_field)
{
	const char *text = "Name:\tcat\nTgid:\t42\nPid:\t43\nTracerPid:\t987\nUid:\t0\t0\t0\t0\n";
	const char *path = write_tmp(text);
	long v = -1;

	ck_assert_int_eq(procstat_status_field(path, "TracerPid", &v), 0);
	ck_assert_int_eq(v, 987);
	ck_assert_int_eq(procstat_status_field(path, "Tgid", &v), 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(procstat_status_field(path, "Uid", &v), 0);
	ck_assert_int_eq(v, 0);
	/* A key is matched whole: "Pid" is not "TracerPid" nor "PPid". */
	ck_assert_int_eq(procstat_status_field(path, "Pid", &v), 0);
	ck_assert_int_eq(v, 43);
	ck_assert_int_eq(procstat_status_field(path, "PPid", &v), -ENOENT);
	unlink(path);
	ck_assert_int_eq(procstat_status_field(path, "Tgid", &v), -ESRCH);

	ck_assert_int_eq(procstat_status_field("/proc/self/status", "Tgid", &v), 0);
	ck_assert_int_eq(v, getpid());
}
END_TEST

START_TEST(test_is_thread_of)
{
	ck_assert(procstat_is_thread_of(getpid(), getpid()));
	ck_assert(!procstat_is_thread_of(getpid(), getppid()));
	ck_assert(!procstat_is_thread_of(0x7ffffff0, 1));
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
	tcase_add_test(tc, test_status_field);
	tcase_add_test(tc, test_is_thread_of);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
