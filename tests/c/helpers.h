/* SPDX-License-Identifier: MIT */
/* Shared by the libesca test programs: exit 0 pass, 1 fail, 77 skip. */
#ifndef ESCA_TEST_HELPERS_H
#define ESCA_TEST_HELPERS_H

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "esca.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

static int t_failures __attribute__((unused));

#define CHECK(cond, ...)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);			\
			fputc('\n', stderr);				\
			t_failures++;					\
		}							\
	} while (0)

#define DIE(...)							\
	do {								\
		fprintf(stderr, "FAIL: " __VA_ARGS__);			\
		fprintf(stderr, ": %s\n", strerror(errno));		\
		exit(T_EXIT_FAIL);					\
	} while (0)

/* A line on stdout through write(2) -- the interposed one, so that inside a
 * segment it is deferred like any other write (stdio's writes are not
 * interposed: they would overtake the deferred ones). */
static inline __attribute__((format(printf, 1, 2), unused)) void t_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	if (n > 0 && write(1, buf, (size_t)n) != n)
		exit(T_EXIT_FAIL);
}

/* A segment of three 1-byte writes to fd: sets the thread's backend up and
 * flushes through it. */
static inline __attribute__((unused)) void t_segment(int fd)
{
	ESCA_BATCH_START();
	for (int i = 0; i < 3; i++)
		if (write(fd, "s", 1) != 1)
			exit(T_EXIT_FAIL);
	ESCA_BATCH_FLUSH();
}

/* The stream content of connection c at byte p: deterministic. */
static inline unsigned char t_pattern(unsigned c, unsigned long long p)
{
	unsigned long long x = (p / 8) * 0x9E3779B97F4A7C15ULL + c * 0xBF58476D1CE4E5B9ULL;

	x ^= x >> 31;
	x *= 0x94D049BB133111EBULL;
	x ^= x >> 29;
	return (unsigned char)(x >> ((p % 8) * 8));
}

static inline unsigned long long t_rand(unsigned long long *s)
{
	unsigned long long z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/*
 * T_REFUSE_RING_REGISTER=1 in the environment: io_uring_register(...,
 * IORING_REGISTER_RING_FDS, ...) fails with EINVAL, as before Linux 5.18,
 * so that libesca keeps its ring's fd among its own fds (the path the
 * module's device fd always takes) and the tests see that path on a host
 * without the module.  Installed before main(), before libesca's set-up.
 */
__attribute__((constructor, unused)) static void t_refuse_ring_register(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IORING_REGISTER_RING_FDS, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	const char *on = getenv("T_REFUSE_RING_REGISTER");

	if (!on || strcmp(on, "1"))
		return;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		perror("seccomp");
		exit(T_EXIT_FAIL);
	}
}

#endif
