/*
 * Tests of the stack walker (injector/stack.c) against real children.
 *
 * A child is forked from the test, so the code it runs (stack_child.c,
 * stack_asm.S) sits at the same addresses in both: the test knows every
 * function's bounds (dladdr1) without asking the child. The child blocks
 * where the test wants it (in read() on a pipe, in a spin loop, in a signal
 * handler); the test seizes and stops it, walks, checks each frame against
 * the known functions and each ra_slot against the target's memory, and,
 * to prove that a slot is the real one, rewrites it to a trampoline that
 * counts and continues where the return would have gone. The child reports
 * what happened through shared memory and its exit status.
 *
 * Nothing sleeps: the test waits on pipes, waitpid, ptrace stops, and where
 * the condition is "the thread is now blocked in read()" or "the loop runs",
 * on the kernel's view (/proc/PID/task/TID/syscall) or a shared counter.
 *
 * STACK_TEST_VERBOSE=1 prints every walk.
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind-ptrace.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "copier.h"
#include "maps.h"
#include "mem.h"
#include "process.h"
#include "stack.h"
#include "stack_child.h"
#include "syscall.h"
#include "util.h"

#define PG 4096UL
#define MAXT 20	     /* threads of a child */
#define MAXF 128     /* frames of a walk */
#define NCHAIN 4     /* threads of the threads test */
#define NDEEP 16     /* threads of the timing test */
#define DEPTH 20     /* stack_deep frames of each */
#define WARM_RUNS 20 /* walks of the whole process, timed */

struct stack_ctx stack_block_ctx;

/* ---- memory shared with the children ---- */

struct shared {
	volatile uint64_t progress[MAXT];
	volatile int go;
	int ready; /* __atomic: threads up */
	pid_t tids[MAXT];
	volatile int in_handler;
	uint64_t sig_rip;      /* the handler's view: the interrupted rip */
	uint64_t sig_rip_slot; /* and where the ucontext keeps it */
	long result[MAXT];
	int hits; /* stack_tramp_hits when the child was done */
};
static struct shared *sh;

/* ---- the two builds of the chain ---- */

struct variant {
	const char *name;
	long (*main)(struct stack_ctx *);
	const void *a, *b, *c;
	long (*deep)(struct stack_ctx *, int);
	long (*nocfi_caller)(stack_copy_fn *, void *, void *);
	long (*block_cb)(void);
};

static const struct variant variants[2] = {
    {"fp", stack_main_fp, stack_a_fp, stack_b_fp, stack_c_fp, stack_deep_fp, stack_nocfi_caller_fp,
     stack_block_cb_fp},
    {"nofp", stack_main_nofp, stack_a_nofp, stack_b_nofp, stack_c_nofp, stack_deep_nofp,
     stack_nocfi_caller_nofp, stack_block_cb_nofp},
};

static long chain_result(int mode, char ch)
{
	long c = (mode == STACK_READ ? ch : 7) + 1;

	return (c * 3 + 100) + 1000;
}

/* ---- children ---- */

typedef int child_fn(int blk, long arg);

static pid_t kid;
static int kid_blk = -1; /* write end of the pipe the child blocks on */
static struct inj_process *proc;
static struct inj_unwinder *unw;
static bool verbose;

static void spawn(child_fn *fn, long arg)
{
	pid_t parent = getpid();
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(98);
		close(p[1]);
		_exit(fn(p[0], arg));
	}
	close(p[0]);
	kid_blk = p[1];
}

static void release(size_t nbytes)
{
	char buf[MAXT];

	memset(buf, 'A', sizeof(buf));
	ck_assert_int_eq(write(kid_blk, buf, nbytes), (ssize_t)nbytes);
}

