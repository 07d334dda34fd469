/* The shared part of the target programs; see tgt.h. */
#include "tgt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int tgt_event_fd = -1;

unsigned long tgt_parse_ulong(const char *what, const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || *s == '-') {
		fprintf(stderr, "bad %s: '%s'\n", what, s);
		exit(2);
	}
	return v;
}

bool tgt_parse_checkpoint(const char *arg)
{
	if (strcmp(arg, "--checkpoint") == 0) {
		tgt_event_fd = 2;
		return true;
	}
	if (strncmp(arg, "--checkpoint=", 13) == 0) {
		tgt_event_fd = (int)tgt_parse_ulong("checkpoint fd", arg + 13);
		return true;
	}
	return false;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the harness went away: nothing to tell it */
		buf += n;
		len -= (size_t)n;
	}
}

void tgt_event(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	if (tgt_event_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	write_all(tgt_event_fd, line, (size_t)n);
}

void tgt_checkpoint(const char *name)
{
	char c;

	if (tgt_event_fd < 0)
		return;
	tgt_event("checkpoint %s %d", name, (int)getpid());
	while (read(STDIN_FILENO, &c, 1) < 0 && errno == EINTR)
		;
}

int tgt_flush_status(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "cannot write stdout: %s\n", strerror(errno));
		return 3;
	}
	return status;
}

void tgt_no_core(void)
{
	struct rlimit rl = {0, 0};

	setrlimit(RLIMIT_CORE, &rl);
}

static uint32_t crc_table[256];

/* Filled before main(), so threads and forked children only read it. */
static __attribute__((constructor)) void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t tgt_crc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* Calls through this table are indirect: nothing can inline them. */
static uint64_t op_rotl(uint64_t a, uint64_t b)
{
	return (a << (b & 63)) | (a >> ((64 - (b & 63)) & 63));
}

static uint64_t op_mulx(uint64_t a, uint64_t b)
{
	return a * (b | 1);
}

static uint64_t op_xsh(uint64_t a, uint64_t b)
{
	return a ^ (b >> 17) ^ (a << 5);
}

static uint64_t op_add(uint64_t a, uint64_t b)
{
	return a + b + 0x632be59bd9b4e019ull;
}

static uint64_t (*const ops[4])(uint64_t, uint64_t) = {op_rotl, op_mulx, op_xsh, op_add};

/* A tiny register machine; the switch is dense enough for a jump table. */
static __attribute__((noinline)) uint64_t interp(uint64_t acc, uint64_t x)
{
	for (int pc = 0; pc < 8; pc++) {
		switch ((x >> (pc * 4)) & 0xf) {
		case 0:
			acc += x;
			break;
		case 1:
			acc ^= x >> 3;
			break;
		case 2:
			acc *= 0x2545f4914f6cdd1dull;
			break;
		case 3:
			acc = ~acc;
			break;
		case 4:
			acc -= x << 2;
			break;
		case 5:
			acc = (acc >> 13) | (acc << 51);
			break;
		case 6:
			acc += acc >> 7;
			break;
		case 7:
			acc ^= 0xa5a5a5a5a5a5a5a5ull;
			break;
		case 8:
			acc = acc * 3 + 1;
			break;
		case 9:
			acc ^= acc << 11;
			break;
		case 10:
			acc += 0x1234567;
			break;
		default:
			acc ^= (uint64_t)pc << 40;
			break;
		}
	}
	return acc;
}

uint64_t tgt_work(uint64_t seed, unsigned iters)
{
	uint64_t state = seed, acc = seed ^ 0x5851f42d4c957f2dull;
	uint32_t crc = 0;

	for (unsigned i = 0; i < iters; i++) {
		uint64_t x = tgt_next(&state);

		crc = tgt_crc32(crc, &x, sizeof(x));
		acc = ops[x & 3](acc, x);
		if ((i & 7) == 0)
			acc = interp(acc, x);
	}
	return acc ^ ((uint64_t)crc << 32);
}
