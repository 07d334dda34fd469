/*
 * Entry patches against a real child: the child calls a function through a
 * pointer on request and reports its result, so a patch that redirects the
 * function shows as a different answer, and its undo as the old one again.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "maps.h"
#include "mem.h"
#include "patch.h"
#include "process.h"
#include "ptrace.h"

__attribute__((noinline)) int patch_f(int x)
{
	__asm__ volatile("" ::: "memory");
	return x + 1;
}

__attribute__((noinline)) int patch_g(int x)
{
	__asm__ volatile("" ::: "memory");
	return x * 100;
}

__attribute__((noinline)) int patch_h(int x)
{
	__asm__ volatile("" ::: "memory");
	return x - 1000;
}

/* A function whose entry is a tight loop: a thread that calls it sits inside its first bytes. */
__asm__(".text\n"
	".globl patch_spin\n"
	".type patch_spin, @function\n"
	"patch_spin:\n"
	"1: jmp 1b\n"
	"nop\n nop\n nop\n nop\n"
	"ret\n"
	".size patch_spin, .-patch_spin\n");
void patch_spin(void);

struct child {
	pid_t pid;
	int cmd;    /* write a byte: call patch_f */
	int answer; /* read an int */
	struct inj_process *proc;
};

static void child_loop(int cmd, int answer)
{
	int (*volatile fp)(int) = patch_f;
	char c;

	while (read(cmd, &c, 1) == 1) {
		if (c == 's') {
			int ready = 0;
			/* Announce it: the next instructions are the call and the spin. */
			if (write(answer, &ready, sizeof(ready)) != sizeof(ready))
				_exit(2);
			patch_spin();
		}
		int v = fp(7);
		if (write(answer, &v, sizeof(v)) != sizeof(v))
			_exit(2);
	}
	_exit(0);
}