/* Waits for the child's exit; 0 if it exited 0. */
static void finish(void)
{
	int status;

	ck_assert_int_eq(waitpid(kid, &status, 0), kid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	kid = 0;
}

static void copies_free(void);

static void setup(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	kid = 0;
	kid_blk = -1;
}

static void teardown(void)
{
	if (kid > 0)
		kill(kid, SIGKILL);
	if (kid_blk >= 0)
		close(kid_blk);
	for (;;) {
		int status;
		pid_t w = waitpid(-1, &status, __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
	}
	copies_free();
	inj_unwinder_free(unw);
	unw = NULL;
	inj_process_free(proc);
	proc = NULL;
	munmap(sh, sizeof(*sh));
}

/* ---- looking at the child from outside ---- */

static size_t read_text(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, cap - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/* True when thread tid sleeps in read(). */
static bool blocked_in(pid_t pid, pid_t tid, long want)
{
	char path[64], buf[256];
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	if (!read_text(path, buf, sizeof(buf)) || !strrchr(buf, ')') || strrchr(buf, ')')[2] != 'S')
		return false;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	return read_text(path, buf, sizeof(buf)) && sscanf(buf, "%ld", &nr) == 1 && nr == want;
}

/* Waits until thread tid of the child sleeps in syscall nr. */
static void wait_syscall(pid_t tid, long nr)
{
	while (!blocked_in(kid, tid, nr)) {
		ck_assert_msg(kill(kid, 0) == 0, "child %d is gone", kid);
		sched_yield();
	}
}

static void wait_read(pid_t tid)
{
	wait_syscall(tid, SYS_read);
}

static void wait_progress(size_t i)
{
	while (!sh->progress[i]) {
		ck_assert_msg(kill(kid, 0) == 0, "child %d is gone", kid);
		sched_yield();
	}
}

static void wait_ready(int n)
{
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < n) {
		ck_assert_msg(kill(kid, 0) == 0, "child %d is gone", kid);
		sched_yield();
	}
}

static void seize_stop(void)
{
	struct inj_settings s = {.options = PTRACE_O_EXITKILL};

	ck_assert_int_eq(inj_process_seize(kid, &s, &proc), 0);
	ck_assert_int_eq(inj_process_stop(proc), 0);
	ck_assert_int_eq(inj_unwinder_new(proc, &unw), 0);
}

static struct inj_thread *thread_of(pid_t tid)
{
	struct inj_thread *t = inj_process_thread(proc, tid);

	ck_assert_ptr_nonnull(t);
	return t;
}

/* ---- frames ---- */

/*
 * The address that identifies frame i's function: ip where execution
 * resumes (frame 0, after a signal frame), else the call before the return
 * address.
 */
static uint64_t site(const struct inj_frame *f, size_t i)
{
	return i == 0 || f[i - 1].signal_frame ? f[i].ip : f[i].ip - 1;
}

static bool in_fn(uint64_t addr, const void *fn)
{
	const ElfW(Sym) *sym = NULL;
	Dl_info info;

	ck_assert_msg(dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && info.dli_saddr,
		      "no symbol for %p", fn);
	return addr >= (uint64_t)(uintptr_t)info.dli_saddr &&
	       addr < (uint64_t)(uintptr_t)info.dli_saddr + sym->st_size;
}

static bool frame_in(const struct inj_frame *f, size_t i, const void *fn)
{
	return in_fn(site(f, i), fn);
}

static bool in_libc(uint64_t addr)
{
	Dl_info info;

	return dladdr((void *)(uintptr_t)addr, &info) && info.dli_fname &&
	       strstr(info.dli_fname, "libc.so");
}

static const char *name_of(uint64_t addr)
{
	Dl_info info;

	if (dladdr((void *)(uintptr_t)addr, &info) && info.dli_sname)
		return info.dli_sname;
	return "?";
}

static void dump(const char *what, const struct inj_frame *f, size_t n, enum inj_stack_end end)
{
	if (!verbose)
		return;
	printf("%s: %zu frames, end %s\n", what, n, inj_stack_end_name(end));
	for (size_t i = 0; i < n; i++)
		printf("  #%-2zu ip %#14llx sp %#14llx ra_slot %#14llx%s%s  %s\n", i,
		       (unsigned long long)f[i].ip, (unsigned long long)f[i].sp,
		       (unsigned long long)f[i].ra_slot, f[i].signal_frame ? " SIGNAL" : "",
		       f[i].guessed ? " GUESSED" : "", name_of(site(f, i)));
}

static size_t walk(struct inj_thread *t, struct inj_frame *f, enum inj_stack_end *end,
		   const char *what)
{
	size_t n = 0;

	ck_assert_int_eq(inj_stack_walk(unw, t, f, MAXF, &n, end), 0);
	dump(what, f, n, *end);
	return n;
}

static uint64_t peek(uint64_t addr)
{
	uint64_t v = 0;

	ck_assert_int_eq(inj_mem_read(proc, addr, &v, sizeof(v)), 0);
	return v;
}

static void poke(uint64_t addr, uint64_t v)
{
	ck_assert_int_eq(inj_mem_write(proc, addr, &v, sizeof(v), NULL), 0);
}

/*
 * Every frame but the last has a slot, the slot holds the next frame's ip,
 * and a return address slot is right below the caller's stack pointer (ret
 * pops it).
 */
static void check_slots(const struct inj_frame *f, size_t n, enum inj_stack_end end)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint64_t v;

		ck_assert_msg(!f[i].guessed, "frame %zu guessed", i);
		ck_assert_msg(f[i].ra_slot, "frame %zu (%s) has no ra_slot", i,
			      name_of(site(f, i)));
		v = peek(f[i].ra_slot);
		ck_assert_msg(v == f[i + 1].ip, "frame %zu: [%#llx] = %#llx, next ip %#llx", i,
			      (unsigned long long)f[i].ra_slot, (unsigned long long)v,
			      (unsigned long long)f[i + 1].ip);
		if (!f[i].signal_frame)
			ck_assert_msg(f[i].ra_slot + 8 == f[i + 1].sp,
				      "frame %zu: slot %#llx, caller's sp %#llx", i,
				      (unsigned long long)f[i].ra_slot,
				      (unsigned long long)f[i + 1].sp);
	}
	if (end != INJ_STACK_END_TRUNCATED)
		ck_assert_uint_eq(f[n - 1].ra_slot, 0);
}

