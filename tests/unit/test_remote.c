/*
 * Tests of the injector (process, syscall, mem, region) against real
 * processes.
 *
 * Every test forks a child that runs a small known program (the child_*
 * functions), brings it into the stop the test names, does remote work there,
 * lets it go, and then checks two things: what the remote work returned, and
 * that the child went on exactly as it would have without us. The child
 * checks its own state and reports through a pipe and its exit status; the
 * test drives it to its exit before reading the report, so a child that hits
 * more ptrace-stops never deadlocks against a reading test.
 *
 * Nothing sleeps. The tests wait on pipes, waitpid and ptrace stops. Where
 * the condition is "the child is now blocked in read()" there is no event to
 * wait on, so the kernel's own view (/proc/PID/task/TID/syscall) is polled
 * until it says so.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maps.h"
#include "mem.h"
#include "place.h"
#include "process.h"
#include "ptrace.h"
#include "region.h"
#include "call.h"
#include "syscall.h"
#include "util.h"

/* Restart codes (include/linux/errno.h): what a stopped syscall holds in rax. */
#define ERESTARTSYS 512
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

#define OPTIONS                                                                                    \
	(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |  \
	 PTRACE_O_TRACEVFORKDONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL)

#define PG 4096UL
#define OUT_FD 100   /* the child's output pipe: what it writes must be seen exactly once */
#define SPARE_FD 101 /* a pipe the child can read from and nobody ever writes to */

#define NSPIN 8
#define NBLOCKED 4
#define SPIN_OUT 11 /* iterations, then the ten registers of the loop */

/* ---- the spinning loop: state lives in registers only ---- */

/*
 * test_remote_spin(progress, stop, out) iterates a mix of ten registers
 * (including rax, rcx and r11, which `syscall` clobbers, and a carry that
 * crosses instructions) until *stop is set, publishing the iteration count
 * every 1024 iterations. It then stores the count and the registers in
 * out[11]. spin_reference() computes the same in C: a child whose registers
 * were disturbed anywhere in the loop ends with different values.
 */
void test_remote_spin(volatile uint64_t *progress, volatile int *stop, uint64_t *out);
extern const char test_remote_spin_end[];
/* Returns 1 unless the test patched it (mov $1,%eax; ret; int3 padding). */
int test_remote_patch_me(void);
/*
 * Called remotely: a + 2b + 3c + 4d + 5e + 6f, or -1 when the stack is not
 * aligned as the ABI promises at a function's entry (rsp + 8 a multiple of 16).
 */
long test_remote_callee(long a, long b, long c, long d, long e, long f);
/* An int3 for remote calls to return to. */
extern const char test_remote_trap[];

__asm__(".pushsection .text\n"
	".globl test_remote_spin\n"
	".type test_remote_spin, @function\n"
	"test_remote_spin:\n"
	"	push %rbx\n"
	"	push %r12\n"
	"	push %r13\n"
	"	push %r14\n"
	"	push %r15\n"
	"	mov %rdi, %r13\n"
	"	mov %rsi, %r14\n"
	"	mov %rdx, %r15\n"
	"	mov $1, %eax\n"
	"	mov $2, %ebx\n"
	"	mov $3, %ecx\n"
	"	mov $4, %edx\n"
	"	mov $5, %esi\n"
	"	mov $6, %edi\n"
	"	mov $7, %r8d\n"
	"	mov $8, %r9d\n"
	"	mov $9, %r10d\n"
	"	mov $10, %r11d\n"
	"	xor %r12d, %r12d\n"
	"1:	add %rcx, %rax\n"
	"	rol $7, %rax\n"
	"	xor %rax, %rdx\n"
	"	add %rdx, %rsi\n"
	"	xor %rsi, %rdi\n"
	"	add %rdi, %r8\n"
	"	xor %r8, %r9\n"
	"	add %r9, %r10\n"
	"	xor %r10, %r11\n"
	"	add %r11, %rcx\n"
	"	adc $0, %rbx\n"
	"	add %rbx, %rax\n"
	"	inc %r12\n"
	"	test $0x3ff, %r12d\n"
	"	jnz 1b\n"
	"	mov %r12, (%r13)\n"
	"	cmpl $0, (%r14)\n"
	"	je 1b\n"
	"	mov %r12, 0(%r15)\n"
	"	mov %rax, 8(%r15)\n"
	"	mov %rbx, 16(%r15)\n"
	"	mov %rcx, 24(%r15)\n"
	"	mov %rdx, 32(%r15)\n"
	"	mov %rsi, 40(%r15)\n"
	"	mov %rdi, 48(%r15)\n"
	"	mov %r8, 56(%r15)\n"
	"	mov %r9, 64(%r15)\n"
	"	mov %r10, 72(%r15)\n"
	"	mov %r11, 80(%r15)\n"
	"	pop %r15\n"
	"	pop %r14\n"
	"	pop %r13\n"
	"	pop %r12\n"
	"	pop %rbx\n"
	"	ret\n"
	".globl test_remote_spin_end\n"
	"test_remote_spin_end:\n"
	".size test_remote_spin, .-test_remote_spin\n"
	".globl test_remote_patch_me\n"
	".type test_remote_patch_me, @function\n"
	"test_remote_patch_me:\n"
	"	mov $1, %eax\n"
	"	ret\n"
	"	.fill 26, 1, 0xcc\n"
	".size test_remote_patch_me, .-test_remote_patch_me\n"
	".globl test_remote_callee\n"
	".type test_remote_callee, @function\n"
	"test_remote_callee:\n"
	"	lea 8(%rsp), %rax\n"
	"	test $15, %al\n"
	"	jnz 1f\n"
	"	lea (%rdi,%rsi,2), %rax\n"
	"	lea (%rdx,%rdx,2), %rdx\n"
	"	add %rdx, %rax\n"
	"	lea (%rax,%rcx,4), %rax\n"
	"	lea (%r8,%r8,4), %r8\n"
	"	add %r8, %rax\n"
	"	imul $6, %r9, %r9\n"
	"	add %r9, %rax\n"
	"	ret\n"
	"1:	mov $-1, %rax\n"
	"	ret\n"
	".size test_remote_callee, .-test_remote_callee\n"
	".globl test_remote_trap\n"
	"test_remote_trap:\n"
	"	int3\n"
	".popsection\n");

static uint64_t rol64(uint64_t x, unsigned n)
{
	return (x << n) | (x >> (64 - n));
}

static void spin_reference(uint64_t n, uint64_t out[SPIN_OUT])
{
	uint64_t a = 1, b = 2, c = 3, d = 4, si = 5, di = 6, r8 = 7, r9 = 8, r10 = 9, r11 = 10;

	for (uint64_t i = 0; i < n; i++) {
		a = rol64(a + c, 7);
		d ^= a;
		si += d;
		di ^= si;
		r8 += di;
		r9 ^= r8;
		r10 += r9;
		r11 ^= r10;
		c += r11;
		b += c < r11; /* adc $0: the carry of c += r11 */
		a += b;
	}
	uint64_t v[SPIN_OUT] = {n, a, b, c, d, si, di, r8, r9, r10, r11};
	memcpy(out, v, sizeof(v));
}

static bool in_spin(uint64_t rip)
{
	return rip >= (uint64_t)(uintptr_t)test_remote_spin &&
	       rip < (uint64_t)(uintptr_t)test_remote_spin_end;
}

/* ---- memory shared with the children (MAP_SHARED, set up before each test) ---- */

struct shared {
	volatile uint64_t progress[NSPIN];
	volatile int stop;
	int ready;	/* __atomic: threads of the child that are up */
	int futex_word; /* __atomic: 1 releases the futex waiters */
	int thread_ran; /* the event child's thread ran */
	pid_t tids[NSPIN + NBLOCKED];
	uint64_t spin_out[NSPIN][SPIN_OUT];
	long blocked_ret[NBLOCKED];
	int blocked_err[NBLOCKED];
};
static struct shared *sh;

/* Known memory of the memory tests, mapped before the fork (see area_setup()). */
enum {
	AREA_RW = 0,	/* pages 0-2: read-write */
	AREA_RO = 3,	/* page 3: read-only */
	AREA_NONE = 4,	/* page 4: PROT_NONE */
	AREA_HOLE = 5,	/* page 5: unmapped */
	AREA_FENCE = 6, /* page 6: read-only, keeps the hole a hole */
	AREA_PAGES = 7,
};
static unsigned char *area;

static unsigned char pattern(size_t off)
{
	return (unsigned char)(off * 7 + 13 + (off >> 8));
}

static char remote_buf[64]; /* same address in every child: a target for remote reads */

/* ---- the children and what the tests learned about them ---- */

struct child {
	pid_t pid;
	int cmd;    /* our end of its command pipe */
	int rep;    /* our end of its report pipe */
	int out;    /* our end of its OUT_FD */
	int spare;  /* the write end of its SPARE_FD, never written */
	int cmd_fd; /* the number of the command pipe's read end in the child */
};

static struct child kids[2];
static size_t nkids;
static pid_t extra_pids[16]; /* processes born to children while we traced them */
static size_t nextra;
static struct inj_process *procs[8];
static bool nofork; /* CK_FORK=no: a hung test hangs the run */

typedef int child_fn(int cmd, int rep);

/* Child side: a whole write, or exit; a child has nobody to tell but its exit status. */
static void put(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(90);
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
}

static void ready(int rep)
{
	put(rep, "R", 1);
}

static volatile sig_atomic_t trap_count;

static void on_trap(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	trap_count++;
}

static struct child *spawn(child_fn *fn)
{
	int cmdp[2], repp[2], outp[2], sparep[2];
	pid_t parent = getpid();
	struct child *c;
	pid_t pid;

