/*
 * Records /proc/self/maps after setting up a layout chosen by argv[1].
 * Build: gcc -O1 -o record record.c -lpthread (and -no-pie / -static variants).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static void dump(void)
{
	char buf[1 << 16];
	int fd = open("/proc/self/maps", O_RDONLY);
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, n, stdout);
	close(fd);
}

static void *map_file(const char *path, int unlink_it)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 3 * 4096) < 0) {
		perror(path);
		exit(1);
	}
	void *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	void *q = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 8192);
	(void)q;
	close(fd);
	if (unlink_it)
		unlink(path);
	return p;
}

static pthread_barrier_t bar;
static void *thr(void *a)
{
	(void)a;
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "plain";
	if (!strcmp(mode, "deleted")) {
		mkdir("/tmp/optd maps test", 0700);
		map_file("/tmp/optd maps test/with space.bin", 0);
		map_file("/tmp/optd maps test/gone.bin", 1);
		map_file("/tmp/optd maps test/new\nline.bin", 1);
		int mfd = memfd_create("optd-jit", 0);
		ftruncate(mfd, 4096);
		mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, mfd, 0);
		mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		void *named = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, named, 4 * 4096, "optd arena"))
			perror("prctl anon name");
		void *nshm =
		    mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, nshm, 2 * 4096, "optd shm"))
			perror("prctl anon name shm");
		int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
		if (id >= 0) {
			shmat(id, NULL, SHM_RDONLY);
			shmctl(id, IPC_RMID, NULL);
		}
		dump();
		unlink("/tmp/optd maps test/with space.bin");
		rmdir("/tmp/optd maps test");
		return 0;
	}
	if (!strcmp(mode, "special")) {
		/* Mappings of pseudo files: anon_inode:[perf_event] and /secretmem. */
		struct perf_event_attr a = {.type = PERF_TYPE_SOFTWARE,
					    .size = sizeof(a),
					    .config = PERF_COUNT_SW_CPU_CLOCK,
					    .sample_period = 100000,
					    .sample_type = PERF_SAMPLE_IP};
		int pfd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
		if (pfd < 0 ||
		    mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0) == MAP_FAILED)
			perror("perf_event");
		int sfd = syscall(SYS_memfd_secret, 0);
		if (sfd < 0 || ftruncate(sfd, 4096) < 0 ||
		    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0) == MAP_FAILED)
			perror("memfd_secret");
		dump();
		return 0;
	}
	if (!strcmp(mode, "gaps")) {
		static const unsigned long at[] = {0x10000, 0x100000000, 0x200000000000,
						   0x7fff00000000, 0x7ffffffe0000};
		for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++)
			if (mmap((void *)at[i], 4096, PROT_READ,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
				 0) == MAP_FAILED)
				fprintf(stderr, "mmap %#lx: %m\n", at[i]);
		mmap(NULL, 1UL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		     0);
		pthread_t t[2];
		pthread_barrier_init(&bar, NULL, 3);
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, thr, NULL);
		pthread_barrier_wait(&bar);
		dump();
		pthread_barrier_wait(&bar);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		return 0;
	}
	void *volatile keep = malloc(100000); /* make sure [heap] exists */
	(void)keep;
	dump();
	return 0;
}