/* Index of c in main -> a -> b -> c, which must be consecutive. */
static size_t find_chain(const struct variant *v, const struct inj_frame *f, size_t n)
{
	for (size_t i = 0; i + 3 < n; i++) {
		if (!frame_in(f, i, v->c))
			continue;
		ck_assert_msg(frame_in(f, i + 1, v->b), "frame %zu: %s, want b", i + 1,
			      name_of(site(f, i + 1)));
		ck_assert_msg(frame_in(f, i + 2, v->a), "frame %zu: %s, want a", i + 2,
			      name_of(site(f, i + 2)));
		ck_assert_msg(frame_in(f, i + 3, v->main), "frame %zu: %s, want main", i + 3,
			      name_of(site(f, i + 3)));
		return i;
	}
	ck_abort_msg("c is not on the stack");
	return 0;
}

/* ---- 1, 2. main -> a -> b -> c, blocked in read() or spinning in c ---- */

static int child_chain(int blk, long arg)
{
	const struct variant *v = &variants[arg & 1];
	struct stack_ctx ctx = {(arg & 2) ? STACK_SPIN : STACK_READ, blk, &sh->progress[0],
				&sh->go};

	sh->result[0] = v->main(&ctx);
	sh->hits = stack_tramp_hits;
	return 0;
}

/* _i: bit 0 selects the build (fp, nofp), bit 1 the block (read, spin). */
static void chain_start(int i, const struct variant **ret_v, int *ret_mode)
{
	*ret_v = &variants[i & 1];
	*ret_mode = (i & 2) ? STACK_SPIN : STACK_READ;
	spawn(child_chain, i);
	if (*ret_mode == STACK_READ)
		wait_read(kid);
	else
		wait_progress(0);
	seize_stop();
}

static void chain_finish(int mode)
{
	ck_assert_int_eq(inj_process_detach(proc), 0);
	if (mode == STACK_READ)
		release(1);
	else
		sh->go = 1;
	finish();
	ck_assert_int_eq(sh->result[0], chain_result(mode, 'A'));
}

START_TEST(test_chain)
{
	struct inj_frame f[MAXF], f3[3];
	const struct variant *v;
	enum inj_stack_end end, end3;
	struct inj_thread *t;
	size_t n, n3 = 0, ic;
	int mode;

	chain_start(_i, &v, &mode);
	t = thread_of(kid);
	n = walk(t, f, &end, v->name);
	ck_assert_msg(end == INJ_STACK_END_OUTERMOST, "end %s", inj_stack_end_name(end));
	ic = find_chain(v, f, n);
	if (mode == STACK_SPIN) {
		ck_assert_uint_eq(ic, 0); /* stopped in c's own loop */
	} else {
		ck_assert_uint_gt(ic, 0);
		for (size_t i = 0; i < ic; i++)
			ck_assert_msg(in_libc(f[i].ip), "frame %zu (%s) is not in libc", i,
				      name_of(f[i].ip));
	}
	for (size_t i = 0; i < n; i++)
		ck_assert(!f[i].signal_frame);
	check_slots(f, n, end);

	/* The same walk again (cached rows) and a short one. */
	{
		struct inj_frame g[MAXF];
		size_t m = walk(t, g, &end, "again");
		ck_assert_uint_eq(m, n);
		ck_assert(!memcmp(f, g, n * sizeof(*f)));
	}
	ck_assert_int_eq(inj_stack_walk(unw, t, f3, 3, &n3, &end3), 0);
	ck_assert_uint_eq(n3, 3);
	ck_assert_int_eq(end3, INJ_STACK_END_TRUNCATED);
	ck_assert(!memcmp(f, f3, sizeof(f3)));

	/* Walking changed nothing. */
	chain_finish(mode);
	ck_assert_int_eq(sh->hits, 0);
}
END_TEST

/*
 * b's return address (into a) is sent to a trampoline that counts and goes
 * on to a: the child computes the same result and counts one hit.
 */
START_TEST(test_chain_rewrite)
{
	struct inj_frame f[MAXF];
	const struct variant *v;
	enum inj_stack_end end;
	size_t n, ib;
	uint64_t ra;
	int mode;

	chain_start(_i, &v, &mode);
	n = walk(thread_of(kid), f, &end, v->name);
	ib = find_chain(v, f, n) + 1;
	ra = peek(f[ib].ra_slot);
	ck_assert_uint_eq(ra, f[ib + 1].ip);
	ck_assert(in_fn(ra - 1, v->a));
	poke((uint64_t)(uintptr_t)&stack_tramp_target, ra);
	poke(f[ib].ra_slot, (uint64_t)(uintptr_t)stack_ret_tramp);
	chain_finish(mode);
	ck_assert_int_eq(sh->hits, 1);
}
END_TEST

/* ---- 3. a thread stopped inside a signal handler ---- */

static int handler_fd = -1;

