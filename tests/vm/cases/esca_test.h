/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the /dev/esca case programs (tests/vm/cases/).  Each case
 * is one program: exit 0 pass, 1 fail (with a line saying what), 77 skip.
 */
#ifndef ESCA_TEST_H
#define ESCA_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esca_abi.h"

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

#define FAIL(...) do {							\
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);		\
	fprintf(stderr, __VA_ARGS__);					\
	fputc('\n', stderr);						\
	exit(T_FAIL);							\
} while (0)

#define CHECK(cond) do {						\
	if (!(cond))							\
		FAIL("check failed: %s (errno %d: %s)", #cond,		\
		     errno, strerror(errno));				\
} while (0)

/* The call must fail with exactly this errno. */
#define CHECK_ERR(call, err) do {					\
	long _r;							\
	errno = 0;							\
	_r = (long)(call);						\
	if (_r != -1 || errno != (err))					\
		FAIL("%s returned %ld errno %d (%s), expected errno %d (%s)", \
		     #call, _r, errno, strerror(errno), (err), strerror(err)); \
} while (0)

static inline int esca_open(void)
{
	int fd = open(ESCA_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		fprintf(stderr, "%s missing: module not loaded\n", ESCA_DEVICE_PATH);
		exit(T_SKIP);
	}
	CHECK(fd >= 0);
	return fd;
}

/* A page-aligned, zeroed table of n entries. */
static inline struct esca_entry *table_alloc(unsigned int n)
{
	size_t len = (size_t)n * sizeof(struct esca_entry);
	void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED);
	return p;
}

static inline int esca_register(int fd, const void *table, unsigned int n)
{
	struct esca_register r = {
		.table = (uintptr_t)table,
		.nentries = n,
		.abi_version = ESCA_ABI_VERSION,
	};

	return ioctl(fd, ESCA_IOC_REGISTER, &r);
}

static inline long esca_flush(int fd, unsigned int first, unsigned int count)
{
	struct esca_flush f = { .first = first, .count = count };

	return ioctl(fd, ESCA_IOC_FLUSH, &f);
}

static inline void entry_set(struct esca_entry *e, unsigned int nr, uint64_t a0,
			     uint64_t a1, uint64_t a2, uint64_t a3)
{
	memset(e, 0, sizeof(*e));
	e->nr = nr;
	e->args[0] = a0;
	e->args[1] = a1;
	e->args[2] = a2;
	e->args[3] = a3;
	e->status = 0xffff;		/* the kernel must overwrite it */
	e->result = 0x5a5a5a5a;
}

/* A counter of /sys/kernel/debug/esca, or -1 when it cannot be read. */
static inline long esca_debugfs(const char *name)
{
	char path[128], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/kernel/debug/esca/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/* Wait (up to 5 s) for the count of registered tables to reach a value. */
static inline void expect_tables(long want)
{
	long v = -1;

	for (int i = 0; i < 500; i++) {
		v = esca_debugfs("tables");
		if (v == want)
			return;
		usleep(10000);
	}
	FAIL("tables is %ld, expected %ld", v, want);
}

static inline int wait_child(pid_t pid)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

#endif