static void child_start(struct child *c)
{
	int to[2], from[2];
	struct inj_settings s = {.options = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL};

	ck_assert_int_eq(pipe(to), 0);
	ck_assert_int_eq(pipe(from), 0);
	c->pid = fork();
	ck_assert_int_ge(c->pid, 0);
	if (c->pid == 0) {
		close(to[1]);
		close(from[0]);
		child_loop(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	c->cmd = to[1];
	c->answer = from[0];
	ck_assert_int_eq(inj_process_seize(c->pid, &s, &c->proc), 0);
}

static int child_call(struct child *c)
{
	int v = -1;

	ck_assert_int_eq(write(c->cmd, "c", 1), 1);
	ck_assert_int_eq(read(c->answer, &v, sizeof(v)), sizeof(v));
	return v;
}

static void child_stop(struct child *c)
{
	inj_process_stop(c->proc);
	inj_process_detach(c->proc);
	inj_process_free(c->proc);
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	close(c->cmd);
	close(c->answer);
}

static struct inj_patch patch_f_to_g(struct child *c)
{
	struct inj_patch p;
	uint8_t orig[INJ_PATCH_LEN];

	ck_assert_int_eq(inj_mem_read(c->proc, (uint64_t)(uintptr_t)patch_f, orig, sizeof(orig)),
			 0);
	ck_assert_int_eq(
	    inj_patch_prepare((uint64_t)(uintptr_t)patch_f, (uint64_t)(uintptr_t)patch_g, orig, &p),
	    0);
	return p;
}

START_TEST(test_apply_and_undo)
{
	struct child c;
	struct inj_patch p;
	uint8_t now[INJ_PATCH_LEN];

	child_start(&c);
	ck_assert_int_eq(child_call(&c), 8);

	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	p = patch_f_to_g(&c);
	ck_assert_int_eq(inj_patch_check_threads(c.proc, &p, 1, NULL, NULL), 0);
	ck_assert_int_eq(inj_patch_apply(c.proc, &p, 1), 0);
	ck_assert(p.applied);
	ck_assert_int_eq(inj_mem_read(c.proc, p.addr, now, sizeof(now)), 0);
	ck_assert_mem_eq(now, p.jmp, INJ_PATCH_LEN);
	ck_assert_int_eq(inj_process_resume(c.proc), 0);
	/* The child's own call now lands in patch_g. */
	ck_assert_int_eq(child_call(&c), 700);

	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	ck_assert_int_eq(inj_patch_undo(c.proc, &p, 1), 0);
	ck_assert(!p.applied);
	ck_assert_int_eq(inj_mem_read(c.proc, p.addr, now, sizeof(now)), 0);
	ck_assert_mem_eq(now, p.orig, INJ_PATCH_LEN);
	ck_assert_int_eq(inj_process_resume(c.proc), 0);
	ck_assert_int_eq(child_call(&c), 8);
	child_stop(&c);
}
END_TEST

/* Retargeting several patches at once: each gets its own answer. */
START_TEST(test_retarget_all)
{
	struct child c;
	struct inj_patch p, stale, unapplied;
	struct inj_patch *pp[3] = {&p, &stale, &unapplied};
	uint64_t targets[3] = {(uint64_t)(uintptr_t)patch_h, (uint64_t)(uintptr_t)patch_h,
			       (uint64_t)(uintptr_t)patch_h};
	int results[3] = {1, 1, 1};
	uint8_t now[INJ_PATCH_LEN];

	child_start(&c);
	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	p = patch_f_to_g(&c);
	ck_assert_int_eq(inj_patch_apply(c.proc, &p, 1), 0);
	/* Applied, as far as it knows, but patch_g's entry holds no jmp of ours. */
	ck_assert_int_eq(inj_mem_read(c.proc, (uint64_t)(uintptr_t)patch_g, now, sizeof(now)), 0);
	ck_assert_int_eq(inj_patch_prepare((uint64_t)(uintptr_t)patch_g,
					   (uint64_t)(uintptr_t)patch_f, now, &stale),
			 0);
	stale.applied = true;
	unapplied = p;
	unapplied.applied = false;
	/* The code between the sites, which is written back as it was read. */
	uint64_t lo = p.addr < stale.addr ? p.addr : stale.addr;
	uint64_t hi = p.addr < stale.addr ? stale.addr : p.addr;
	static uint8_t between[2][4096];
	size_t blen = hi - lo - INJ_PATCH_LEN < sizeof(between[0]) ? hi - lo - INJ_PATCH_LEN
								   : sizeof(between[0]);
	ck_assert_int_eq(inj_mem_read(c.proc, lo + INJ_PATCH_LEN, between[0], blen), 0);
	ck_assert_int_eq(inj_patch_retarget_all(c.proc, pp, targets, 3, results), 0);
	ck_assert_int_eq(inj_mem_read(c.proc, lo + INJ_PATCH_LEN, between[1], blen), 0);
	ck_assert_mem_eq(between[0], between[1], blen);
	ck_assert_int_eq(results[0], 0);
	ck_assert_int_eq(results[1], -ESTALE);
	ck_assert_int_eq(results[2], -EINVAL);
	ck_assert_uint_eq(p.target, (uint64_t)(uintptr_t)patch_h);
	ck_assert_int_eq(inj_mem_read(c.proc, p.addr, now, sizeof(now)), 0);
	ck_assert_mem_eq(now, p.jmp, INJ_PATCH_LEN);
	ck_assert_int_eq(inj_process_resume(c.proc), 0);
	ck_assert_int_eq(child_call(&c), 7 - 1000);
	child_stop(&c);
}
END_TEST

START_TEST(test_thread_inside_patch)
{
	struct child c;
	uint8_t orig[INJ_PATCH_LEN], now[INJ_PATCH_LEN];
	bool busy[2] = {true, false};
	pid_t tid = 0;

	child_start(&c);
	int ready;
	ck_assert_int_eq(write(c.cmd, "s", 1), 1); /* it spins in patch_spin's first two bytes */
	ck_assert_int_eq(read(c.answer, &ready, sizeof(ready)), sizeof(ready));
	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	ck_assert_int_eq(inj_mem_read(c.proc, (uint64_t)(uintptr_t)patch_spin, orig, sizeof(orig)),
			 0);
	/*
	 * It announced itself a few instructions before the loop: let it run
	 * on until it is there (Check's timeout bounds this).
	 */
	for (;;) {
		struct user_regs_struct regs;
		ck_assert_int_eq(inj_ptrace_getregs(c.proc->threads[0]->tid, &regs), 0);
		if (regs.rip == (uint64_t)(uintptr_t)patch_spin)
			break;
		ck_assert_int_eq(inj_process_resume(c.proc), 0);
		ck_assert_int_eq(inj_process_stop(c.proc), 0);
	}
	struct inj_patch two[2];
	ck_assert_int_eq(inj_patch_prepare((uint64_t)(uintptr_t)patch_f,
					   (uint64_t)(uintptr_t)patch_g, (uint8_t[5]){0}, &two[0]),
			 0);
	ck_assert_int_eq(inj_patch_prepare((uint64_t)(uintptr_t)patch_spin,
					   (uint64_t)(uintptr_t)patch_g, orig, &two[1]),
			 0);
	ck_assert_int_eq(inj_patch_check_threads(c.proc, two, 2, busy, &tid), 1);
	ck_assert(!busy[0]);
	ck_assert(busy[1]);
	ck_assert_int_eq(tid, c.pid);
	ck_assert_int_eq(inj_mem_read(c.proc, (uint64_t)(uintptr_t)patch_spin, now, sizeof(now)),
			 0);
	ck_assert_mem_eq(now, orig, INJ_PATCH_LEN);
	child_stop(&c);
}
END_TEST

START_TEST(test_stale_site)
{
	struct child c;
	struct inj_patch p;
	uint8_t wrong[INJ_PATCH_LEN] = {0x90, 0x90, 0x90, 0x90, 0x90}, now[INJ_PATCH_LEN],
		orig[INJ_PATCH_LEN];

	child_start(&c);
	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	ck_assert_int_eq(inj_mem_read(c.proc, (uint64_t)(uintptr_t)patch_f, orig, sizeof(orig)), 0);
	ck_assert_int_eq(inj_patch_prepare((uint64_t)(uintptr_t)patch_f,
					   (uint64_t)(uintptr_t)patch_g, wrong, &p),
			 0);
	ck_assert_int_eq(inj_patch_apply(c.proc, &p, 1), -ESTALE);
	ck_assert(!p.applied);
	ck_assert_int_eq(inj_mem_read(c.proc, p.addr, now, sizeof(now)), 0);
	ck_assert_mem_eq(now, orig, INJ_PATCH_LEN);
	ck_assert_int_eq(inj_process_resume(c.proc), 0);
	ck_assert_int_eq(child_call(&c), 8);
	child_stop(&c);
}
END_TEST

START_TEST(test_out_of_reach)
{
	struct inj_patch p;
	uint8_t orig[INJ_PATCH_LEN] = {0};

	ck_assert_int_eq(inj_patch_prepare(0x400000, 0x400000 + 5 + 0x7fffffffULL, orig, &p), 0);
	ck_assert_int_eq(inj_patch_prepare(0x400000, 0x400000 + 5 + 0x80000000ULL, orig, &p),
			 -ERANGE);
	ck_assert_int_eq(inj_patch_prepare(0x80000000ULL + 0x1000, 0x1000 + 5, orig, &p), 0);
	ck_assert_int_eq(inj_patch_prepare(0x80000000ULL + 0x1000, 0x1000 + 4, orig, &p), -ERANGE);
	ck_assert_int_eq(p.jmp[0], 0xe9);
}
END_TEST

/*
 * When /proc/PID/mem refuses a write into protected text (EIO, as with
 * proc_mem.force_override=never), inj_mem_write falls back to POKEDATA
 * and keeps using it. The refusal is staged by giving the process a
 * /proc/PID/mem fd of another process where that address is not mapped.
 */
START_TEST(test_poke_fallback)
{
	struct child c;
	struct inj_patch p;
	enum inj_mem_path path = INJ_MEM_VM;
	uint64_t site = (uint64_t)(uintptr_t)patch_f;
	struct maps *m = NULL;
	char memp[64];
	pid_t other;

	child_start(&c);
	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	p = patch_f_to_g(&c);
	for (;;) {
		other = fork();
		ck_assert_int_ge(other, 0);
		if (other == 0) {
			execl("/bin/sleep", "sleep", "60", (char *)NULL);
			_exit(127);
		}
		/* Wait until it is sleep, not our copy, then make sure site is not mapped there. */
		for (;;) {
			char exe[64], link[256] = "";
			snprintf(exe, sizeof(exe), "/proc/%d/exe", other);
			if (readlink(exe, link, sizeof(link) - 1) > 0 && strstr(link, "sleep"))
				break;
		}
		ck_assert_int_eq(maps_read(other, &m), 0);
		bool mapped = maps_find(m, site) != NULL;
		maps_free(m);
		if (!mapped)
			break;
		kill(other, SIGKILL);
		waitpid(other, NULL, 0);
	}
	snprintf(memp, sizeof(memp), "/proc/%d/mem", other);
	if (c.proc->mem_fd >= 0)
		close(c.proc->mem_fd);
	c.proc->mem_fd = open(memp, O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(c.proc->mem_fd, 0);

	ck_assert_int_eq(inj_mem_write(c.proc, site, p.jmp, INJ_PATCH_LEN, &path), 0);
	ck_assert_int_eq(path, INJ_MEM_POKE);
	ck_assert(c.proc->mem_fd_write_denied);
	ck_assert_int_eq(inj_process_resume(c.proc), 0);
	ck_assert_int_eq(child_call(&c), 700); /* the child runs the jmp POKEDATA wrote */
	/* An address mapped nowhere is still -EFAULT. */
	ck_assert_int_eq(inj_process_stop(c.proc), 0);
	ck_assert_int_eq(inj_mem_write(c.proc, 0x1000, p.jmp, INJ_PATCH_LEN, NULL), -EFAULT);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	child_stop(&c);
}
END_TEST

static Suite *patch_suite(void)
{
	Suite *s = suite_create("patch");
	TCase *tc = tcase_create("patch");

	tcase_add_test(tc, test_apply_and_undo);
	tcase_add_test(tc, test_retarget_all);
	tcase_add_test(tc, test_thread_inside_patch);
	tcase_add_test(tc, test_stale_site);
	tcase_add_test(tc, test_out_of_reach);
	tcase_add_test(tc, test_poke_fallback);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(patch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