void stack_test_on_usr1(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	char ch;

	(void)sig;
	(void)si;
	sh->sig_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	sh->sig_rip_slot = (uint64_t)(uintptr_t)&uc->uc_mcontext.gregs[REG_RIP];
	sh->in_handler = 1;
	if (read(handler_fd, &ch, 1) != 1)
		_exit(91);
}

/* arg: run the handler on an alternate signal stack. */
static int child_signal(int blk, long arg)
{
	struct sigaction sa = {.sa_sigaction = stack_test_on_usr1, .sa_flags = SA_SIGINFO};

	handler_fd = blk;
	if (arg) {
		stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
		if (!ss.ss_sp || sigaltstack(&ss, NULL))
			return 90;
		sa.sa_flags |= SA_ONSTACK;
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return 89;
	stack_victim(&sh->progress[0], &sh->go);
	sh->hits = stack_tramp_hits;
	return 0;
}

START_TEST(test_signal_frame)
{
	struct inj_frame f[MAXF];
	enum inj_stack_end end;
	size_t n, ih = MAXF;

	spawn(child_signal, _i);
	wait_progress(0);
	ck_assert_int_eq(kill(kid, SIGUSR1), 0);
	while (!sh->in_handler)
		sched_yield();
	wait_read(kid);
	seize_stop();
	n = walk(thread_of(kid), f, &end, _i ? "signal, altstack" : "signal");
	ck_assert_msg(end == INJ_STACK_END_OUTERMOST, "end %s", inj_stack_end_name(end));
	for (size_t i = 0; i < n; i++) {
		if (frame_in(f, i, stack_test_on_usr1)) {
			ih = i;
			break;
		}
	}
	ck_assert_msg(ih + 2 < n, "the handler is not on the stack");
	for (size_t i = 0; i < ih; i++)
		ck_assert(in_libc(f[i].ip) && !f[i].signal_frame);
	ck_assert(!f[ih].signal_frame);
	ck_assert(f[ih + 1].signal_frame); /* __restore_rt */
	ck_assert_uint_eq(peek(f[ih].ra_slot), f[ih + 1].ip);
	/* The signal frame's slot is the ucontext's rip, and the next frame is what was
	 * interrupted. */
	ck_assert_uint_eq(f[ih + 1].ra_slot, sh->sig_rip_slot);
	ck_assert_uint_eq(f[ih + 2].ip, sh->sig_rip);
	ck_assert(sh->sig_rip >= (uint64_t)(uintptr_t)stack_victim_loop &&
		  sh->sig_rip < (uint64_t)(uintptr_t)stack_victim_loop_end);
	ck_assert(frame_in(f, ih + 2, stack_victim));
	ck_assert(!f[ih + 2].signal_frame);
	for (size_t i = ih + 3; i < n; i++)
		ck_assert(!f[i].signal_frame);
	check_slots(f, n, end);
	{
		struct inj_frame g[MAXF];
		size_t m = walk(thread_of(kid), g, &end, "again");
		ck_assert_uint_eq(m, n);
		ck_assert(!memcmp(f, g, n * sizeof(*f)));
	}

	/* sigreturn goes to the trampoline, which goes back into the loop. */
	poke((uint64_t)(uintptr_t)&stack_tramp_target, sh->sig_rip);
	poke(f[ih + 1].ra_slot, (uint64_t)(uintptr_t)stack_sig_tramp);
	ck_assert_int_eq(inj_process_detach(proc), 0);
	release(1);
	sh->go = 1;
	finish();
	ck_assert_int_eq(sh->hits, 1);
}
END_TEST

/* ---- 4. every thread of a 4-thread child ---- */

struct thr_arg {
	const struct variant *v;
	int blk;
	int idx;
};

static void *chain_thread(void *p)
{
	struct thr_arg *a = p;
	struct stack_ctx ctx = {STACK_READ, a->blk, NULL, NULL};

	sh->tids[a->idx] = (pid_t)syscall(SYS_gettid);
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	sh->result[a->idx] = a->v->main(&ctx);
	return NULL;
}

static int child_threads(int blk, long arg)
{
	struct thr_arg a[NCHAIN];
	pthread_t th[NCHAIN];

	for (int i = 0; i < NCHAIN; i++) {
		a[i] = (struct thr_arg){&variants[arg], blk, i};
		if (i && pthread_create(&th[i], NULL, chain_thread, &a[i]))
			return 80;
	}
	chain_thread(&a[0]);
	for (int i = 1; i < NCHAIN; i++)
		pthread_join(th[i], NULL);
	return 0;
}

START_TEST(test_threads)
{
	const struct variant *v = &variants[_i];

	spawn(child_threads, _i);
	wait_ready(NCHAIN);
	for (int i = 0; i < NCHAIN; i++)
		wait_read(sh->tids[i]);
	seize_stop();
	ck_assert_uint_eq(proc->nthreads, NCHAIN);
	for (int i = 0; i < NCHAIN; i++) {
		struct inj_frame f[MAXF];
		enum inj_stack_end end;
		char what[32];
		size_t n, ic;

		snprintf(what, sizeof(what), "thread %d", i);
		n = walk(thread_of(sh->tids[i]), f, &end, what);
		ck_assert_msg(end == INJ_STACK_END_OUTERMOST, "thread %d: end %s", i,
			      inj_stack_end_name(end));
		ic = find_chain(v, f, n);
		ck_assert_uint_gt(ic, 0);
		ck_assert_msg(n > ic + 5, "thread %d: %zu frames", i, n);
		check_slots(f, n, end);
		/* The workers end in start_thread and clone3, in libc. */
		if (i)
			ck_assert(in_libc(f[n - 1].ip - 1) && in_libc(f[n - 2].ip - 1));
	}
	ck_assert_int_eq(inj_process_detach(proc), 0);
	release(NCHAIN);
	finish();
	for (int i = 0; i < NCHAIN; i++)
		ck_assert_int_eq(sh->result[i], chain_result(STACK_READ, 'A'));
}
END_TEST

/* ---- 5. a frame in code without unwind info ---- */

/* The copies, on an anonymous page near the test's code (the copier needs rel32 reach). */
static struct copies {
	uint8_t *page;
	struct copier_result *me, *spin;
	unsigned calls; /* translate hook calls */
} copies;

static void *map_near(const void *anchor)
{
	for (uint64_t off = 1ULL << 28; off < 1ULL << 30; off += 1ULL << 24) {
		for (int sign = 1; sign >= -1; sign -= 2) {
			uint64_t want = ALIGN_DOWN((uint64_t)(uintptr_t)anchor, PG) + sign * off;
			void *p = mmap((void *)(uintptr_t)want, PG, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p != MAP_FAILED)
				return p;
		}
	}
	ck_abort_msg("no free page within reach of the test's code");
	return NULL;
}

static struct copier_result *copy_fn(const void *fn, const char *end, size_t at)
{
	struct copier_input in = {
	    .code = fn,
	    .orig_addr = (uint64_t)(uintptr_t)fn,
	    .len = (size_t)(end - (const char *)fn),
	    .dest_addr = (uint64_t)(uintptr_t)copies.page + at,
	    .dest_cap = 256,
	};
	struct copier_result *r = NULL;
	struct copier_refusal why = {0};

	ck_assert_msg(copier_copy(&in, copies.page + at, &r, &why) == 0, "copier: %s at +%u",
		      copier_reason_to_string(why.reason), why.orig_off);
	/* The short branch out was widened: the copy's layout is not the original's. */
	ck_assert(r->flags & COPIER_F_WIDENED);
	ck_assert_uint_gt(r->size, in.len);
	return r;
}

static void copies_make(void)
{
	copies.page = map_near((const void *)stack_copyme);
	copies.me = copy_fn((const void *)stack_copyme, stack_copyme_end, 0);
	copies.spin = copy_fn((const void *)stack_copyspin, stack_copyspin_end, 256);
	ck_assert_int_eq(mprotect(copies.page, PG, PROT_READ | PROT_EXEC), 0);
	copies.calls = 0;
}

static void copies_free(void)
{
	copier_result_free(copies.me);
	copier_result_free(copies.spin);
	if (copies.page)
		munmap(copies.page, PG);
	memset(&copies, 0, sizeof(copies));
}

static int translate(void *opaque, uint64_t ip, uint64_t *ret_orig)
{
	struct copies *c = opaque;
	struct copier_result *rs[] = {c->me, c->spin};

	c->calls++;
	for (size_t i = 0; i < ARRAY_SIZE(rs); i++)
		if (ip >= rs[i]->dest_addr && ip < rs[i]->dest_addr + rs[i]->size)
			return copier_copy_to_orig(rs[i], ip, ret_orig);
	return -ENOENT;
}

static bool in_copy(uint64_t addr, const struct copier_result *r)
{
	return addr >= r->dest_addr && addr < r->dest_addr + r->size;
}

/* arg: bit 0 the build; bit 1: the copy spins (frame 0) rather than calls c (frame 3). */
int stack_test_child_nocfi(int blk, long arg)
{
	const struct variant *v = &variants[arg & 1];
	long r;

	stack_block_ctx = (struct stack_ctx){STACK_READ, blk, NULL, NULL};
	if (arg & 2)
		r = v->nocfi_caller((stack_copy_fn *)(uintptr_t)copies.spin->dest_addr,
				    (void *)&sh->progress[0], (void *)&sh->go);
	else
		r = v->nocfi_caller((stack_copy_fn *)(uintptr_t)copies.me->dest_addr,
				    (void *)v->block_cb, NULL);
	sh->result[0] = r;
	sh->hits = stack_tramp_hits;
	return 0;
}

START_TEST(test_no_unwind_info)
{
	const struct variant *v = &variants[_i & 1];
	bool spin = _i & 2;
	const struct copier_result *cr;
	struct inj_frame f[MAXF];
	enum inj_stack_end end;
	struct inj_thread *t;
	size_t n, k;
	char what[64];

	copies_make();
	cr = spin ? copies.spin : copies.me;
	spawn(stack_test_child_nocfi, _i);
	if (spin)
		wait_progress(0);
	else
		wait_read(kid);
	seize_stop();
	t = thread_of(kid);

	/* Without the hook: the copy's frame is guessed from %rbp. */
	snprintf(what, sizeof(what), "%s %s, no hook", v->name, spin ? "copyspin" : "copyme");
	n = walk(t, f, &end, what);
	for (k = 0; k < n && !in_copy(f[k].ip, cr); k++)
		;
	ck_assert_uint_lt(k, n);
	ck_assert_uint_eq(k, spin ? 0 : 3);
	if (!spin) {
		/* read <- c <- block_cb <- copy: the callee's CFI finds the return into the copy.
		 */
		ck_assert(frame_in(f, 1, v->c) && frame_in(f, 2, (const void *)v->block_cb));
		ck_assert_uint_eq(peek(f[2].ra_slot), f[3].ip);
	}
	ck_assert(f[k].guessed);
	for (size_t i = 0; i < k; i++)
		ck_assert(!f[i].guessed);
	if (v == &variants[0]) {
		/*
		 * The copy keeps its caller's %rbp, whose frame record libunwind
		 * reads as the copy's: the caller's return address is taken for
		 * the copy's, and the caller vanishes from the walk.
		 */
		ck_assert_uint_lt(k + 1, n);
		ck_assert(!frame_in(f, k + 1, (const void *)v->nocfi_caller));
		ck_assert(frame_in(f, k + 1, (const void *)stack_test_child_nocfi));
	}
	printf("no unwind info, %s build, %s: without the hook the walk goes from the copy "
	       "(frame %zu) to %s and ends %s after %zu frames\n",
	       v->name, spin ? "thread stopped in the copy" : "copy calls c", k,
	       k + 1 < n ? name_of(site(f, k + 1)) : "nothing", inj_stack_end_name(end), n);

	/* With the hook: the original's CFI, at the original's offsets. */
	ck_assert_int_eq(inj_unwinder_set_translate(unw, translate, &copies), 0);
	snprintf(what, sizeof(what), "%s %s, hook", v->name, spin ? "copyspin" : "copyme");
	n = walk(t, f, &end, what);
	ck_assert_uint_gt(copies.calls, 0);
	ck_assert_msg(end == INJ_STACK_END_OUTERMOST, "end %s", inj_stack_end_name(end));
	ck_assert(in_copy(f[k].ip, cr));
	ck_assert(frame_in(f, k + 1, (const void *)v->nocfi_caller));
	ck_assert(frame_in(f, k + 2, (const void *)stack_test_child_nocfi));
	check_slots(f, n, end);

	/* The copy's return address slot is the real one. */
	poke((uint64_t)(uintptr_t)&stack_tramp_target, f[k + 1].ip);
	poke(f[k].ra_slot, (uint64_t)(uintptr_t)stack_ret_tramp);
	ck_assert_int_eq(inj_process_detach(proc), 0);
	if (spin)
		sh->go = 1;
	else
		release(1);
	finish();
	ck_assert_int_eq(sh->hits, 1);
	ck_assert_int_eq(sh->result[0], spin ? 5 + 1 : ('A' + 1) + 1 + 1);
}
END_TEST

/*
 * ---- 5b. a synced unwinder keeps what it learnt while the code stays ----
 * The copy (copyme, calling c, blocked in read) is translated code: the
 * hook's calls tell whether libunwind still had its rows. _i: the build.
 */

static void same_frames(const struct inj_frame *f, size_t n, const struct inj_frame *g, size_t m)
{
	ck_assert_uint_eq(n, m);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(
		    f[i].ip == g[i].ip && f[i].sp == g[i].sp && f[i].ra_slot == g[i].ra_slot &&
			f[i].signal_frame == g[i].signal_frame && f[i].guessed == g[i].guessed,
		    "frame %zu differs", i);
	}
}

