/* SPDX-License-Identifier: MIT */
/*
 * The one helper header of every C test program: libesca's host tests
 * (tests/c), the /dev/esca case programs (tests/vm/cases) and the hooked
 * programs the guest observes (tests/vm/cases/programs).  They are built
 * by tests/libesca_support.py:compile_c, which puts this directory,
 * libesca/include (esca.h) and dkms/include/uapi (esca_abi.h) on the
 * include path.
 *
 * A program exits T_PASS (0), T_FAIL (1) or T_SKIP (77).
 *
 * CHECK(cond) and CHECK(cond, "format", args...): when cond is false, one
 * line on stderr -- "FAIL file:line: cond: message (errno N: text)", the
 * errno being the one right after cond was evaluated -- and exit(T_FAIL)
 * at once, from whichever thread or process (a forked child too) runs it.
 * There is no counting check that lets a program go on: what follows a
 * CHECK may rely on it.  The message, when there is one, is a printf
 * format literal.
 *
 * FAIL("format", args...): the same line without a condition (%m is the
 * errno of the failing call), then exit(T_FAIL).
 *
 * CHECK_ERR(call, err): call must return -1 with errno err.
 */
#ifndef ESCA_TEST_H
#define ESCA_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esca.h"
#include "esca_abi.h"

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

/* --- failing ----------------------------------------------------------- */

static inline __attribute__((noreturn)) void t_check_failed(int err)
{
	fprintf(stderr, " (errno %d: %s)\n", err, strerror(err));
	exit(T_FAIL);
}

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		int t_err_ = errno;					\
									\
		fprintf(stderr, "FAIL %s:%d: %s", __FILE__, __LINE__, #cond); \
		__VA_OPT__(errno = t_err_;				\
			   fprintf(stderr, ": " __VA_ARGS__);)		\
		t_check_failed(t_err_);					\
	}								\
} while (0)

static inline __attribute__((noreturn, format(printf, 3, 4)))
void t_fail(const char *file, int line, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	fprintf(stderr, "FAIL %s:%d: ", file, line);
	errno = err;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(T_FAIL);
}

#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK_ERR(call, err) do {					\
	long t_r_;							\
									\
	errno = 0;							\
	t_r_ = (long)(call);						\
	if (t_r_ != -1 || errno != (err))				\
		FAIL("%s returned %ld errno %d (%s), expected errno %d (%s)", \
		     #call, t_r_, errno, strerror(errno), (err), strerror(err)); \
} while (0)

/* The exit code of a child, 128 + N when signal N killed it. */
static inline int wait_child(pid_t pid)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* --- programs under libesca (tests/c, tests/vm/cases/programs) ---------- */

/* A line on stdout through write(2) -- the interposed one, so that inside a
 * segment it is deferred like any other write (stdio's writes are not
 * interposed: they would overtake the deferred ones). */
static inline __attribute__((format(printf, 1, 2))) void t_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	CHECK(n <= 0 || write(1, buf, (size_t)n) == n);
}

/* A segment of three 1-byte writes to fd: sets the thread's backend up and
 * flushes through it. */
static inline void t_segment(int fd)
{
	ESCA_BATCH_START();
	for (int i = 0; i < 3; i++)
		CHECK(write(fd, "s", 1) == 1);
	ESCA_BATCH_FLUSH();
}

/* An event loop's connection: a socketpair whose far end is served by a
 * forked peer (peer(fd, arg) must not return), the near end in *sv, in an
 * epoll set (*ep) for input.  Returns the peer's pid. */
static inline pid_t t_peer_loop(int *sv, int *ep, void (*peer)(int, long), long arg)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int pair[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0)
		FAIL("socketpair: %m");
	pid = fork();
	if (pid < 0)
		FAIL("fork: %m");
	if (pid == 0) {
		close(pair[0]);
		peer(pair[1], arg);
		_exit(T_FAIL);
	}
	close(pair[1]);
	*sv = pair[0];
	*ep = epoll_create1(EPOLL_CLOEXEC);
	if (*ep < 0 || epoll_ctl(*ep, EPOLL_CTL_ADD, *sv, &ev) < 0)
		FAIL("epoll: %m");
	return pid;
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
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		FAIL("seccomp: %m");
}

/* A hooked program (the guest's observed programs, weak hooks as in the
 * servers) is useless without libesca preloaded. */
static inline void hooked_init(void)
{
	if (!esca_init || !batch_start || !batch_flush)
		FAIL("libesca is not preloaded");
	CHECK(esca_init() == 0);
}

/* Opens path for writing as fd `at` (a number audit rules can name). */
static inline int open_at(const char *path, int at)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0 && dup2(fd, at) == at);
	close(fd);
	return at;
}

/* --- /dev/esca itself (tests/vm/cases) ---------------------------------- */

/* The device, or exit(T_SKIP) when the module is not loaded. */
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

/* --- a signal in the middle of a flush ---------------------------------- */

/*
 * A signal that arrives in the middle of a flush of writes to one file:
 * sigwatch_start() installs a SIGUSR1 handler that records how much of the
 * file was written when it ran, and starts a thread that sends SIGUSR1 to
 * the calling thread as soon as the file is no longer empty.  Used by
 * tests/vm/cases/signal_flush.c (the ioctl) and programs/h_signal.c
 * (through libesca).
 */
static int sigwatch_file __attribute__((unused));
static pthread_t sigwatch_target __attribute__((unused));
static pthread_t sigwatch_thread __attribute__((unused));
static volatile sig_atomic_t sigwatch_handled __attribute__((unused));
static volatile off_t sigwatch_size __attribute__((unused)) = -1;	/* seen by the handler */

static inline void sigwatch_on_usr1(int sig)
{
	struct stat st;

	(void)sig;
	if (!fstat(sigwatch_file, &st))
		sigwatch_size = st.st_size;
	sigwatch_handled = 1;
}

static inline void *sigwatch_run(void *arg)
{
	struct stat st;

	do
		CHECK(fstat(sigwatch_file, &st) == 0);
	while (st.st_size == 0);
	CHECK(pthread_kill(sigwatch_target, SIGUSR1) == 0);
	return arg;
}

static inline void sigwatch_start(int file, int sa_flags)
{
	struct sigaction sa = { .sa_handler = sigwatch_on_usr1, .sa_flags = sa_flags };

	sigwatch_file = file;
	sigwatch_target = pthread_self();
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	CHECK(pthread_create(&sigwatch_thread, NULL, sigwatch_run, NULL) == 0);
}

static inline void sigwatch_join(void)
{
	CHECK(pthread_join(sigwatch_thread, NULL) == 0);
	if (!sigwatch_handled)
		FAIL("the handler has not run");
}

#endif
