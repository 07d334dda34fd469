// cxxthrow: everything that unwinds through a program's own frames, which
// under optd --relocate run as copies in optd's region:
//  - C++ exceptions thrown through several frames and caught, with cleanups
//    (destructors) on the way;
//  - backtrace() from deep in a recursion, which must see every frame;
//  - pthread_cancel of a thread blocked deep in a recursion, whose
//    destructors run during the forced unwind.
// Without unwind information for the copies the exceptions end in
// std::terminate, backtrace() stops at the first copy and the cancelled
// thread's cleanups do not run. The output says how many of each happened.
//
// cxxthrow --busy=N --checkpoint=FD: N threads throw and catch without end
// (so a thread is inside libgcc's unwinder most of the time) while main
// announces "ready PID" on FD and, for each line read on stdin, runs a batch
// of exceptions and backtraces, prints "tick K ..." and announces "tick K".
// At end of input it stops the threads and checks every one caught all it
// threw.
//
// cxxthrow --grow=KIB: halfway through the exceptions, grows the heap by KIB
// KiB in small blocks (the program break moves up), so that a region placed
// just above the break must move while libgcc holds its record of the
// copies' unwind information; the exceptions after it must still be caught.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <unistd.h>

static int cleanups;

struct Guard {
	~Guard()
	{
		cleanups++;
	}
};

__attribute__((noinline)) int deep(int n)
{
	Guard g;
	if (n == 0)
		throw std::runtime_error("bottom " + std::to_string(cleanups % 7));
	return deep(n - 1) + 1;
}

__attribute__((noinline)) int middle(int n)
{
	try {
		return deep(n);
	} catch (const std::logic_error &) {
		return -1;
	}
}

// The frames backtrace() sees from a recursion n deep: n + the callers.
__attribute__((noinline)) int frames_at(int n)
{
	void *buf[256];

	if (n == 0)
		return backtrace(buf, 256);
	int r = frames_at(n - 1);
	__asm__ volatile("" ::: "memory"); /* no tail call: every level keeps its frame */
	return r;
}

static int cancel_pipe[2];
static volatile int cancel_cleanups;

struct CancelGuard {
	~CancelGuard()
	{
		cancel_cleanups++;
	}
};

/* Announces itself, then waits in pause(), a cancellation point, until cancelled. */
__attribute__((noinline)) static int block(void)
{
	if (write(cancel_pipe[1], "r", 1) != 1)
		return -1;
	while (pause() < 0)
		;
	return 0;
}

__attribute__((noinline)) int wait_deep(int n)
{
	CancelGuard g;
	if (n == 0)
		return block();
	int r = wait_deep(n - 1);
	__asm__ volatile("" ::: "memory");
	return r;
}

static void *cancel_thread(void *)
{
	return wait_deep(12) ? nullptr : nullptr;
}

static std::atomic<bool> busy_stop;

struct Busy {
	pthread_t t;
	unsigned long thrown, caught;
};

static void *busy_thread(void *arg)
{
	Busy *b = static_cast<Busy *>(arg);

	while (!busy_stop.load(std::memory_order_relaxed)) {
		b->thrown++;
		try {
			middle(int(b->thrown % 25));
		} catch (const std::runtime_error &) {
			b->caught++;
		}
		/* Work outside the unwinder too, about as long as an unwind takes. */
		for (volatile int i = 0; i < 20000; i++)
			;
	}
	return nullptr;
}

static void event(int fd, const char *fmt, long v)
{
	char line[64];
	int n = std::snprintf(line, sizeof(line), fmt, v);
	if (fd >= 0 && write(fd, line, size_t(n)) != n)
		std::exit(2);
}

static int busy_main(int nthreads, int fd)
{
	Busy *b = new Busy[nthreads]();
	char line[64];
	long tick = 0;

	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&b[i].t, nullptr, busy_thread, &b[i]) != 0)
			return 2;
	event(fd, "ready %ld\n", long(getpid()));
	while (std::fgets(line, sizeof(line), stdin)) {
		int caught = 0;
		tick++;
		for (int i = 0; i < 300; i++) {
			try {
				middle(i % 25);
			} catch (const std::runtime_error &) {
				caught++;
			}
		}
		std::printf("tick %ld caught %d backtrace frames %d\n", tick, caught,
			    frames_at(20));
		std::fflush(stdout);
		event(fd, "tick %ld\n", tick);
	}
	busy_stop = true;
	int mismatches = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(b[i].t, nullptr);
		mismatches += b[i].thrown != b[i].caught;
	}
	std::printf("threads %d mismatches %d\n", nthreads, mismatches);
	delete[] b;
	return mismatches ? 1 : 0;
}

int main(int argc, char **argv)
{
	int busy = 0, fd = -1;
	long grow = 0;

	for (int i = 1; i < argc; i++) {
		if (!std::strncmp(argv[i], "--busy=", 7))
			busy = std::atoi(argv[i] + 7);
		else if (!std::strncmp(argv[i], "--checkpoint=", 13))
			fd = std::atoi(argv[i] + 13);
		else if (!std::strncmp(argv[i], "--grow=", 7))
			grow = std::atol(argv[i] + 7);
		else
			return 2;
	}
	if (busy > 0)
		return busy_main(busy, fd);

	int caught = 0;
	size_t chars = 0;

	std::string heap;
	for (int i = 0; i < 2000; i++) {
		if (i == 1000 && grow > 0) {
			/* Small blocks come from the break, not from mmap. */
			for (long k = 0; k < grow; k++)
				heap.append(1024, (char)('a' + k % 26));
			std::printf("heap grown by %ld KiB, sum %d\n", grow,
				    (int)(heap[heap.size() / 2] + heap[heap.size() - 1]));
		}
		try {
			middle(i % 25);
		} catch (const std::runtime_error &e) {
			caught++;
			chars += std::string(e.what()).size();
		}
	}
	std::printf("caught %d, cleanups %d, message chars %zu\n", caught, cleanups, chars);

	int frames = frames_at(20);
	std::printf("backtrace frames %d\n", frames);

	pthread_t t;
	char c;
	if (pipe(cancel_pipe) != 0 || pthread_create(&t, nullptr, cancel_thread, nullptr) != 0)
		return 2;
	if (read(cancel_pipe[0], &c, 1) != 1)
		return 2;
	void *res = nullptr;
	pthread_cancel(t);
	pthread_join(t, &res);
	std::printf("cancelled %s, cleanups %d\n", res == PTHREAD_CANCELED ? "yes" : "no",
		    cancel_cleanups);
	return caught == 2000 && frames >= 22 && cancel_cleanups == 13 ? 0 : 1;
}