static void sync_with(const struct inj_unwind_area *area)
{
	const struct maps *m = NULL;

	ck_assert_int_eq(inj_process_maps(proc, &m), 0);
	ck_assert_int_eq(inj_unwinder_sync(unw, m, area, area ? 1 : 0), 0);
}

static void restop(void)
{
	ck_assert_int_eq(inj_process_resume(proc), 0);
	ck_assert_int_eq(inj_process_stop(proc), 0);
}

START_TEST(test_sync)
{
	const struct variant *v = &variants[_i];
	struct inj_frame f[MAXF], g[MAXF];
	struct inj_unwind_area area;
	enum inj_stack_end end;
	struct inj_thread *t;
	size_t n, m, k;
	unsigned calls;

	copies_make();
	spawn(stack_test_child_nocfi, _i);
	wait_read(kid);
	seize_stop();
	t = thread_of(kid);
	area = (struct inj_unwind_area){(uint64_t)(uintptr_t)copies.page,
					(uint64_t)(uintptr_t)copies.page + PG, 1};
	ck_assert_int_eq(inj_unwinder_set_translate(unw, translate, &copies), 0);

	/* Unsynced, as the other tests walk: the reference. */
	n = walk(t, f, &end, "unsynced");
	ck_assert_msg(end == INJ_STACK_END_OUTERMOST, "end %s", inj_stack_end_name(end));
	for (k = 0; k < n && !in_copy(f[k].ip, copies.me); k++)
		;
	ck_assert_uint_eq(k, 3);
	ck_assert(frame_in(f, k + 1, (const void *)v->nocfi_caller));
	check_slots(f, n, end);

	/* Synced: the same frames. */
	ck_assert_int_eq(inj_unwinder_flush(unw), 0);
	sync_with(&area);
	m = walk(t, g, &end, "synced");
	same_frames(f, n, g, m);

	/* Another stop, synced again, nothing moved: the rows are kept, the hook is not asked. */
	restop();
	sync_with(&area);
	calls = copies.calls;
	m = walk(t, g, &end, "synced again");
	same_frames(f, n, g, m);
	ck_assert_uint_eq(copies.calls, calls);

	/* A walk after the target ran, without a sync, forgets first. */
	restop();
	calls = copies.calls;
	m = walk(t, g, &end, "not synced after a run");
	same_frames(f, n, g, m);
	ck_assert_uint_gt(copies.calls, calls);

	/* The same range with another key holds other code: forgotten. */
	sync_with(&area);
	m = walk(t, g, &end, "key 1");
	area.key = 2;
	sync_with(&area);
	calls = copies.calls;
	m = walk(t, g, &end, "key 2");
	same_frames(f, n, g, m);
	ck_assert_uint_gt(copies.calls, calls);

	/* Something that is not that area where it was: forgotten too. */
	sync_with(NULL);
	calls = copies.calls;
	m = walk(t, g, &end, "no area");
	ck_assert_uint_gt(copies.calls, calls);

	ck_assert_int_eq(inj_process_detach(proc), 0);
	release(1);
	finish();
	ck_assert_int_eq(sh->result[0], ('A' + 1) + 1 + 1);
}
END_TEST