	ck_assert_uint_lt(nkids, ARRAY_SIZE(kids));
	ck_assert_int_eq(pipe2(cmdp, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(repp, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(outp, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(sparep, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Die with the test, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(98);
		close(cmdp[1]);
		close(repp[0]);
		close(outp[0]);
		close(sparep[1]);
		if (dup2(outp[1], OUT_FD) != OUT_FD || dup2(sparep[0], SPARE_FD) != SPARE_FD)
			_exit(97);
		/* Signal state that a remote call must leave as it was (see struct sigstate). */
		sigset_t usr2;
		struct sigaction trap = {.sa_sigaction = on_trap, .sa_flags = SA_SIGINFO};
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		sigemptyset(&trap.sa_mask);
		struct rlimit nocore = {0, 0};
		if (sigprocmask(SIG_BLOCK, &usr2, NULL) || sigaction(SIGTRAP, &trap, NULL) ||
		    signal(SIGPIPE, SIG_IGN) == SIG_ERR || setrlimit(RLIMIT_CORE, &nocore))
			_exit(96);
		_exit(fn(cmdp[0], repp[1]));
	}
	close(cmdp[0]);
	close(repp[1]);
	close(outp[1]);
	close(sparep[0]);
	c = &kids[nkids++];
	*c = (struct child){pid, cmdp[1], repp[0], outp[0], sparep[1], cmdp[0]};
	return c;
}

static void expect_ready(struct child *c)
{
	char b = 0;

	ck_assert_int_eq(read(c->rep, &b, 1), 1);
	ck_assert_int_eq(b, 'R');
}

static void send(struct child *c, const char *s)
{
	ck_assert_int_eq(write(c->cmd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Everything until end of file (the child and its heirs are gone). */
static size_t read_all(int fd, void *buf, size_t cap)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, (char *)buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_int_ge(n, 0);
		if (n == 0)
			return len;
		len += (size_t)n;
		ck_assert_uint_lt(len, cap);
	}
}

static void get_report(struct child *c, void *buf, size_t len)
{
	char extra[256];
	size_t n = read_all(c->rep, extra, sizeof(extra));

	ck_assert_msg(n == len, "report of %zu bytes, want %zu", n, len);
	memcpy(buf, extra, len);
}

static void setup(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	area = NULL;
	nkids = 0;
	nextra = 0;
}

static void teardown(void)
{
	for (size_t i = 0; i < nkids; i++) {
		kill(kids[i].pid, SIGKILL);
		close(kids[i].cmd);
		close(kids[i].rep);
		close(kids[i].out);
		close(kids[i].spare);
	}
	for (size_t i = 0; i < nextra; i++)
		kill(extra_pids[i], SIGKILL);
	/*
	 * Reap everything, traced threads included (a leader is reported after
	 * its threads). A tracee we never heard of (a fork child whose first
	 * stop was still pending) shows up here stopped: kill it too.
	 */
	for (;;) {
		int status;
		pid_t w = waitpid(-1, &status, __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
		if (WIFSTOPPED(status))
			kill(w, SIGKILL);
	}
	for (size_t i = 0; i < ARRAY_SIZE(procs); i++) {
		inj_process_free(procs[i]);
		procs[i] = NULL;
	}
	nkids = 0;
	nextra = 0;
	inj_syscall_set_site(INJ_SITE_FIND);
	if (area)
		munmap(area, AREA_PAGES * PG);
	area = NULL;
	munmap(sh, sizeof(*sh));
}

/* ---- looking at a process from outside ---- */

static size_t read_text(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;

	if (fd < 0)
		return 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return len;
}

/* The state letter of a thread, or 0 if it is gone. */
static char task_state(pid_t pid, pid_t tid)
{
	char path[64], buf[1024];
	char *rp;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	if (!read_text(path, buf, sizeof(buf)))
		return 0;
	rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* Field n (1-based, as in proc(5)) of /proc/PID/stat, numeric. */
static unsigned long long stat_field(pid_t pid, int n)
{
	char path[64], buf[2048];
	unsigned long long v = 0;
	char *s;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	ck_assert_uint_gt(read_text(path, buf, sizeof(buf)), 0);
	s = strrchr(buf, ')');
	ck_assert_ptr_nonnull(s);
	s += 2; /* field 3 */
	for (int f = 3; f < n; f++) {
		s = strchr(s, ' ');
		ck_assert_ptr_nonnull(s);
		s++;
	}
	ck_assert_int_eq(sscanf(s, "%llu", &v), 1);
	return v;
}

/* True when thread tid sleeps in syscall nr with first argument arg0 (any if arg0 < 0). */
static bool blocked_in(pid_t pid, pid_t tid, long nr, long arg0)
{
	char path[64], buf[256];
	long n;
	unsigned long a0;

	if (task_state(pid, tid) != 'S')
		return false;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	if (!read_text(path, buf, sizeof(buf)) || sscanf(buf, "%ld %lx", &n, &a0) != 2)
		return false;
	return n == nr && (arg0 < 0 || a0 == (unsigned long)arg0);
}

static void wait_blocked(pid_t pid, pid_t tid, long nr, long arg0)
{
	while (!blocked_in(pid, tid, nr, arg0)) {
		ck_assert_msg(task_state(pid, tid), "thread %d of %d is gone", tid, pid);
		sched_yield();
	}
}

static struct maps *maps_of(pid_t pid)
{
	struct maps *m = NULL;

	ck_assert_int_eq(maps_read(pid, &m), 0);
	return m;
}

static char *maps_text(pid_t pid)
{
	char path[64];
	char *buf = malloc(1 << 16);

	ck_assert_ptr_nonnull(buf);
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	ck_assert_uint_gt(read_text(path, buf, 1 << 16), 0);
	return buf;
}

/* The Anonymous: figure of the mapping that holds addr, in kB. */
static long smaps_anon_kb(pid_t pid, uint64_t addr)
{
	char path[64], line[512];
	bool inside = false;
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			inside = addr >= lo && addr < hi;
		else if (inside && sscanf(line, "Anonymous: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* ---- tracing ---- */

static void track(struct inj_process *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(procs); i++) {
		if (!procs[i]) {
			procs[i] = p;
			return;
		}
	}
	ck_abort_msg("too many processes");
}

static void untrack_free(struct inj_process *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(procs); i++)
		if (procs[i] == p)
			procs[i] = NULL;
	inj_process_free(p);
}

static struct inj_process *seize(pid_t pid)
{
	struct inj_settings s = {.options = OPTIONS};
	struct inj_process *p = NULL;

	ck_assert_int_eq(inj_process_seize(pid, &s, &p), 0);
	track(p);
	return p;
}

static struct inj_process *seize_stopped(pid_t pid)
{
	struct inj_process *p = seize(pid);

	ck_assert_int_eq(inj_process_stop(p), 0);
	return p;
}

static struct user_regs_struct regs_of(pid_t tid)
{
	struct user_regs_struct r;

	ck_assert_int_eq(inj_ptrace_getregs(tid, &r), 0);
	return r;
}

/* A signal set from /proc/PID/task/TID/status: "SigBlk", "SigIgn" or "SigCgt". */
static uint64_t sigset_of(pid_t pid, pid_t tid, const char *name)
{
	char path[64], buf[4096], key[16];
	unsigned long long v = 0;
	char *l;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	ck_assert_uint_gt(read_text(path, buf, sizeof(buf)), 0);
	snprintf(key, sizeof(key), "\n%s:", name);
	l = strstr(buf, key);
	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(sscanf(l + strlen(key), " %llx", &v), 1);
	return v;
}

/*
 * What a thread's signals look like from outside: blocked mask, ignored and
 * caught dispositions. Every child starts with SIGUSR2 blocked, SIGTRAP
 * caught and SIGPIPE ignored, so that a remote call that resets any of
 * them shows.
 */
struct sigstate {
	uint64_t blk, ign, cgt;
};
#define SIGTRAP_BIT (1ULL << (SIGTRAP - 1))

static struct sigstate sigstate_of(pid_t pid, pid_t tid)
{
	return (struct sigstate){sigset_of(pid, tid, "SigBlk"), sigset_of(pid, tid, "SigIgn"),
				 sigset_of(pid, tid, "SigCgt")};
}

static void assert_sigstate_eq(const struct sigstate *a, const struct sigstate *b)
{
	ck_assert_msg(a->blk == b->blk, "SigBlk %#llx -> %#llx", (unsigned long long)a->blk,
		      (unsigned long long)b->blk);
	ck_assert_msg(a->ign == b->ign, "SigIgn %#llx -> %#llx", (unsigned long long)a->ign,
		      (unsigned long long)b->ign);
	ck_assert_msg(a->cgt == b->cgt, "SigCgt %#llx -> %#llx", (unsigned long long)a->cgt,
		      (unsigned long long)b->cgt);
}

/* SIGTRAP has a test of its own (test_sigtrap_kept), so that the others test the rest. */
static void assert_sigstate_eq_but_trap(const struct sigstate *a, const struct sigstate *b)
{
	struct sigstate x = *a, y = *b;

	x.blk &= ~SIGTRAP_BIT;
	y.blk &= ~SIGTRAP_BIT;
	x.cgt &= ~SIGTRAP_BIT;
	y.cgt &= ~SIGTRAP_BIT;
	assert_sigstate_eq(&x, &y);
}

static void assert_regs_eq(const struct user_regs_struct *a, const struct user_regs_struct *b)
{
	ck_assert_msg(!memcmp(a, b, sizeof(*a)),
		      "registers changed: rip %#llx->%#llx rax %#llx->%#llx orig_rax %#llx->%#llx "
		      "rcx %#llx->%#llx r11 %#llx->%#llx eflags %#llx->%#llx",
		      a->rip, b->rip, a->rax, b->rax, a->orig_rax, b->orig_rax, a->rcx, b->rcx,
		      a->r11, b->r11, a->eflags, b->eflags);
}

/*
 * The tracees of one test: the child, and processes its fork()s made while
 * we traced it (they become ours through PTRACE_O_TRACEFORK).
 */
struct drive {
	struct inj_process *p;
	struct inj_process *others[4];
	size_t nothers;
};

static struct inj_thread *drive_find(struct drive *d, pid_t tid)
{
	struct inj_thread *t = inj_process_thread(d->p, tid);

	for (size_t i = 0; !t && i < d->nothers; i++)
		t = inj_process_thread(d->others[i], tid);
	return t;
}

static struct inj_thread *drive_adopt(struct drive *d, pid_t tid)
{
	struct inj_settings s = {.options = OPTIONS};
	struct inj_thread *t = NULL;
	char path[64];
	struct stat sb;

	snprintf(path, sizeof(path), "/proc/%d/task/%d", d->p->pid, tid);
	if (stat(path, &sb) == 0) {
		ck_assert_int_eq(inj_process_add_thread(d->p, tid, INJ_RUNNING, &t), 0);
		return t;
	}
	ck_assert_uint_lt(d->nothers, ARRAY_SIZE(d->others));
	ck_assert_uint_lt(nextra, ARRAY_SIZE(extra_pids));
	extra_pids[nextra++] = tid;
	ck_assert_int_eq(inj_process_adopt(tid, &s, INJ_RUNNING, 0, &d->others[d->nothers]), 0);
	track(d->others[d->nothers]);
	return d->others[d->nothers++]->threads[0];
}

typedef bool want_fn(struct inj_thread *t, const struct inj_stop *st, void *arg);

/*
 * Resumes every stopped tracee the way the injector resumes it (signals
 * delivered, group-stops kept) and lets them run until want() accepts a
 * stop; returns that thread, still stopped. With want NULL, runs until the
 * child exits and returns NULL with its wait status in *ret_status.
 */
static struct inj_thread *drive(struct drive *d, want_fn *want, void *arg, int *ret_status)
{
	ck_assert_int_eq(inj_process_resume(d->p), 0);
	for (size_t i = 0; i < d->nothers; i++)
		ck_assert_int_eq(inj_process_resume(d->others[i]), 0);
	for (int n = 0;; n++) {
		struct inj_thread *t;
		struct inj_stop st;
		int status;
		pid_t tid;

		ck_assert_int_lt(n, 100000);
		tid = waitpid(-1, &status, __WALL);
		if (tid < 0 && errno == EINTR)
			continue;
		ck_assert_int_gt(tid, 0);
		if (inj_stop_decode(tid, status, &st) < 0)
			continue; /* killed between its stop and our look: its exit follows */
		t = drive_find(d, tid);
		if (st.kind == INJ_GONE) {
			if (tid == d->p->pid) {
				ck_assert_msg(!want,
					      "child exited (status %#x) before the awaited stop",
					      status);
				*ret_status = status;
				return NULL;
			}
			if (t)
				inj_process_remove_thread(t->proc, tid);
			continue;
		}
		if (!t)
			t = drive_adopt(d, tid);
		ck_assert_int_eq(inj_thread_note_stop(t, &st), 0);
		if (want && want(t, &st, arg))
			return t;
		ck_assert_int_eq(inj_thread_resume(t), 0);
	}
}

/* Lets the child run to its end and frees what we held; returns its wait status. */
static int finish(struct drive *d)
{
	int status = 0;

	d->p->resume_with_syscall = false;
	drive(d, NULL, NULL, &status);
	for (size_t i = 0; i < d->nothers; i++)
		untrack_free(d->others[i]);
	untrack_free(d->p);
	return status;
}

static void assert_exit0(int status)
{
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x (exit %d, signal %d)", status,
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* ---- the remote work done at every stop ---- */

/*
 * getpid, gettid, then an anonymous page mapped, written, read and unmapped,
 * each checked against /proc/PID/maps; the signal state is the same after.
 * With batch, the whole sequence runs between one prepare and one cure.
 */
static void remote_smoke(struct inj_thread *t, bool batch)
{
	struct inj_process *p = t->proc;
	unsigned char data[37], back[37];
	const struct maps_entry *e;
	enum inj_mem_path path;
	struct maps *m;
	struct sigstate sig_before = sigstate_of(p->pid, t->tid), sig_after;
	long res = 0, addr = 0;

	if (batch)
		ck_assert_int_eq(inj_thread_prepare(t), 0);
	ck_assert_int_eq(inj_syscall(t, SYS_getpid, &res, 0), 0);
	ck_assert_int_eq(res, p->pid);
	ck_assert_int_eq(inj_syscall(t, SYS_gettid, &res, 0), 0);
	ck_assert_int_eq(res, t->tid);

	ck_assert_int_eq(inj_syscall(t, SYS_mmap, &addr, 0, (long)PG, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
			 0);
	ck_assert_msg(addr > 0 && addr % (long)PG == 0, "remote mmap = %ld", addr);
	m = maps_of(p->pid);
	e = maps_find(m, (uint64_t)addr);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->prot, PROT_READ | PROT_WRITE);
	ck_assert_int_eq(e->kind, MAPS_ANON);
	ck_assert_uint_ge(e->end, (uint64_t)addr + PG);
	maps_free(m);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 31 + 1);
	ck_assert_int_eq(inj_mem_write(p, (uint64_t)addr + 100, data, sizeof(data), &path), 0);
	ck_assert_int_eq(path, INJ_MEM_VM);
	ck_assert_int_eq(inj_mem_read(p, (uint64_t)addr + 100, back, sizeof(back)), 0);
	ck_assert_mem_eq(back, data, sizeof(data));

	ck_assert_int_eq(inj_syscall(t, SYS_munmap, &res, addr, (long)PG), 0);
	ck_assert_int_eq(res, 0);
	m = maps_of(p->pid);
	ck_assert_ptr_null(maps_find(m, (uint64_t)addr));
	maps_free(m);

	/*
	 * A remote call, and one that faults: both give the thread back intact.
	 * Only where the child still runs our image (not after its exec).
	 */
	uint64_t ret = 0;
	unsigned char code[16];
	if (inj_mem_read(p, (uint64_t)(uintptr_t)test_remote_callee, code, sizeof(code)) < 0 ||
	    memcmp(code, (const void *)(uintptr_t)test_remote_callee, sizeof(code)) != 0)
		goto no_call;
	ck_assert_int_eq(inj_call(t, (uint64_t)(uintptr_t)test_remote_callee,
				  (uint64_t)(uintptr_t)test_remote_trap, &ret, 1, 10, 100, 1000,
				  10000, 100000),
			 0);
	ck_assert_int_eq((long)ret, 1 + 20 + 300 + 4000 + 50000 + 600000);
	ck_assert_int_eq(
	    inj_call(t, 8, (uint64_t)(uintptr_t)test_remote_trap, &ret, 0, 0, 0, 0, 0, 0), -EFAULT);
	ck_assert_int_eq(inj_syscall(t, SYS_gettid, &res, 0), 0);
	ck_assert_int_eq(res, t->tid);
no_call:
	if (batch)
		ck_assert_int_eq(inj_thread_cure(t), 0);
	sig_after = sigstate_of(p->pid, t->tid);
	assert_sigstate_eq_but_trap(&sig_before, &sig_after);
}

/* ---- the child programs ---- */

/* Spins in user code (test_remote_spin) until sh->stop; reports the loop's result. */
static int child_spin(int cmd, int rep)
{
	uint64_t out[SPIN_OUT];

	(void)cmd;
	ready(rep);
	test_remote_spin(&sh->progress[0], &sh->stop, out);
	put(rep, out, sizeof(out));
	return 0;
}

/* Blocks in read() on its command pipe; must get exactly "later". */
static int child_read(int cmd, int rep)
{
	char buf[16];
	long r[2];
	ssize_t n;

	ready(rep);
	n = read(cmd, buf, sizeof(buf));
	r[0] = n;
	r[1] = n < 0 ? errno : 0;
	put(rep, r, sizeof(r));
	return n == 5 && !memcmp(buf, "later", 5) ? 0 : 1;
}

enum sleep_kind { SLEEP_NANOSLEEP, SLEEP_CLOCK_REL, SLEEP_CLOCK_ABS, SLEEP_KINDS };
static const long sleep_nr[SLEEP_KINDS] = {SYS_nanosleep, SYS_clock_nanosleep, SYS_clock_nanosleep};
/* What the kernel returns in rax when a stop interrupts each kind of sleep. */
static const long sleep_restart[SLEEP_KINDS] = {-ERESTART_RESTARTBLOCK, -ERESTART_RESTARTBLOCK,
						-ERESTARTNOHAND};
#define SLEEP_NS 300000000L
static enum sleep_kind child_sleep_kind;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps SLEEP_NS with raw syscalls (no libc retry loop); reports result, errno and time slept. */
static int child_sleep(int cmd, int rep)
{
	struct timespec rel = {0, SLEEP_NS}, abs;
	int64_t t0;
	long r[3];

	(void)cmd;
	ready(rep);
	t0 = now_ns();
	switch (child_sleep_kind) {
	case SLEEP_NANOSLEEP:
		r[0] = syscall(SYS_nanosleep, &rel, NULL);
		break;
	case SLEEP_CLOCK_REL:
		r[0] = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &rel, NULL);
		break;
	default:
		abs.tv_sec = (t0 + SLEEP_NS) / 1000000000;
		abs.tv_nsec = (t0 + SLEEP_NS) % 1000000000;
		r[0] = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
		break;
	}
	r[1] = r[0] < 0 ? errno : 0;
	r[2] = now_ns() - t0;
	put(rep, r, sizeof(r));
	return 0;
}

static volatile sig_atomic_t sig_count;
static volatile int sig_code, sig_value, sig_pid;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	sig_count++;
	sig_code = si->si_code;
	sig_value = si->si_value.sival_int;
	sig_pid = si->si_pid;
}

/* Has a SA_RESTART SIGUSR1 handler and blocks in read(); reports what the handler saw. */
static int child_signal(int cmd, int rep)
{
	struct sigaction sa = {.sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_RESTART};
	long r[6];
	char b = 0;
	ssize_t n;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return 10;
	ready(rep);
	n = read(cmd, &b, 1);
	r[0] = n;
	r[1] = n < 0 ? errno : b;
	r[2] = sig_count;
	r[3] = sig_code;
	r[4] = sig_value;
	r[5] = sig_pid;
	put(rep, r, sizeof(r));
	return 0;
}

#define DATA_WRITE 0x42
#define DATA_GETPPID 0x43
static bool child_filter;

/* SECCOMP_RET_TRACE for getppid() and for write() to OUT_FD; everything else is allowed. */
static int install_filter(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | DATA_GETPPID),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, OUT_FD, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | DATA_WRITE),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {ARRAY_SIZE(f), f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/*
 * On "g": write(OUT_FD, "hello", 5), then getppid(); reports both results.
 * With child_filter, both go through a SECCOMP_RET_TRACE filter.
 */
static int child_sys(int cmd, int rep)
{
	long r[3];
	char b = 0;

	if (child_filter && install_filter())
		return 10;
	ready(rep);
	if (read(cmd, &b, 1) != 1 || b != 'g')
		return 11;
	r[0] = write(OUT_FD, "hello", 5);
	r[2] = r[0] < 0 ? errno : 0;
	r[1] = syscall(SYS_getppid);
	put(rep, r, sizeof(r));
	return 0;
}

static void *events_thread(void *arg)
{
	(void)arg;
	__atomic_store_n(&sh->thread_ran, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static pid_t vfork_exit(int code)
{
	pid_t v = vfork();

	if (v == 0)
		_exit(code);
	return v;
}

/*
 * On "e": execs /bin/echo optd with stdout on OUT_FD. On "c": a thread
 * (clone), a fork() and a vfork() whose children exit 7 and 8; reports what
 * each call returned.
 */
static int child_events(int cmd, int rep)
{
	long r[8] = {0};
	pthread_t th;
	char b = 0;
	pid_t f, v;
	int st;

	ready(rep);
	if (read(cmd, &b, 1) != 1)
		return 10;
	if (b == 'e') {
		if (dup2(OUT_FD, 1) != 1)
			return 11;
		execl("/bin/echo", "echo", "optd", (char *)NULL);
		return 12;
	}
	r[0] = pthread_create(&th, NULL, events_thread, NULL);
	if (r[0] == 0)
		r[1] = pthread_join(th, NULL);
	r[2] = __atomic_load_n(&sh->thread_ran, __ATOMIC_SEQ_CST);
	f = fork();
	if (f == 0)
		_exit(7);
	r[3] = f > 0 ? 1 : -errno;
	r[4] = f > 0 && waitpid(f, &st, 0) == f ? st : -1;
	v = vfork_exit(8);
	r[5] = v > 0 ? 1 : -errno;
	r[6] = v > 0 && waitpid(v, &st, 0) == v ? st : -1;
	put(rep, r, sizeof(r));
	return 0;
}

/*
 * On "x" or "c" (after a thread, as child_events does): executes int3, which
 * its SIGTRAP handler must catch; reports how often it ran.
 */
static int child_trap(int cmd, int rep)
{
	pthread_t th;
	long count;
	char b = 0;

	ready(rep);
	if (read(cmd, &b, 1) != 1)
		return 10;
	if (b == 'c' && (pthread_create(&th, NULL, events_thread, NULL) || pthread_join(th, NULL)))
		return 11;
	__asm__ volatile("int3");
	count = trap_count;
	put(rep, &count, sizeof(count));
	return 0;
}

/* Maps the known memory (before the fork, so the child has it at the same addresses). */
static void area_setup(void)
{
	area =
	    mmap(NULL, AREA_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(area, MAP_FAILED);
	for (size_t i = 0; i < AREA_PAGES * PG; i++)
		area[i] = pattern(i);
	ck_assert_int_eq(mprotect(area + AREA_RO * PG, PG, PROT_READ), 0);
	ck_assert_int_eq(mprotect(area + AREA_NONE * PG, PG, PROT_NONE), 0);
	ck_assert_int_eq(munmap(area + AREA_HOLE * PG, PG), 0);
	ck_assert_int_eq(mprotect(area + AREA_FENCE * PG, PG, PROT_READ), 0);
}

#define DUMP_LEN (4 * PG) /* pages 0-3: what the child can read of the area */

/* On "d": sends pages 0-3 of the area, test_remote_patch_me()'s result and its first 8 bytes. */
static int child_mem(int cmd, int rep)
{
	int ret;
	char b = 0;

	ready(rep);
	if (read(cmd, &b, 1) != 1 || b != 'd')
		return 10;
	put(rep, area, DUMP_LEN);
	ret = test_remote_patch_me();
	put(rep, &ret, sizeof(ret));
	put(rep, (const void *)(uintptr_t)test_remote_patch_me, 8);
	return 0;
}

static void *thread_spin(void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;

	sh->tids[i] = gettid();
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	test_remote_spin(&sh->progress[i], &sh->stop, sh->spin_out[i]);
	return NULL;
}

static void *thread_futex(void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;
	long r = 0;

	sh->tids[NSPIN + i] = gettid();
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&sh->futex_word, __ATOMIC_SEQ_CST)) {
		/* Shared (not PRIVATE): the test wakes it from its own process. */
		r = syscall(SYS_futex, &sh->futex_word, FUTEX_WAIT, 0, NULL, NULL, 0);
		if (r < 0 && errno != EAGAIN)
			break;
		r = 0;
	}
	sh->blocked_ret[i] = r;
	sh->blocked_err[i] = r < 0 ? errno : 0;
	return NULL;
}

static int threads_cmd;

static void *thread_read(void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;
	char b;
	ssize_t n;

	sh->tids[NSPIN + i] = gettid();
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	n = read(threads_cmd, &b, 1);
	sh->blocked_ret[i] = n;
	sh->blocked_err[i] = n < 0 ? errno : 0;
	return NULL;
}

/* NSPIN spinning threads, two in futex wait, two in read(); joins them all. */
static int child_threads(int cmd, int rep)
{
	pthread_t th[NSPIN + NBLOCKED];

	(void)rep;
	threads_cmd = cmd;
	for (size_t i = 0; i < NSPIN + NBLOCKED; i++) {
		void *(*fn)(void *) = i < NSPIN	      ? thread_spin
				      : i < NSPIN + 2 ? thread_futex
						      : thread_read;
		uintptr_t arg = i < NSPIN ? i : i - NSPIN;
		if (pthread_create(&th[i], NULL, fn, (void *)arg))
			return 10;
	}
	for (size_t i = 0; i < NSPIN + NBLOCKED; i++)
		if (pthread_join(th[i], NULL))
			return 11;
	return 0;
}

/* ---- 1. interrupt stop in user code ---- */

static void wait_progress(size_t i)
{
	while (!sh->progress[i])
		sched_yield();
}

static void check_spin_report(struct child *c)
{
	uint64_t out[SPIN_OUT], want[SPIN_OUT];

	get_report(c, out, sizeof(out));
	ck_assert_uint_gt(out[0], 0);
	spin_reference(out[0], want);
	ck_assert_mem_eq(out, want, sizeof(want));
}

/* _i: 0 = one auto-prepared call per syscall, 1 = one prepare/cure around all. */
START_TEST(test_interrupt_user_code)
{
	struct child *c = spawn(child_spin);
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;

	expect_ready(c);
	wait_progress(0);
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	ck_assert_int_eq(t->stop, INJ_STOP_INTERRUPT);
	before = regs_of(t->tid);
	ck_assert_int_eq((long)before.orig_rax, -1); /* not inside a syscall */
	ck_assert_msg(in_spin(before.rip), "rip %#llx outside the loop", before.rip);
	remote_smoke(t, _i);
	after = regs_of(t->tid);
	assert_regs_eq(&before, &after);
	sh->stop = 1;
	assert_exit0(finish(&d));
	check_spin_report(c);
}
END_TEST

/* ---- 2. interrupt stop in a blocking syscall ---- */

START_TEST(test_interrupt_blocked_read)
{
	struct child *c = spawn(child_read);
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;
	long r[2];

	expect_ready(c);
	wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	ck_assert_int_eq(t->stop, INJ_STOP_INTERRUPT);
	before = regs_of(t->tid);
	ck_assert_int_eq((long)before.orig_rax, SYS_read);
	ck_assert_int_eq((long)before.rax, -ERESTARTSYS);
	remote_smoke(t, _i);
	after = regs_of(t->tid);
	assert_regs_eq(&before, &after);
	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "later");
	assert_exit0(finish(&d));
	get_report(c, r, sizeof(r));
	ck_assert_int_eq(r[0], 5); /* the read was restarted, not failed with EINTR */
	ck_assert_int_eq(r[1], 0);
}
END_TEST

/* _i: enum sleep_kind. */
START_TEST(test_interrupt_sleep)
{
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	long r[3];

	child_sleep_kind = (enum sleep_kind)_i;
	c = spawn(child_sleep);
	expect_ready(c);
	wait_blocked(c->pid, c->pid, sleep_nr[_i], -1);
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	before = regs_of(t->tid);
	ck_assert_int_eq((long)before.orig_rax, sleep_nr[_i]);
	ck_assert_int_eq((long)before.rax, sleep_restart[_i]);
	remote_smoke(t, false);
	after = regs_of(t->tid);
	assert_regs_eq(&before, &after);
	assert_exit0(finish(&d));
	get_report(c, r, sizeof(r));
	ck_assert_msg(r[0] == 0 && r[1] == 0, "sleep returned %ld, errno %ld", r[0], r[1]);
	/* A restart continues with the time left: never shorter than asked. */
	ck_assert_int_ge(r[2], SLEEP_NS);
}
END_TEST

/* ---- 3. signal-delivery stop ---- */

START_TEST(test_signal_stop)
{
	struct child *c = spawn(child_signal);
	struct user_regs_struct before, after;
	union sigval v = {.sival_int = 42};
	struct drive d = {0};
	struct inj_thread *t;
	struct inj_stop st;
	long r[6];

	expect_ready(c);
	wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	d.p = seize(c->pid);
	t = d.p->threads[0];
	ck_assert_int_eq(sigqueue(c->pid, SIGUSR1, v), 0);
	ck_assert_int_eq(inj_thread_wait(t, &st), 0);
	ck_assert_int_eq(st.kind, INJ_STOP_SIGNAL);
	ck_assert_int_eq(st.sig, SIGUSR1);
	ck_assert_int_eq(inj_thread_note_stop(t, &st), 0);
	before = regs_of(t->tid);
	remote_smoke(t, _i);
	after = regs_of(t->tid);
	assert_regs_eq(&before, &after);
	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "x");
	assert_exit0(finish(&d));
	get_report(c, r, sizeof(r));
	ck_assert_int_eq(r[0], 1); /* SA_RESTART: the read went on */
	ck_assert_int_eq(r[1], 'x');
	ck_assert_int_eq(r[2], 1); /* exactly once */
	ck_assert_int_eq(r[3], SI_QUEUE);
	ck_assert_int_eq(r[4], 42);
	ck_assert_int_eq(r[5], getpid());
}
END_TEST

/* ---- 4. group-stop ---- */

/* _i: 0 = resume (PTRACE_LISTEN), 1 = detach. */
START_TEST(test_group_stop)
{
	struct child *c = spawn(child_read);
	struct drive d = {0};
	struct inj_thread *t;
	char s;
	long r[2];
	int status;

	expect_ready(c);
	ck_assert_int_eq(kill(c->pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(c->pid, &status, WUNTRACED), c->pid);
	ck_assert(WIFSTOPPED(status));
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	ck_assert_int_eq(t->stop, INJ_STOP_GROUP);
	remote_smoke(t, false);
	if (_i == 0) {
		ck_assert_int_eq(inj_process_resume(d.p), 0);
		s = task_state(c->pid, c->pid);
		ck_assert_msg(s == 't' || s == 'T', "state %c after resume", s);
	} else {
		ck_assert_int_eq(inj_process_stop(d.p), 0);
		ck_assert_int_eq(inj_process_detach(d.p), 0);
		untrack_free(d.p);
		/* Detach wakes the thread, which stops again: wait for it to settle. */
		while ((s = task_state(c->pid, c->pid)) == 'R' || s == 't')
			sched_yield();
		ck_assert_msg(s == 'T', "state %c after detach", s);
	}
	/* Input is there, yet a stopped child must not take it. */
	send(c, "later");
	s = task_state(c->pid, c->pid);
	ck_assert_msg(s == 't' || s == 'T', "state %c", s);
	ck_assert_int_eq(kill(c->pid, SIGCONT), 0);
	if (_i == 0) {
		status = finish(&d);
	} else {
		ck_assert_int_eq(waitpid(c->pid, &status, 0), c->pid);
	}
	assert_exit0(status);
	get_report(c, r, sizeof(r));
	ck_assert_int_eq(r[0], 5);
}
END_TEST

/* ---- 5, 6. syscall-entry and syscall-exit stops ---- */

struct want_syscall {
	enum inj_stop_kind kind;
	long nr;
};

static bool want_syscall(struct inj_thread *t, const struct inj_stop *st, void *arg)
{
	const struct want_syscall *w = arg;

	return st->kind == w->kind && (long)regs_of(t->tid).orig_rax == w->nr;
}

static const struct syscall_case {
	enum inj_stop_kind kind;
	long nr;
	bool batch;
} syscall_cases[] = {
    {INJ_STOP_SYSCALL_ENTRY, SYS_write, false},	  {INJ_STOP_SYSCALL_ENTRY, SYS_write, true},
    {INJ_STOP_SYSCALL_ENTRY, SYS_getppid, false}, {INJ_STOP_SYSCALL_ENTRY, SYS_getppid, true},
    {INJ_STOP_SYSCALL_EXIT, SYS_write, false},	  {INJ_STOP_SYSCALL_EXIT, SYS_write, true},
    {INJ_STOP_SYSCALL_EXIT, SYS_getppid, false},  {INJ_STOP_SYSCALL_EXIT, SYS_getppid, true},
};

static void check_sys_report(struct child *c)
{
	char out[64];
	long r[3];

	get_report(c, r, sizeof(r));
	ck_assert_int_eq(r[0], 5);
	ck_assert_int_eq(r[2], 0);
	ck_assert_int_eq(r[1], getpid());
	/* The child's write ran exactly once. */
	ck_assert_uint_eq(read_all(c->out, out, sizeof(out)), 5);
	ck_assert_mem_eq(out, "hello", 5);
}

START_TEST(test_syscall_stop)
{
	const struct syscall_case *k = &syscall_cases[_i];
	struct want_syscall w = {k->kind, k->nr};
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;

	child_filter = false;
	c = spawn(child_sys);
	expect_ready(c);
	d.p = seize_stopped(c->pid);
	d.p->resume_with_syscall = true;
	send(c, "g");
	t = drive(&d, want_syscall, &w, NULL);
	before = regs_of(t->tid);
	if (k->kind == INJ_STOP_SYSCALL_ENTRY)
		ck_assert_int_eq((long)before.rax, -ENOSYS);
	else
		ck_assert_int_eq((long)before.rax, k->nr == SYS_write ? 5 : getpid());
	remote_smoke(t, k->batch);
	after = regs_of(t->tid);
	if (k->kind == INJ_STOP_SYSCALL_ENTRY) {
		/* Our syscall took the entry: the child's own runs again from its instruction. */
		before.rip -= 2;
		before.rax = before.orig_rax;
	}
	assert_regs_eq(&before, &after);
	assert_exit0(finish(&d));
	check_sys_report(c);
}
END_TEST

/* ---- 7. seccomp stop ---- */

static bool want_seccomp(struct inj_thread *t, const struct inj_stop *st, void *arg)
{
	(void)t;
	return st->kind == INJ_STOP_SECCOMP && st->msg == *(unsigned long *)arg;
}

/* _i: bit 0 = batch, bit 1 = stop at getppid rather than write. */
START_TEST(test_seccomp_stop)
{
	unsigned long data = _i & 2 ? DATA_GETPPID : DATA_WRITE;
	long nr = _i & 2 ? SYS_getppid : SYS_write;
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	long res = 0;

	child_filter = true;
	c = spawn(child_sys);
	expect_ready(c);
	d.p = seize(c->pid);
	send(c, "g");
	t = drive(&d, want_seccomp, &data, NULL);
	ck_assert_int_eq(t->stop, INJ_STOP_SECCOMP);
	before = regs_of(t->tid);
	ck_assert_int_eq((long)before.orig_rax, nr);
	remote_smoke(t, _i & 1);
	/* A syscall that the child's own filter traces, run for us. */
	ck_assert_int_eq(inj_syscall(t, SYS_getppid, &res, 0), 0);
	ck_assert_int_eq(res, getpid());
	after = regs_of(t->tid);
	before.rip -= 2;
	before.rax = before.orig_rax;
	assert_regs_eq(&before, &after);
	assert_exit0(finish(&d));
	check_sys_report(c);
}
END_TEST

/*
 * A stop of a filter that is not the tracer's (other SECCOMP_RET_DATA) is
 * resumed as without a tracer: the syscall fails with ENOSYS, unrun. _i: 0
 * resumed, 1 detached at that stop.
 */
START_TEST(test_seccomp_foreign)
{
	struct inj_settings set = {.options = OPTIONS, .seccomp_data = DATA_WRITE};
	unsigned long data = DATA_GETPPID;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	char out[64];
	long r[3];
	int st;

	child_filter = true;
	c = spawn(child_sys);
	expect_ready(c);
	ck_assert_int_eq(inj_process_seize(c->pid, &set, &d.p), 0);
	track(d.p);
	send(c, "g");
	/* write's stop is the tracer's: it runs; getppid's is not. */
	t = drive(&d, want_seccomp, &data, NULL);
	ck_assert(inj_thread_at_foreign_seccomp(t));
	ck_assert_int_eq((long)regs_of(t->tid).orig_rax, SYS_getppid);
	if (_i == 0) {
		assert_exit0(finish(&d));
	} else {
		ck_assert_int_eq(inj_process_stop(d.p), 0);
		ck_assert_int_eq(inj_process_detach(d.p), 0);
		untrack_free(d.p);
		ck_assert_int_eq(waitpid(c->pid, &st, 0), c->pid);
		assert_exit0(st);
	}
	get_report(c, r, sizeof(r));
	ck_assert_int_eq(r[0], 5);
	ck_assert_int_eq(r[1], -1);
	ck_assert_uint_eq(read_all(c->out, out, sizeof(out)), 5);
}
END_TEST

/* ---- 8. event stops ---- */

static const struct event_case {
	char cmd;
	int event;
} event_cases[] = {
    {'e', PTRACE_EVENT_EXEC},
    {'c', PTRACE_EVENT_CLONE},
    {'c', PTRACE_EVENT_FORK},
    {'c', PTRACE_EVENT_VFORK_DONE},
    /*
     * At PTRACE_EVENT_VFORK the parent cannot leave its syscall before the
     * vfork child exits or execs, and that child may sit in its first stop
     * waiting for us: a remote syscall there must succeed or be refused,
     * not wait for that.
     */
    {'c', PTRACE_EVENT_VFORK},
};

struct want_event {
	int event;
	unsigned long msg; /* out: the event's message (new pid or tid) */
};

static bool want_event(struct inj_thread *t, const struct inj_stop *st, void *arg)
{
	struct want_event *w = arg;

	if (st->kind != INJ_STOP_EVENT || st->event != w->event || t->tid != t->proc->pid)
		return false;
	w->msg = st->msg;
	return true;
}

START_TEST(test_event_stop)
{
	const struct event_case *k = &event_cases[_i];
	struct user_regs_struct before, after;
	struct want_event w = {k->event, 0};
	struct sigstate sig_before;
	int event = k->event;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	char cmd[2] = {k->cmd, 0};
	long res = 0;

	if (event == PTRACE_EVENT_VFORK && nofork) {
		/* It hangs when it fails (see event_cases); only a forked test times out. */
		fprintf(stderr,
			"test_event_stop: PTRACE_EVENT_VFORK case skipped under CK_FORK=no\n");
		return;
	}
	c = spawn(child_events);
	expect_ready(c);
	d.p = seize(c->pid);
	send(c, cmd);
	t = drive(&d, want_event, &w, NULL);
	if (event == PTRACE_EVENT_EXEC) {
		inj_process_exec_reset(d.p, t);
		/* Before the new program's first instruction the break is where exec put it. */
		ck_assert_int_eq(inj_syscall(t, SYS_brk, &res, 0), 0);
		ck_assert_uint_eq((unsigned long)res, stat_field(c->pid, 47) /* start_brk */);
	}
	before = regs_of(t->tid);
	sig_before = sigstate_of(c->pid, t->tid);
	if (event == PTRACE_EVENT_VFORK) {
		/* Done, or refused: not blocked until the vfork child lets its parent go. */
		int r = inj_syscall(t, SYS_getpid, &res, 0);
		ck_assert_msg(r == 0 || r == -EBUSY || r == -EAGAIN, "remote getpid: %d", r);
		if (r < 0) {
			struct sigstate sig = sigstate_of(c->pid, t->tid);
			after = regs_of(t->tid);
			assert_regs_eq(&before, &after);
			assert_sigstate_eq(&sig_before, &sig);
			goto out_finish;
		}
		ck_assert_int_eq(res, c->pid);
	}
	remote_smoke(t, false);
	after = regs_of(t->tid);
	/*
	 * The stop sits inside the syscall, before its result is in rax: the
	 * thread leaves the stop with that result, as it would have untraced.
	 */
	before.rax = event == PTRACE_EVENT_EXEC ? 0 : w.msg;
	assert_regs_eq(&before, &after);
out_finish:
	assert_exit0(finish(&d));
	if (event == PTRACE_EVENT_EXEC) {
		char out[64];
		size_t n = read_all(c->out, out, sizeof(out));
		ck_assert_uint_eq(n, 5);
		ck_assert_mem_eq(out, "optd\n", 5);
	} else {
		long r[8];
		get_report(c, r, sizeof(r));
		ck_assert_msg(r[0] == 0, "pthread_create returned %ld", r[0]);
		ck_assert_int_eq(r[1], 0);
		ck_assert_int_eq(r[2], 1);
		ck_assert_msg(r[3] == 1, "fork returned %ld", r[3]);
		ck_assert(WIFEXITED(r[4]) && WEXITSTATUS(r[4]) == 7);
		ck_assert_msg(r[5] == 1, "vfork returned %ld", r[5]);
		ck_assert(WIFEXITED(r[6]) && WEXITSTATUS(r[6]) == 8);
	}
}
END_TEST

/*
 * The target's SIGTRAP handler survives our work. A single-step trap that
 * arrives while SIGTRAP is blocked makes the kernel reset SIGTRAP to SIG_DFL
 * and unblock it (force_sig_info_to_task()); the target's next int3 or
 * raise(SIGTRAP) would then kill it.
 * _i: 0 = interrupt stop in read(), 1 = PTRACE_EVENT_CLONE (glibc blocks
 * every signal around clone()).
 */
START_TEST(test_sigtrap_kept)
{
	struct want_event w = {PTRACE_EVENT_CLONE, 0};
	struct child *c = spawn(child_trap);
	struct sigstate before, after;
	struct drive d = {0};
	struct inj_thread *t;
	long count = 0;

	expect_ready(c);
	if (_i == 0) {
		wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
		d.p = seize_stopped(c->pid);
		t = d.p->threads[0];
	} else {
		d.p = seize(c->pid);
		send(c, "c");
		t = drive(&d, want_event, &w, NULL);
	}
	before = sigstate_of(c->pid, t->tid);
	ck_assert(before.cgt & SIGTRAP_BIT);
	remote_smoke(t, false);
	after = sigstate_of(c->pid, t->tid);
	assert_sigstate_eq(&before, &after);
	if (_i == 0)
		send(c, "x");
	assert_exit0(finish(&d));
	get_report(c, &count, sizeof(count));
	ck_assert_int_eq(count, 1);
}
END_TEST

/* ---- 9. the swap path ---- */

/* _i: 0 = the child spins in user code, 1 = it is blocked in read(). */
START_TEST(test_swap_site)
{
	struct child *c = spawn(_i ? child_read : child_spin);
	unsigned char code_before[64], code_after[64];
	struct user_regs_struct before, after;
	struct drive d = {0};
	struct inj_thread *t;
	uint64_t at;

	expect_ready(c);
	if (_i)
		wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	else
		wait_progress(0);
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	before = regs_of(t->tid);
	at = before.rip - 32;
	ck_assert_int_eq(inj_mem_read(d.p, at, code_before, sizeof(code_before)), 0);
	/* The code page is still the file's: nothing was ever written to it. */
	ck_assert_int_eq(smaps_anon_kb(c->pid, before.rip), 0);
	inj_syscall_set_site(INJ_SITE_SWAP);
	remote_smoke(t, _i);
	after = regs_of(t->tid);
	assert_regs_eq(&before, &after);
	ck_assert_int_eq(inj_mem_read(d.p, at, code_after, sizeof(code_after)), 0);
	ck_assert_mem_eq(code_after, code_before, sizeof(code_before));
	/* The bytes were swapped in and out (the page became the child's own copy). */
	ck_assert_int_gt(smaps_anon_kb(c->pid, before.rip), 0);
	ck_assert_int_eq(inj_process_resume(d.p), 0);
	if (_i)
		send(c, "later");
	else
		sh->stop = 1;
	assert_exit0(finish(&d));
	if (_i) {
		long r[2];
		get_report(c, r, sizeof(r));
		ck_assert_int_eq(r[0], 5);
	} else {
		check_spin_report(c);
	}
}
END_TEST

/* ---- 10. remote memory ---- */

static const struct mem_case {
	size_t off; /* from the area's start, in pages 0-2 (read-write) */
	size_t len;
} mem_cases[] = {
    {0, 1},
    {1, 1},
    {4093, 3},
    {4090, 7} /* page boundary */,
    {8191, 9} /* page boundary */,
    {13, 4097},
    {4095, 4097} /* two boundaries */,
    {5, 9},
    {16, 8},
    {2 * PG - 4, 8},
};
#define NPATHS 3

static void model_init(unsigned char *m)
{
	for (size_t i = 0; i < DUMP_LEN; i++)
		m[i] = pattern(i);
}

/* Lets a child_mem child dump what it sees, and compares with model. */
static void check_mem_dump(struct child *c, struct drive *d, const unsigned char *model,
			   int want_ret, const unsigned char *want_code)
{
	static unsigned char dump[DUMP_LEN + sizeof(int) + 8 + 1];
	int ret;

	send(c, "d");
	assert_exit0(finish(d));
	ck_assert_uint_eq(read_all(c->rep, dump, sizeof(dump)), DUMP_LEN + sizeof(int) + 8);
	for (size_t i = 0; i < DUMP_LEN; i++)
		ck_assert_msg(dump[i] == model[i], "byte %zu: child sees %#x, want %#x", i, dump[i],
			      model[i]);
	memcpy(&ret, dump + DUMP_LEN, sizeof(ret));
	ck_assert_int_eq(ret, want_ret);
	ck_assert_mem_eq(dump + DUMP_LEN + sizeof(int), want_code, 8);
}

/* _i: path * ARRAY_SIZE(mem_cases) + case. */
START_TEST(test_mem_write_paths)
{
	enum inj_mem_path path = (enum inj_mem_path)(_i / ARRAY_SIZE(mem_cases));
	const struct mem_case *k = &mem_cases[_i % ARRAY_SIZE(mem_cases)];
	static unsigned char model[DUMP_LEN], data[2 * PG], back[2 * PG + 8];
	struct drive d = {0};
	struct child *c;
	uint64_t lo, hi;

	area_setup();
	c = spawn(child_mem);
	expect_ready(c);
	d.p = seize_stopped(c->pid); /* POKEDATA needs a stopped thread */
	model_init(model);
	for (size_t i = 0; i < k->len; i++)
		data[i] = (unsigned char)~pattern(k->off + i);
	ck_assert_int_eq(
	    inj_mem_write_via(d.p, path, (uint64_t)(uintptr_t)area + k->off, data, k->len), 0);
	memcpy(model + k->off, data, k->len);
	/* Read back with a margin: the bytes around are untouched. */
	lo = k->off >= 3 ? k->off - 3 : 0;
	hi = k->off + k->len + 3;
	ck_assert_int_eq(inj_mem_read(d.p, (uint64_t)(uintptr_t)area + lo, back, hi - lo), 0);
	ck_assert_mem_eq(back, model + lo, hi - lo);
	check_mem_dump(c, &d, model, 1, (const unsigned char *)(uintptr_t)test_remote_patch_me);
}
END_TEST

/* Reads: odd lengths at odd addresses, through protections, across them. */
START_TEST(test_mem_read)
{
	static const struct {
		size_t off, len;
	} reads[] = {
	    {0, 1},
	    {7, 3},
	    {4093, 7},
	    {4095, 4097},
	    {AREA_RO * PG - 5, 9}, /* read-write into read-only */
	    {AREA_RO * PG + 1, 3}, /* read-only */
	    {AREA_NONE * PG, PG},  /* PROT_NONE: /proc/PID/mem */
	    {AREA_NONE * PG + 9, 1},
	    {AREA_NONE * PG - 3, 9}, /* read-only into PROT_NONE */
	    {AREA_FENCE * PG + 77, 7},
	};
	static unsigned char back[2 * PG], model[DUMP_LEN];
	struct drive d = {0};
	struct child *c;

	area_setup();
	c = spawn(child_mem);
	expect_ready(c);
	d.p = seize(c->pid); /* reads need no stop */
	for (size_t i = 0; i < ARRAY_SIZE(reads); i++) {
		memset(back, 0, sizeof(back));
		ck_assert_msg(inj_mem_read(d.p, (uint64_t)(uintptr_t)area + reads[i].off, back,
					   reads[i].len) == 0,
			      "read %zu", i);
		for (size_t j = 0; j < reads[i].len; j++)
			ck_assert_msg(back[j] == pattern(reads[i].off + j), "read %zu byte %zu", i,
				      j);
	}
	/* Many small ranges at once: PROT_NONE and a hole among them. */
	{
		static const size_t offs[] = {
		    0, 4093, AREA_RO * PG - 2, AREA_NONE * PG + 1, AREA_RO * PG + 40, 5 * 8};
		struct inj_mem_span spans[ARRAY_SIZE(offs)];
		unsigned char many[ARRAY_SIZE(offs) * 8];

		for (size_t i = 0; i < ARRAY_SIZE(offs); i++)
			spans[i] = (struct inj_mem_span){(uint64_t)(uintptr_t)area + offs[i],
							 3 + i % 6, many + i * 8};
		ck_assert_int_eq(inj_mem_read_spans(d.p, spans, ARRAY_SIZE(offs)), 0);
		for (size_t i = 0; i < ARRAY_SIZE(offs); i++)
			for (size_t j = 0; j < spans[i].len; j++)
				ck_assert_msg(many[i * 8 + j] == pattern(offs[i] + j),
					      "range %zu byte %zu", i, j);
		spans[2].addr = (uint64_t)(uintptr_t)area + AREA_HOLE * PG;
		ck_assert_int_eq(inj_mem_read_spans(d.p, spans, ARRAY_SIZE(offs)), -EFAULT);
	}
	ck_assert_int_eq(inj_process_stop(d.p), 0);
	model_init(model);
	check_mem_dump(c, &d, model, 1, (const unsigned char *)(uintptr_t)test_remote_patch_me);
}
END_TEST

/* Writes through protections: read-only data, r-x code, a span across read-write and read-only. */
START_TEST(test_mem_write_protected)
{
	/* mov $42,%eax; ret; int3; int3 */
	static const unsigned char patch[8] = {0xb8, 42, 0, 0, 0, 0xc3, 0xcc, 0xcc};
	static unsigned char model[DUMP_LEN];
	unsigned char data[16], back[16];
	enum inj_mem_path path = INJ_MEM_VM;
	uint64_t base;
	struct drive d = {0};
	struct child *c;

	area_setup();
	base = (uint64_t)(uintptr_t)area;
	c = spawn(child_mem);
	expect_ready(c);
	d.p = seize_stopped(c->pid);
	model_init(model);

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(0x90 + i);
	/* Read-only page: process_vm_writev refuses, /proc/PID/mem writes through. */
	ck_assert_int_eq(inj_mem_write(d.p, base + AREA_RO * PG + 100, data, 7, &path), 0);
	ck_assert_int_eq(path, INJ_MEM_PROC_MEM);
	memcpy(model + AREA_RO * PG + 100, data, 7);
	/* Across read-write and read-only: the whole span, not a prefix. */
	ck_assert_int_eq(inj_mem_write(d.p, base + AREA_RO * PG - 6, data, 13, &path), 0);
	ck_assert_int_eq(path, INJ_MEM_PROC_MEM);
	memcpy(model + AREA_RO * PG - 6, data, 13);
	ck_assert_int_eq(inj_mem_read(d.p, base + AREA_RO * PG - 6, back, 13), 0);
	ck_assert_mem_eq(back, data, 13);
	/* inj_mem_write_ro: /proc/PID/mem from the start, read-only or not. */
	ck_assert_int_eq(inj_mem_write_ro(d.p, base + AREA_RO * PG + 200, data + 1, 9, &path), 0);
	ck_assert_int_eq(path, INJ_MEM_PROC_MEM);
	memcpy(model + AREA_RO * PG + 200, data + 1, 9);
	path = INJ_MEM_VM;
	ck_assert_int_eq(inj_mem_write_ro(d.p, base + AREA_RO * PG - 40, data + 2, 5, &path), 0);
	ck_assert_int_eq(path, INJ_MEM_PROC_MEM);
	memcpy(model + AREA_RO * PG - 40, data + 2, 5);
	/* r-x code. */
	ck_assert_int_eq(inj_mem_write(d.p, (uint64_t)(uintptr_t)test_remote_patch_me, patch,
				       sizeof(patch), &path),
			 0);
	ck_assert_int_eq(path, INJ_MEM_PROC_MEM);
	ck_assert_int_eq(inj_mem_read(d.p, (uint64_t)(uintptr_t)test_remote_patch_me, back, 8), 0);
	ck_assert_mem_eq(back, patch, 8);
	/* Our own copy of the code is untouched: the write went to the child. */
	ck_assert_int_eq(test_remote_patch_me(), 1);
	check_mem_dump(c, &d, model, 42, patch);
}
END_TEST

/* Unmapped memory is -EFAULT on every path; a failed write leaves the child working. */
START_TEST(test_mem_unmapped)
{
	unsigned char buf[16] = {1, 2, 3};
	static unsigned char model[DUMP_LEN];
	uint64_t hole, none;
	struct drive d = {0};
	struct child *c;

	area_setup();
	hole = (uint64_t)(uintptr_t)area + AREA_HOLE * PG;
	none = (uint64_t)(uintptr_t)area + AREA_NONE * PG;
	c = spawn(child_mem);
	expect_ready(c);
	d.p = seize_stopped(c->pid);
	ck_assert_int_eq(inj_mem_read(d.p, hole + 8, buf, 8), -EFAULT);
	/* PROT_NONE (readable through /proc/PID/mem) into the hole. */
	ck_assert_int_eq(inj_mem_read(d.p, hole - 4, buf, 8), -EFAULT);
	ck_assert_int_eq(inj_mem_read(d.p, 0, buf, 1), -EFAULT);
	ck_assert_int_eq(inj_mem_write(d.p, hole + 1, buf, 3, NULL), -EFAULT);
	for (int path = 0; path < NPATHS; path++) {
		int r = inj_mem_write_via(d.p, (enum inj_mem_path)path, hole + 1, buf, 3);
		ck_assert_msg(r == -EFAULT, "inj_mem_write_via(path %d) into a hole: %d", path, r);
	}
	/* PROT_NONE is writable for a tracer; the bytes are there when read back. */
	ck_assert_int_eq(inj_mem_write(d.p, none + 5, buf, 3, NULL), 0);
	ck_assert_int_eq(inj_mem_read(d.p, none + 5, buf + 8, 3), 0);
	ck_assert_mem_eq(buf + 8, buf, 3);
	model_init(model);
	check_mem_dump(c, &d, model, 1, (const unsigned char *)(uintptr_t)test_remote_patch_me);
}
END_TEST

/* ---- 11. the region ---- */

static const char *self_exe(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	ck_assert_int_gt(n, 0);
	path[n] = '\0';
	return path;
}

/* Every mapping in [addr, addr+size) is private anonymous r-x and together they cover it. */
static void assert_region_mapped(pid_t pid, uint64_t addr, uint64_t size)
{
	struct maps *m = maps_of(pid);
	uint64_t at = addr;

	while (at < addr + size) {
		const struct maps_entry *e = maps_find(m, at);
		ck_assert_msg(e, "%#lx not mapped", (unsigned long)at);
		ck_assert_uint_eq(e->prot, PROT_READ | PROT_EXEC);
		ck_assert(!e->shared);
		ck_assert_int_eq(e->kind, MAPS_ANON);
		ck_assert_uint_le(e->start, addr > at ? addr : at);
		at = e->end;
	}
	/* Its own mappings: not merged with a neighbour on either side. */
	ck_assert_uint_eq(maps_find(m, addr)->start, addr);
	ck_assert_uint_eq(maps_find(m, addr + size - 1)->end, addr + size);
	maps_free(m);
}

/* A child_read blocked in its read(), seized and stopped: its only thread. */
static struct inj_thread *read_child_stopped(struct drive *d, struct child **ret_c)
{
	struct child *c = spawn(child_read);

	expect_ready(c);
	wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	d->p = seize_stopped(c->pid);
	*ret_c = c;
	return d->p->threads[0];
}

/* _i: 0 = 16 pages, 1 = 4 MiB + a page, 2 MiB aligned (huge-page advice). */
START_TEST(test_region)
{
	uint64_t size = _i ? 4 * INJ_HUGE_PAGE + PG : 16 * PG;
	uint64_t align = _i ? INJ_HUGE_PAGE : PG;
	struct inj_place_policy policy = {
	    .heap_reserve = 1ULL << 30, .stack_guard_gap = 1ULL << 20, .gap = 1ULL << 20};
	struct optd_region_header hdr;
	struct inj_region *reg = NULL;
	unsigned char code[16];
	uint64_t near_lo, near_hi, addr = 0;
	char *text_before, *text_after, *text_now;
	struct sigstate sig_before, sig_after;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	struct maps *m;

	t = read_child_stopped(&d, &c);
	text_before = maps_text(c->pid);
	sig_before = sigstate_of(c->pid, t->tid);
	m = maps_of(c->pid);
	ck_assert_int_eq(maps_span_of(m, self_exe(), &near_lo, &near_hi), 0);
	ck_assert_int_eq(inj_region_find_place(t, m, near_lo, near_hi, size, align, &policy, &addr),
			 0);
	ck_assert_ptr_null(maps_find(m, addr));
	maps_free(m);

	ck_assert_int_eq(inj_region_create(t, addr, size, &reg), 0);
	ck_assert_uint_eq(reg->base, addr);
	ck_assert_uint_eq(reg->size, size);
	assert_region_mapped(c->pid, addr, size);
	ck_assert_int_eq(inj_region_read_header(d.p, addr, &hdr), 0);
	ck_assert_mem_eq(hdr.magic, OPTD_REGION_MAGIC, OPTD_REGION_MAGIC_LEN);
	ck_assert_uint_eq(hdr.version, OPTD_REGION_VERSION);
	ck_assert_uint_eq(hdr.header_size, sizeof(hdr));
	ck_assert_uint_eq(hdr.base, addr);
	ck_assert_uint_eq(hdr.size, size);
	ck_assert_uint_eq(hdr.code_offset, OPTD_REGION_HEADER_PAGE);
	ck_assert_uint_eq(hdr.code_size, size - OPTD_REGION_HEADER_PAGE);
	ck_assert_uint_eq(hdr.owner_pid, (uint64_t)getpid());
	ck_assert_uint_eq(hdr.flags & OPTD_REGION_F_HUGEPAGE,
			  reg->huge_pages ? OPTD_REGION_F_HUGEPAGE : 0);
	ck_assert_mem_eq(&hdr, &reg->hdr, sizeof(hdr));
	if (_i == 0)
		ck_assert_uint_eq(reg->huge_pages, 0);
	/* The code area is int3 from end to end. */
	ck_assert_int_eq(inj_mem_read(d.p, addr + OPTD_REGION_HEADER_PAGE, code, sizeof(code)), 0);
	for (size_t i = 0; i < sizeof(code); i++)
		ck_assert_uint_eq(code[i], 0xcc);
	ck_assert_int_eq(inj_mem_read(d.p, addr + size - sizeof(code), code, sizeof(code)), 0);
	for (size_t i = 0; i < sizeof(code); i++)
		ck_assert_uint_eq(code[i], 0xcc);

	/* Taken addresses: -EEXIST, and the target's maps stay exactly as they were. */
	text_after = maps_text(c->pid);
	{
		struct inj_region *dup = NULL;
		const uint64_t taken[] = {addr, addr - 2 * PG, addr + size - PG, (uint64_t)near_lo};
		for (size_t i = 0; i < ARRAY_SIZE(taken); i++) {
			ck_assert_int_eq(inj_region_create(t, taken[i], 4 * PG, &dup), -EEXIST);
			ck_assert_ptr_null(dup);
			text_now = maps_text(c->pid);
			ck_assert_str_eq(text_now, text_after);
			free(text_now);
		}
	}
	ck_assert_int_eq(inj_region_read_header(d.p, near_lo, &hdr), -ENOENT);

	ck_assert_int_eq(inj_region_remove(t, reg), 0);
	inj_region_free(reg);
	text_now = maps_text(c->pid);
	ck_assert_str_eq(text_now, text_before);
	ck_assert_int_eq(inj_region_read_header(d.p, addr, &hdr), -ENOENT);
	sig_after = sigstate_of(c->pid, t->tid);
	assert_sigstate_eq_but_trap(&sig_before, &sig_after);
	free(text_now);
	free(text_after);
	free(text_before);

	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "later");
	assert_exit0(finish(&d));
}
END_TEST

/*
 * A region in pieces: parts of it move with remote mremaps, the piece table
 * says where each part of the layout is (in optd and in the header page),
 * neighbours that meet again join, and removal unmaps every piece.
 */
START_TEST(test_region_pieces)
{
	const uint64_t size = 16 * PG;
	struct inj_place_policy policy = {
	    .heap_reserve = 1ULL << 30, .stack_guard_gap = 1ULL << 20, .gap = 1ULL << 20};
	struct optd_region_pieces table;
	struct inj_region *reg = NULL;
	uint64_t near_lo, near_hi, addr = 0, away;
	char *text_before, *text_now;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	struct maps *m;
	long res;

	c = spawn(child_read);
	expect_ready(c);
	wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	d.p = seize_stopped(c->pid);
	t = d.p->threads[0];
	text_before = maps_text(c->pid);
	m = maps_of(c->pid);
	ck_assert_int_eq(maps_span_of(m, self_exe(), &near_lo, &near_hi), 0);
	/* Room for the region and, 1 MiB above it, for a part moved away. */
	ck_assert_int_eq(inj_region_find_place(t, m, near_lo, near_hi, size + (1ULL << 20) + size,
					       PG, &policy, &addr),
			 0);
	maps_free(m);
	away = addr + size + (1ULL << 20);
	ck_assert_int_eq(inj_region_create(t, addr, size, &reg), 0);
	ck_assert_uint_eq(reg->n_pieces, 1);
	ck_assert(inj_region_contains(reg, addr + size - 1));
	ck_assert(!inj_region_contains(reg, addr + size));

	/* Pages 4 and 5 move away: three pieces. */
	ck_assert_int_eq(inj_syscall(t, SYS_mremap, &res, (long)(addr + 4 * PG), (long)(2 * PG),
				     (long)(2 * PG), MREMAP_MAYMOVE | MREMAP_FIXED, (long)away, 0),
			 0);
	ck_assert_int_eq(res, (long)away);
	ck_assert_int_eq(inj_region_move_part(reg, addr + 4 * PG, addr + 6 * PG, away), 0);
	ck_assert_uint_eq(reg->n_pieces, 3);
	ck_assert_uint_eq(reg->base, addr);
	ck_assert(reg->hdr.flags & OPTD_REGION_F_PIECES);
	ck_assert_uint_eq(reg->pieces[1].off, 4 * PG);
	ck_assert_uint_eq(reg->pieces[1].len, 2 * PG);
	ck_assert_uint_eq(reg->pieces[1].addr, away);
	ck_assert_uint_eq(inj_region_addr(reg, 5 * PG + 8), away + PG + 8);
	ck_assert_uint_eq(inj_region_addr(reg, 6 * PG), addr + 6 * PG);
	ck_assert(!inj_region_contains(reg, addr + 4 * PG));
	ck_assert(inj_region_contains(reg, away + 2 * PG - 1));
	ck_assert(inj_region_overlaps(reg, addr + 5 * PG, addr + 6 * PG + 1));
	ck_assert(!inj_region_overlaps(reg, addr + 4 * PG, addr + 6 * PG));
	/* A range across two pieces is not one part. */
	ck_assert_int_eq(inj_region_move_part(reg, addr + 3 * PG, addr + 7 * PG, away), -EINVAL);

	/* The header page says so too. */
	ck_assert_int_eq(inj_region_write_header(d.p, reg), 0);
	ck_assert_int_eq(inj_mem_read(d.p, addr + OPTD_REGION_PIECES_OFFSET, &table, sizeof(table)),
			 0);
	ck_assert_uint_eq(table.count, 3);
	ck_assert_mem_eq(table.v, reg->pieces, 3 * sizeof(table.v[0]));

	/* Back where it was: one piece again. */
	ck_assert_int_eq(inj_syscall(t, SYS_mremap, &res, (long)away, (long)(2 * PG),
				     (long)(2 * PG), MREMAP_MAYMOVE | MREMAP_FIXED,
				     (long)(addr + 4 * PG), 0),
			 0);
	ck_assert_int_eq(inj_region_move_part(reg, away, away + 2 * PG, addr + 4 * PG), 0);
	ck_assert_uint_eq(reg->n_pieces, 1);
	ck_assert(!(reg->hdr.flags & OPTD_REGION_F_PIECES));

	/* The header page moves: base follows. */
	ck_assert_int_eq(inj_syscall(t, SYS_mremap, &res, (long)addr, (long)PG, (long)PG,
				     MREMAP_MAYMOVE | MREMAP_FIXED, (long)away, 0),
			 0);
	ck_assert_int_eq(inj_region_move_part(reg, addr, addr + PG, away), 0);
	ck_assert_uint_eq(reg->n_pieces, 2);
	ck_assert_uint_eq(reg->base, away);
	ck_assert_uint_eq(reg->hdr.base, away);
	ck_assert_uint_eq(inj_region_addr(reg, 0), away);

	ck_assert_int_eq(inj_region_remove(t, reg), 0);
	inj_region_free(reg);
	text_now = maps_text(c->pid);
	ck_assert_str_eq(text_now, text_before);
	free(text_now);
	free(text_before);
	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "later");
	assert_exit0(finish(&d));
}
END_TEST

/*
 * ---- 11a. registers, read once per stop ----
 * inj_thread_getregs() answers from what it read until the thread runs or
 * anyone sets its registers, through the cache or not.
 */
START_TEST(test_regs_cache)
{
	struct user_regs_struct a, b, raw;
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;

	t = read_child_stopped(&d, &c);
	ck_assert_int_eq(inj_thread_getregs(t, &a), 0);
	ck_assert_int_eq(inj_thread_getregs(t, &b), 0);
	raw = regs_of(t->tid);
	ck_assert_mem_eq(&a, &raw, sizeof(raw));
	ck_assert_mem_eq(&b, &raw, sizeof(raw));

	/* Set behind the cache's back: read again. */
	raw.r12 ^= 0x5a5a;
	ck_assert_int_eq(inj_ptrace_setregs(t->tid, &raw), 0);
	ck_assert_int_eq(inj_thread_getregs(t, &b), 0);
	ck_assert_uint_eq(b.r12, a.r12 ^ 0x5a5a);
	/* Set through it: remembered, and what the kernel holds. */
	ck_assert_int_eq(inj_thread_setregs(t, &a), 0);
	ck_assert_int_eq(inj_thread_getregs(t, &b), 0);
	ck_assert_mem_eq(&b, &a, sizeof(a));
	raw = regs_of(t->tid);
	ck_assert_mem_eq(&raw, &a, sizeof(a));

	/* A remote syscall runs the thread: the registers after it are its own again. */
	long res = 0;
	ck_assert_int_eq(inj_syscall(t, SYS_getpid, &res, 0), 0);
	ck_assert_int_eq(inj_thread_getregs(t, &b), 0);
	raw = regs_of(t->tid);
	ck_assert_mem_eq(&b, &raw, sizeof(raw));

	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "later");
	assert_exit0(finish(&d));
}
END_TEST

/* A table that would pass OPTD_REGION_MAX_PIECES is refused and left as it was. */
START_TEST(test_region_pieces_full)
{
	struct inj_region reg = {.base = 0x100000, .size = 64 * PG, .n_pieces = 1};
	struct inj_region before;

	reg.pieces[0] = (struct optd_region_piece){0, 64 * PG, 0x100000};
	/* Every other page away: each move of an inner page adds two pieces. */
	for (uint64_t i = 1; reg.n_pieces + 2 <= OPTD_REGION_MAX_PIECES; i += 2)
		ck_assert_int_eq(inj_region_move_part(&reg, 0x100000 + i * PG,
						      0x100000 + (i + 1) * PG, 0x900000 + i * PG),
				 0);
	ck_assert_uint_eq(reg.n_pieces, OPTD_REGION_MAX_PIECES - 1);
	before = reg;
	ck_assert_int_eq(
	    inj_region_move_part(&reg, 0x100000 + 20 * PG, 0x100000 + 21 * PG, 0x900000 + 20 * PG),
	    -ENOSPC);
	ck_assert_mem_eq(&reg, &before, sizeof(reg));
}
END_TEST

/*
 * ---- 11b. the break, from the maps alone ----
 * place_break() against the kernel's own answer (a remote brk(0)), with the
 * heap as the child left it, grown to a break inside a page, and empty. The
 * heap's bytes are put back before the child runs again.
 */
START_TEST(test_break)
{
	struct drive d = {0};
	struct inj_thread *t;
	struct child *c;
	uint64_t start_brk;
	unsigned char *heap;
	long orig = 0, res = 0;

	t = read_child_stopped(&d, &c);
	start_brk = stat_field(c->pid, 47);
	ck_assert_int_eq(inj_syscall(t, SYS_brk, &orig, 0), 0);
	ck_assert_uint_ge((uint64_t)orig, start_brk);
	heap = malloc((uint64_t)orig - start_brk + 1);
	ck_assert_ptr_nonnull(heap);
	ck_assert_int_eq(inj_mem_read(d.p, start_brk, heap, (uint64_t)orig - start_brk), 0);

	const uint64_t breaks[] = {(uint64_t)orig, (uint64_t)orig + 3 * PG + 100, start_brk,
				   start_brk + 1, (uint64_t)orig};
	for (size_t i = 0; i < ARRAY_SIZE(breaks); i++) {
		struct maps *m;

		ck_assert_int_eq(inj_syscall(t, SYS_brk, &res, (long)breaks[i]), 0);
		ck_assert_int_eq(res, (long)breaks[i]);
		m = maps_of(c->pid);
		ck_assert_msg(place_break(m, start_brk) == ALIGN_UP(breaks[i], PG),
			      "break %#" PRIx64 ": the maps say %#" PRIx64, breaks[i],
			      place_break(m, start_brk));
		if (breaks[i] == start_brk)
			ck_assert_ptr_null(maps_find_kind(m, MAPS_HEAP));
		maps_free(m);
	}
	ck_assert_int_eq(inj_mem_write(d.p, start_brk, heap, (uint64_t)orig - start_brk, NULL), 0);
	free(heap);

	ck_assert_int_eq(inj_process_resume(d.p), 0);
	send(c, "later");
	assert_exit0(finish(&d));
}
END_TEST

/* ---- 12. a target killed under us ---- */

enum kill_case {
	KILL_STOPPED,	 /* SIGKILL while stopped, nothing reaped yet */
	KILL_ZOMBIE,	 /* dead and waited for with WNOWAIT, /proc/PID/mem opened before */
	KILL_IN_SYSCALL, /* SIGKILL while our remote read() blocks in it */
	KILL_PREPARED,	 /* SIGKILL between prepare and the syscall */
	KILL_LISTENING,	 /* SIGKILL while group-stopped and resumed with PTRACE_LISTEN */
	KILL_CASES,
};

static void assert_gone_ops(struct inj_process *p, struct inj_thread *t)
{
	struct inj_region *reg = NULL;
	unsigned char buf[8] = {0};
	uint64_t addr = (uint64_t)(uintptr_t)remote_buf;
	long res = 0;
	int r;

	ck_assert_int_eq(inj_mem_read(p, addr, buf, sizeof(buf)), -ESRCH);
	ck_assert_int_eq(inj_mem_write(p, addr, buf, sizeof(buf), NULL), -ESRCH);
	ck_assert_int_eq(inj_mem_write_via(p, INJ_MEM_VM, addr, buf, sizeof(buf)), -ESRCH);
	ck_assert_int_eq(inj_mem_write_via(p, INJ_MEM_PROC_MEM, addr, buf, sizeof(buf)), -ESRCH);
	/* POKEDATA needs a thread: -ESRCH while one is recorded stopped, -EBUSY when none is. */
	r = inj_mem_write_via(p, INJ_MEM_POKE, addr, buf, sizeof(buf));
	ck_assert_msg(r == -ESRCH || r == -EBUSY, "poke: %d", r);
	if (t) {
		ck_assert_int_eq(inj_syscall(t, SYS_getpid, &res, 0), -ESRCH);
		ck_assert_int_eq(inj_region_create(t, 0x100000000ULL, 2 * PG, &reg), -ESRCH);
		ck_assert_ptr_null(reg);
	}
}

/*
 * _i % KILL_CASES: enum kill_case; _i / KILL_CASES: what is checked after the
 * death: 0 = inj_process_stop() says -ESRCH, 1 = the exit status is not lost.
 */
START_TEST(test_killed)
{
	enum kill_case kc = (enum kill_case)(_i % KILL_CASES);
	bool check_status = _i / KILL_CASES;
	struct child *c = spawn(child_read);
	struct inj_process *p;
	struct inj_thread *t;
	siginfo_t si;
	long res = 0;
	int status, r;
	pid_t killer;

	expect_ready(c);
	wait_blocked(c->pid, c->pid, SYS_read, c->cmd_fd);
	if (kc == KILL_LISTENING) {
		ck_assert_int_eq(kill(c->pid, SIGSTOP), 0);
		ck_assert_int_eq(waitpid(c->pid, &status, WUNTRACED), c->pid);
	}
	p = seize_stopped(c->pid);
	t = p->threads[0];

	switch (kc) {
	case KILL_STOPPED:
		ck_assert_int_eq(kill(c->pid, SIGKILL), 0);
		/* ptrace requests fail at once; memory may linger until the exit completes. */
		ck_assert_int_eq(inj_syscall(t, SYS_getpid, &res, 0), -ESRCH);
		ck_assert_int_eq(inj_thread_resume(t), -ESRCH);
		break;
	case KILL_ZOMBIE:
		ck_assert_int_eq(
		    inj_mem_write_via(p, INJ_MEM_PROC_MEM, (uint64_t)(uintptr_t)remote_buf, "x", 1),
		    0);
		ck_assert_int_eq(kill(c->pid, SIGKILL), 0);
		ck_assert_int_eq(waitid(P_PID, c->pid, &si, WEXITED | WNOWAIT | __WALL), 0);
		assert_gone_ops(p, t);
		break;
	case KILL_IN_SYSCALL:
		killer = fork();
		ck_assert_int_ge(killer, 0);
		if (killer == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			while (!blocked_in(c->pid, c->pid, SYS_read, SPARE_FD))
				sched_yield();
			kill(c->pid, SIGKILL);
			_exit(0);
		}
		ck_assert_int_eq(
		    inj_syscall(t, SYS_read, &res, SPARE_FD, (long)(uintptr_t)remote_buf, 1),
		    -ESRCH);
		ck_assert_int_eq(waitpid(killer, &status, 0), killer);
		assert_exit0(status);
		break;
	case KILL_PREPARED:
		ck_assert_int_eq(inj_thread_prepare(t), 0);
		ck_assert_int_eq(kill(c->pid, SIGKILL), 0);
		ck_assert_int_eq(inj_syscall(t, SYS_getpid, &res, 0), -ESRCH);
		r = inj_thread_cure(t);
		ck_assert_msg(r == -ESRCH, "cure: %d", r);
		break;
	case KILL_LISTENING:
		ck_assert_int_eq(t->stop, INJ_STOP_GROUP);
		ck_assert_int_eq(inj_process_resume(p), 0);
		ck_assert_int_eq(kill(c->pid, SIGKILL), 0);
		break;
	default:
		ck_abort();
	}

	r = inj_process_stop(p);
	if (!check_status) {
		/* The whole process is gone: stop-the-world says so. */
		ck_assert_msg(r == -ESRCH, "inj_process_stop after SIGKILL: %d", r);
		assert_gone_ops(p, NULL);
		(void)inj_process_resume(p);
		return;
	}
	(void)inj_process_resume(p);
	/*
	 * The exit status is never lost: either the injector reaped it and
	 * kept it, or it is still there for the caller to reap.
	 */
	if (waitid(P_PID, c->pid, &si, WEXITED | WNOWAIT | __WALL) == 0) {
		ck_assert_int_eq(waitpid(c->pid, &status, __WALL), c->pid);
		ck_assert(!p->exited);
	} else {
		ck_assert_msg(p->exited, "the child was reaped but its status was not kept");
		status = p->exit_status;
	}
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %#x", status);
	assert_gone_ops(p, NULL);
}
END_TEST

/* ---- 13. many threads ---- */

START_TEST(test_threads)
{
	struct user_regs_struct before[NSPIN + NBLOCKED + 1];
	struct sigstate sig_before[NSPIN + NBLOCKED + 1];
	struct child *c = spawn(child_threads);
	struct drive d = {0};
	struct inj_thread *pick;
	long res = 0;

	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < NSPIN + NBLOCKED)
		sched_yield();
	for (size_t i = 0; i < NSPIN; i++)
		wait_progress(i);
	for (size_t i = 0; i < NBLOCKED; i++) {
		if (i < 2)
			wait_blocked(c->pid, sh->tids[NSPIN + i], SYS_futex,
				     (long)(uintptr_t)&sh->futex_word);
		else
			wait_blocked(c->pid, sh->tids[NSPIN + i], SYS_read, c->cmd_fd);
	}
	d.p = seize_stopped(c->pid);
	ck_assert_uint_eq(d.p->nthreads, NSPIN + NBLOCKED + 1);
	for (size_t i = 0; i < d.p->nthreads; i++) {
		struct inj_thread *t = d.p->threads[i];
		ck_assert_msg(t->stop == INJ_STOP_INTERRUPT, "thread %d: %s", t->tid,
			      inj_stop_kind_name(t->stop));
		before[i] = regs_of(t->tid);
		sig_before[i] = sigstate_of(c->pid, t->tid);
	}
	for (size_t i = 0; i < NSPIN + NBLOCKED; i++) {
		struct inj_thread *t = inj_process_thread(d.p, sh->tids[i]);
		struct user_regs_struct r;
		ck_assert_ptr_nonnull(t);
		r = regs_of(t->tid);
		if (i < NSPIN) {
			ck_assert_msg(in_spin(r.rip), "spinner %zu at %#llx", i, r.rip);
		} else {
			ck_assert_int_eq((long)r.orig_rax, i < NSPIN + 2 ? SYS_futex : SYS_read);
			ck_assert_int_eq((long)r.rax, -ERESTARTSYS);
		}
	}
	/* Every thread runs a syscall for us, and knows who it is. */
	for (size_t i = 0; i < d.p->nthreads; i++) {
		struct inj_thread *t = d.p->threads[i];
		ck_assert_int_eq(inj_syscall(t, SYS_gettid, &res, 0), 0);
		ck_assert_int_eq(res, t->tid);
	}
	pick = inj_process_pick_thread(d.p);
	ck_assert_ptr_nonnull(pick);
	remote_smoke(pick, true);
	for (size_t i = 0; i < d.p->nthreads; i++) {
		struct user_regs_struct r = regs_of(d.p->threads[i]->tid);
		struct sigstate sig = sigstate_of(c->pid, d.p->threads[i]->tid);
		assert_regs_eq(&before[i], &r);
		assert_sigstate_eq_but_trap(&sig_before[i], &sig);
	}
	ck_assert_int_eq(inj_process_resume(d.p), 0);
	sh->stop = 1;
	__atomic_store_n(&sh->futex_word, 1, __ATOMIC_SEQ_CST);
	ck_assert_int_ge(syscall(SYS_futex, &sh->futex_word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0),
			 0);
	send(c, "ab");
	assert_exit0(finish(&d));
	for (size_t i = 0; i < NSPIN; i++) {
		uint64_t want[SPIN_OUT];
		ck_assert_uint_gt(sh->spin_out[i][0], 0);
		spin_reference(sh->spin_out[i][0], want);
		ck_assert_msg(!memcmp(sh->spin_out[i], want, sizeof(want)), "spinner %zu", i);
	}
	for (size_t i = 0; i < NBLOCKED; i++) {
		ck_assert_msg(sh->blocked_ret[i] == (i < 2 ? 0 : 1),
			      "blocked %zu returned %ld (%d)", i, sh->blocked_ret[i],
			      sh->blocked_err[i]);
		ck_assert_int_eq(sh->blocked_err[i], 0);
	}
}
END_TEST

static Suite *remote_suite(void)
{
	Suite *s = suite_create("remote");
	TCase *stops = tcase_create("stops");
	TCase *mem = tcase_create("mem");
	TCase *region = tcase_create("region");
	TCase *death = tcase_create("death");
	TCase *threads = tcase_create("threads");
	TCase *all[] = {stops, mem, region, death, threads};

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		tcase_add_checked_fixture(all[i], setup, teardown);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_loop_test(stops, test_interrupt_user_code, 0, 2);
	tcase_add_loop_test(stops, test_interrupt_blocked_read, 0, 2);
	tcase_add_loop_test(stops, test_interrupt_sleep, 0, SLEEP_KINDS);
	tcase_add_loop_test(stops, test_signal_stop, 0, 2);
	tcase_add_loop_test(stops, test_group_stop, 0, 2);
	tcase_add_loop_test(stops, test_syscall_stop, 0, ARRAY_SIZE(syscall_cases));
	tcase_add_loop_test(stops, test_seccomp_stop, 0, 4);
	tcase_add_loop_test(stops, test_seccomp_foreign, 0, 2);
	tcase_add_loop_test(stops, test_event_stop, 0, ARRAY_SIZE(event_cases));
	tcase_add_loop_test(stops, test_swap_site, 0, 2);
	tcase_add_loop_test(stops, test_sigtrap_kept, 0, 2);

	tcase_add_loop_test(mem, test_mem_write_paths, 0, NPATHS * ARRAY_SIZE(mem_cases));
	tcase_add_test(mem, test_mem_read);
	tcase_add_test(mem, test_mem_write_protected);
	tcase_add_test(mem, test_mem_unmapped);

	tcase_add_loop_test(region, test_region, 0, 2);
	tcase_add_test(region, test_region_pieces);
	tcase_add_test(region, test_region_pieces_full);
	tcase_add_test(region, test_break);
	tcase_add_test(region, test_regs_cache);

	tcase_add_loop_test(death, test_killed, 0, 2 * KILL_CASES);

	tcase_add_test(threads, test_threads);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(remote_suite());
	int failed;

	/* OPTD_TEST_TRACE=1 logs every ptrace request the injector makes (to stderr). */
	if (getenv("OPTD_TEST_TRACE"))
		log_set_level(LOG_LVL_TRACE);
	nofork = srunner_fork_status(sr) == CK_NOFORK;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