/*
 * ---- 6. the target dies ----
 * _i: 0 killed while stopped; 1 the same, after a refused walk of the running
 * thread; 2 a zombie; 3 a zombie whose registers were saved for a remote call.
 */

START_TEST(test_gone)
{
	struct inj_frame f[MAXF];
	const struct variant *v;
	struct inj_thread *t;
	size_t n = 77;
	siginfo_t si;
	int mode;

	chain_start(0, &v, &mode);
	t = thread_of(kid);
	if (_i == 1) {
		/* Not stopped: the walker refuses rather than read a moving stack. */
		ck_assert_int_eq(inj_process_resume(proc), 0);
		ck_assert_int_eq(inj_stack_walk(unw, t, f, MAXF, &n, NULL), -EBUSY);
		ck_assert_int_eq(inj_process_stop(proc), 0);
	}
	if (_i == 3) {
		/*
		 * Registers saved for a remote call: the walk needs no ptrace,
		 * and meets the death in its first memory read.
		 */
		ck_assert_int_eq(inj_thread_prepare(t), 0);
	}
	ck_assert_int_eq(kill(kid, SIGKILL), 0);
	if (_i >= 2) /* wait until it is a zombie: its memory is gone */
		ck_assert_int_eq(waitid(P_PID, kid, &si, WEXITED | WNOWAIT | __WALL), 0);
	ck_assert_int_eq(inj_stack_walk(unw, t, f, MAXF, &n, NULL), -ESRCH);
	ck_assert_uint_eq(n, 77);
}
END_TEST

/* ---- timing: 16 threads, 20 frames of stack_deep each ---- */

static void *deep_thread(void *p)
{
	struct thr_arg *a = p;
	struct stack_ctx ctx = {STACK_READ, a->blk, NULL, NULL};

	sh->tids[a->idx] = (pid_t)syscall(SYS_gettid);
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	sh->result[a->idx] = a->v->deep(&ctx, DEPTH);
	return NULL;
}

static int child_deep(int blk, long arg)
{
	struct thr_arg a[NDEEP];
	pthread_t th[NDEEP];

	for (int i = 0; i < NDEEP; i++) {
		a[i] = (struct thr_arg){&variants[arg], blk, i};
		if (pthread_create(&th[i], NULL, deep_thread, &a[i]))
			return 80;
	}
	for (int i = 0; i < NDEEP; i++)
		pthread_join(th[i], NULL);
	return 0;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static size_t walk_all(struct inj_frame (*f)[MAXF], size_t *n)
{
	size_t total = 0;

	for (size_t i = 0; i < proc->nthreads; i++) {
		enum inj_stack_end end;
		ck_assert_int_eq(inj_stack_walk(unw, proc->threads[i], f[i], MAXF, &n[i], &end), 0);
		ck_assert_int_eq(end, INJ_STACK_END_OUTERMOST);
		total += n[i];
	}
	return total;
}

/* libunwind-ptrace's own accessors (PTRACE_PEEKDATA, PTRACE_PEEKUSER): ips of every thread. */
static void upt_walk_all(unw_addr_space_t as, void **upts, uint64_t (*ips)[MAXF], size_t *n)
{
	for (size_t i = 0; i < proc->nthreads; i++) {
		unw_cursor_t c;
		unw_word_t ip;

		n[i] = 0;
		ck_assert_int_eq(unw_init_remote(&c, as, upts[i]), 0);
		do {
			ck_assert_int_eq(unw_get_reg(&c, UNW_REG_IP, &ip), 0);
			if (ip)
				ips[i][n[i]++] = ip;
		} while (n[i] < MAXF && unw_step(&c) > 0);
	}
}

START_TEST(test_timing)
{
	static struct inj_frame f[MAXT][MAXF];
	static uint64_t ips[MAXT][MAXF];
	size_t n[MAXT], un[MAXT], frames;
	void *upts[MAXT];
	double t0, cold, warm, nocache, synced, upt_cold, upt_warm;
	unw_addr_space_t as;

	spawn(child_deep, 1);
	wait_ready(NDEEP);
	for (int i = 0; i < NDEEP; i++)
		wait_read(sh->tids[i]);
	/* The main thread too, in pthread_join(): not on its way back from a clone. */
	wait_syscall(kid, SYS_futex);
	seize_stop();
	ck_assert_uint_eq(proc->nthreads, NDEEP + 1);

	t0 = now_us();
	frames = walk_all(f, n);
	cold = now_us() - t0;
	t0 = now_us();
	for (int r = 0; r < WARM_RUNS; r++)
		walk_all(f, n);
	warm = (now_us() - t0) / WARM_RUNS;
	sync_with(NULL);
	walk_all(f, n);
	t0 = now_us();
	for (int r = 0; r < WARM_RUNS; r++)
		walk_all(f, n);
	synced = (now_us() - t0) / WARM_RUNS;
	inj_unwinder_set_page_cache(unw, false);
	t0 = now_us();
	for (int r = 0; r < WARM_RUNS; r++)
		walk_all(f, n);
	nocache = (now_us() - t0) / WARM_RUNS;
	for (size_t i = 0; i < proc->nthreads; i++)
		if (proc->threads[i]->tid != kid)
			ck_assert_uint_ge(n[i], DEPTH + 3);

	as = unw_create_addr_space(&_UPT_accessors, 0);
	ck_assert_ptr_nonnull(as);
	ck_assert_int_eq(unw_set_caching_policy(as, UNW_CACHE_GLOBAL), 0);
	for (size_t i = 0; i < proc->nthreads; i++) {
		upts[i] = _UPT_create(proc->threads[i]->tid);
		ck_assert_ptr_nonnull(upts[i]);
	}
	t0 = now_us();
	upt_walk_all(as, upts, ips, un);
	upt_cold = now_us() - t0;
	t0 = now_us();
	for (int r = 0; r < WARM_RUNS; r++)
		upt_walk_all(as, upts, ips, un);
	upt_warm = (now_us() - t0) / WARM_RUNS;
	/* Both accessors see the same stacks. */
	for (size_t i = 0; i < proc->nthreads; i++) {
		ck_assert_uint_eq(un[i], n[i]);
		for (size_t j = 0; j < n[i]; j++)
			ck_assert_uint_eq(ips[i][j], f[i][j].ip);
	}
	for (size_t i = 0; i < proc->nthreads; i++)
		_UPT_destroy(upts[i]);
	unw_destroy_addr_space(as);

	printf("stack walk of %zu threads, %zu frames: ours cold %.0f us, warm %.0f us "
	       "(%.2f us/frame), synced %.0f us, warm without the page cache %.0f us; "
	       "libunwind-ptrace (PEEKDATA) cold %.0f us, warm %.0f us\n",
	       proc->nthreads, frames, cold, warm, warm / (double)frames, synced, nocache, upt_cold,
	       upt_warm);
	ck_assert_int_eq(inj_process_detach(proc), 0);
	release(NDEEP);
	finish();
}
END_TEST

static Suite *stack_suite(void)
{
	Suite *s = suite_create("stack");
	TCase *tc = tcase_create("walk");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tc, test_chain, 0, 4);
	tcase_add_loop_test(tc, test_chain_rewrite, 0, 4);
	tcase_add_loop_test(tc, test_signal_frame, 0, 2);
	tcase_add_loop_test(tc, test_threads, 0, 2);
	tcase_add_loop_test(tc, test_no_unwind_info, 0, 4);
	tcase_add_loop_test(tc, test_sync, 0, 2);
	tcase_add_loop_test(tc, test_gone, 0, 4);
	tcase_add_test(tc, test_timing);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stack_suite());
	int failed;

	verbose = getenv("STACK_TEST_VERBOSE") != NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
