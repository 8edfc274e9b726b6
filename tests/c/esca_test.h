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
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <time.h>
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

/* A child that copies everything from fd in to fd out until EOF, then
 * exits; the caller keeps neither open in it.  Returns its pid. */
static inline pid_t t_copier(int in, int out, int close_in_child)
{
	static char buf[65536];
	pid_t pid = fork();
	ssize_t r;

	CHECK(pid >= 0);
	if (pid)
		return pid;
	if (close_in_child >= 0)
		close(close_in_child);
	while ((r = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, (size_t)r) == r);
	_exit(r < 0);
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

/* An entry the module refused for `reason` (ESCA_REFUSED_*), or a failure
 * naming what refused it. */
static inline void expect_refused(const struct esca_entry *e, long reason, const char *what)
{
	if (e->status != ESCA_ST_REFUSED || e->result != reason)
		FAIL("%s: status %u result %lld, expected REFUSED %ld", what, e->status,
		     (long long)e->result, reason);
}

/*
 * Reads fd until at least n bytes came (a pipe or socket that an entry's
 * blocking write fills), failing at EOF or an error.  Returns the bytes
 * read: more than n means more was written than expected.
 */
static inline size_t t_drain(int fd, size_t n)
{
	static char sink[1 << 17];
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = read(fd, sink, sizeof(sink));
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r > 0, "read %zu more bytes from fd %d: %zd", n - got, fd, r);
		got += (size_t)r;
	}
	return got;
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

/* --- the hostile suite (tests/test_libesca_hostile.py) ------------------- */

/*
 * Helpers of the hostile suite (tests/test_libesca_hostile.py, issue 19,
 * rule 8): programs that do what real programs do around libesca's hooks,
 * each printing only what it can observe deterministically, so that a run
 * without libesca (the truth) and runs with it on every backend must print
 * the same.
 *
 * - t_scale(): smaller loops in a QEMU guest (TCG is some 50 times slower);
 * - t_watchdog(): a hang becomes a failure (the notes so far and what the
 *   program was doing on stderr, then SIGKILL to its process group: the
 *   program, its peers and whatever they started) instead of a test
 *   timeout, and no process is left holding the test's stdout;
 * - t_note() / t_notes_print(): observations collected while segments are
 *   open, printed at the end with plain write(2) calls outside any segment;
 * - t_tcp_pair() / t_unix_pair(): a connected TCP (127.0.0.1, port 0) or
 *   AF_UNIX stream pair; t_spawn(): a forked peer that keeps only the fds
 *   it is given and dies with the program (PR_SET_PDEATHSIG), so that a
 *   hung program never leaves a process holding the test's stdout;
 * - t_sink_*: a peer that reads a connection to EOF into shared memory;
 * - records: "<tag><8 digits>\n", 10 bytes, checked whole and in order.
 */
/* --- scale -------------------------------------------------------------- */

/* Whether this runs in a QEMU guest (/sys/class/dmi/id/sys_vendor). */
static inline int t_qemu(void)
{
	static int known = -1;
	char buf[16] = "";
	int fd;

	if (known >= 0)
		return known;
	fd = open("/sys/class/dmi/id/sys_vendor", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = 0;
		close(fd);
	}
	known = !strncmp(buf, "QEMU\n", 5);
	return known;
}

/* argv[i] when given, else host (or qemu in a QEMU guest). */
static inline long t_scale(int argc, char **argv, int i, long host, long qemu)
{
	if (argc > i && argv[i][0] >= '0' && argv[i][0] <= '9')
		return atol(argv[i]);
	return t_qemu() ? qemu : host;
}

static inline double t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);	/* vDSO: no kernel entry */
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- notes -------------------------------------------------------------- */

static char t_notes[32768];
static size_t t_notes_len;
static const char *volatile t_doing = "starting";

static inline __attribute__((format(printf, 1, 2))) void t_note(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t_notes + t_notes_len, sizeof(t_notes) - t_notes_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t_notes_len += (size_t)n;
	if (t_notes_len > sizeof(t_notes) - 1)
		t_notes_len = sizeof(t_notes) - 1;
}

static inline void t_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		CHECK(w > 0, "write to fd %d", fd);
		p += w;
		len -= (size_t)w;
	}
}

/* Prints the notes on stdout (outside any segment) and forgets them. */
static inline void t_notes_print(void)
{
	t_write_all(1, t_notes, t_notes_len);
	t_notes_len = 0;
}

/* A string as C would write it, for printing bytes that may not be text. */
static inline const char *t_escape(const void *data, size_t len)
{
	static char out[4][1024];
	static int which;
	const unsigned char *p = data;
	char *o = out[which++ % 4];
	size_t n = 0;

	for (size_t i = 0; i < len && n < sizeof(out[0]) - 8; i++) {
		if (p[i] == '\n')
			n += (size_t)sprintf(o + n, "\\n");
		else if (p[i] < 32 || p[i] > 126 || p[i] == '\\' || p[i] == '"')
			n += (size_t)sprintf(o + n, "\\x%02x", p[i]);
		else
			o[n++] = (char)p[i];
	}
	o[n] = 0;
	return o;
}

static inline const char *t_errname(int err)
{
	switch (err) {
	case 0: return "0";
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	case EPIPE: return "EPIPE";
	case ECONNRESET: return "ECONNRESET";
	case EDESTADDRREQ: return "EDESTADDRREQ";
	case ENOTCONN: return "ENOTCONN";
	case EISCONN: return "EISCONN";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	case EAGAIN: return "EAGAIN";
	case EINTR: return "EINTR";
	case EISDIR: return "EISDIR";
	case ENOTSOCK: return "ENOTSOCK";
	case EFAULT: return "EFAULT";
	default: return strerror(err);
	}
}

/* --- watchdog ----------------------------------------------------------- */

static inline void *t_watchdog_run(void *arg)
{
	struct timespec ts = { (time_t)(intptr_t)arg, 0 };
	char msg[256];
	int n;

	/* raw system calls only: nothing libesca could hold back */
	while (syscall(SYS_nanosleep, &ts, &ts) < 0)
		;
	n = snprintf(msg, sizeof(msg), "HANG: still %s after %d s\n", t_doing,
		     (int)(intptr_t)arg);
	syscall(SYS_write, 2, "notes so far:\n", 14);
	syscall(SYS_write, 2, t_notes, t_notes_len);
	syscall(SYS_write, 2, msg, n);
	syscall(SYS_kill, 0, SIGKILL);
	return NULL;
}

/* After `seconds` (in a QEMU guest 6 times that, at most 50: the test's
 * timeout is 60 s) the program and everything it started die (SIGKILL to
 * the process group it makes here), whatever they are blocked in.  The
 * thread takes no signal. */
static inline void t_watchdog(int seconds)
{
	sigset_t all, old;
	pthread_attr_t a;
	pthread_t th;

	CHECK(setpgid(0, 0) == 0);
	if (t_qemu())
		seconds = seconds * 6 < 50 ? seconds * 6 : 50;
	sigfillset(&all);
	CHECK(pthread_sigmask(SIG_SETMASK, &all, &old) == 0);
	CHECK(pthread_attr_init(&a) == 0);
	CHECK(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) == 0);
	CHECK(pthread_create(&th, &a, t_watchdog_run, (void *)(intptr_t)seconds) == 0);
	CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
	pthread_attr_destroy(&a);
}

/* --- connections -------------------------------------------------------- */

static inline void t_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

static inline void t_nodelay(int fd)
{
	int one = 1;

	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
}

/*
 * A connected TCP pair over 127.0.0.1: *mine is the connecting end (with
 * SO_SNDBUF sndbuf when not 0), *theirs the accepted one (SO_RCVBUF rcvbuf
 * when not 0, set on the listener before listen()).  Both TCP_NODELAY,
 * close-on-exec, blocking.
 */
static inline void t_tcp_pair_buf(int *mine, int *theirs, int sndbuf, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(l >= 0 && c >= 0);
	if (rcvbuf)
		CHECK(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
	if (sndbuf)
		CHECK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(l, 1) == 0);
	CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
	CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0);
	*theirs = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(*theirs >= 0);
	close(l);
	t_nodelay(c);
	t_nodelay(*theirs);
	*mine = c;
}

static inline void t_tcp_pair(int *mine, int *theirs)
{
	t_tcp_pair_buf(mine, theirs, 0, 0);
}

static inline void t_unix_pair(int *mine, int *theirs)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	*mine = sv[0];
	*theirs = sv[1];
}

/* --- peers -------------------------------------------------------------- */

static inline void *t_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED);
	return p;
}

static inline int t_cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* In a child: closes every fd but 0, 1, 2 and keep[0..n). */
static inline void t_keep_only(int *keep, int n)
{
	unsigned int from = 3;

	qsort(keep, (size_t)n, sizeof(int), t_cmp_int);
	for (int i = 0; i < n; i++) {
		if (keep[i] < (int)from)
			continue;
		if (keep[i] > (int)from)
			CHECK(close_range(from, (unsigned int)keep[i] - 1, 0) == 0);
		from = (unsigned int)keep[i] + 1;
	}
	CHECK(close_range(from, ~0U, 0) == 0);
}

/*
 * Forks a peer that keeps only the fds given (then n of them), dies with
 * the program, runs fn(arg) and exits 0 (fn fails with CHECK/FAIL: 1).
 * Returns its pid.
 */
static inline pid_t t_spawn(void (*fn)(void *), void *arg, int n, ...)
{
	pid_t parent = getpid(), pid;
	int keep[16];
	va_list ap;

	CHECK(n <= 16);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		keep[i] = va_arg(ap, int);
	va_end(ap);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(T_FAIL);
		t_keep_only(keep, n);
		fn(arg);
		_exit(T_PASS);
	}
	return pid;
}

/* Waits for a peer, which must have exited 0. */
static inline void t_reap(pid_t pid, const char *who)
{
	int code = wait_child(pid);

	CHECK(code == 0, "%s exited %d", who, code);
}

static inline void t_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t r = read(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r > 0, "read %zu more bytes from fd %d: %zd", len, fd, r);
		p += r;
		len -= (size_t)r;
	}
}

/* A peer that reads its connection to EOF (or an error) into shared memory. */
struct t_sink {
	int fd;
	int err;		/* errno of the read that ended it, 0 at EOF */
	size_t len, cap;
	unsigned char data[];
};

static inline struct t_sink *t_sink_new(size_t cap)
{
	struct t_sink *s = t_shared(sizeof(*s) + cap);

	s->cap = cap;
	return s;
}

static inline void t_sink_run(void *arg)
{
	struct t_sink *s = arg;

	for (;;) {
		ssize_t r = read(s->fd, s->data + s->len, s->cap - s->len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			s->err = r < 0 ? errno : 0;
			return;
		}
		s->len += (size_t)r;
		CHECK(s->len < s->cap, "sink full");
	}
}

/* Starts a sink on fd (closed here: the peer has it). */
static inline pid_t t_sink_start(struct t_sink *s, int fd)
{
	pid_t pid;

	s->fd = fd;
	s->len = 0;
	s->err = 0;
	pid = t_spawn(t_sink_run, s, 1, fd);
	close(fd);
	return pid;
}

/* --- records ------------------------------------------------------------ */

#define H_REC 10

/* async-signal-safe: signal handlers write records too */
static inline void t_record(char *buf, char tag, unsigned seq)
{
	buf[0] = tag;
	for (int i = 8; i >= 1; i--) {
		buf[i] = (char)('0' + seq % 10);
		seq /= 10;
	}
	buf[9] = '\n';
}

/*
 * `segments` segments, each of two records written to fd under mu and
 * numbered from *seq (the mutex orders them across threads): the threads
 * of the hostile programs mutex_order and thread_churn.
 */
static inline void t_mutex_segments(int fd, pthread_mutex_t *mu, unsigned *seq, long segments)
{
	for (long i = 0; i < segments; i++) {
		ESCA_BATCH_START();
		for (int k = 0; k < 2; k++) {
			char r[H_REC];

			pthread_mutex_lock(mu);
			t_record(r, 'T', (*seq)++);
			CHECK(write(fd, r, H_REC) == H_REC);
			pthread_mutex_unlock(mu);
		}
		ESCA_BATCH_FLUSH();
	}
}

/*
 * Checks a stream of records: every one whole (tag, 8 digits, newline)
 * and its number greater than the one before (consecutive: exactly one
 * more, from 0).  Returns NULL, or what is wrong (static buffer); *count
 * gets the number of records, *last the last number (-1: none).
 */
static inline const char *t_check_records(const unsigned char *d, size_t len, int consecutive,
					  long *count, long *last)
{
	static char why[256];
	long prev = -1;

	*count = 0;
	*last = -1;
	for (size_t off = 0; off < len; off += H_REC) {
		long v = 0;

		if (len - off < H_REC) {
			snprintf(why, sizeof(why), "a cut record at byte %zu: \"%s\"", off,
				 t_escape(d + off, len - off));
			return why;
		}
		for (int i = 1; i < 9; i++) {
			if (d[off + i] < '0' || d[off + i] > '9')
				goto bad;
			v = v * 10 + (d[off + i] - '0');
		}
		if (d[off + 9] != '\n' || d[off] < 'A' || d[off] > 'Z')
			goto bad;
		if (consecutive ? v != prev + 1 : v <= prev) {
			snprintf(why, sizeof(why), "record %ld (%c) after %ld, at byte %zu", v,
				 d[off], prev, off);
			return why;
		}
		prev = v;
		++*count;
		*last = v;
		continue;
bad:
		snprintf(why, sizeof(why), "a broken record at byte %zu: \"%s\"", off,
			 t_escape(d + off, len - off < 20 ? len - off : 20));
		return why;
	}
	return NULL;
}

/* Takes every free number below fd (with copies of fd 0), so that fd is the
 * lowest free number once it is closed; t_unfill() gives them back. */
static int t_fillers[128], t_nfillers;

static inline void t_fill_below(int fd)
{
	for (;;) {
		int x = dup(0);

		CHECK(x >= 0);
		if (x > fd) {
			close(x);
			return;
		}
		CHECK(t_nfillers < 128);
		t_fillers[t_nfillers++] = x;
	}
}

static inline void t_unfill(void)
{
	while (t_nfillers)
		CHECK(close(t_fillers[--t_nfillers]) == 0);
}

/* --- files -------------------------------------------------------------- */

/* A fresh directory for the program's files: under $T_TMPDIR (the test's
 * tmp_path) or /tmp. */
static inline const char *t_tmpdir(void)
{
	static char dir[512];
	const char *base = getenv("T_TMPDIR");

	snprintf(dir, sizeof(dir), "%s/hostile.XXXXXX", base && *base ? base : "/tmp");
	CHECK(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
	return dir;
}

static inline const char *t_path(const char *dir, const char *name)
{
	static char p[4][600];
	static int which;
	char *o = p[which++ % 4];

	snprintf(o, sizeof(p[0]), "%s/%s", dir, name);
	return o;
}

/* The whole content of a file (static buffer, NUL-terminated), *len its size. */
static inline const char *t_slurp(const char *path, size_t *len)
{
	static char buf[4][8192];
	static int which;
	char *o = buf[which++ % 4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r;

	CHECK(fd >= 0, "open %s", path);
	while ((r = read(fd, o + n, sizeof(buf[0]) - 1 - n)) > 0)
		n += (size_t)r;
	CHECK(r == 0);
	close(fd);
	o[n] = 0;
	if (len)
		*len = n;
	return o;
}

/* A note "WHAT: "<the file's content, escaped>"" (t_note). */
static inline void t_note_file(const char *what, const char *path)
{
	size_t len;
	const char *d = t_slurp(path, &len);

	t_note("%s: \"%s\"\n", what, t_escape(d, len));
}

/* Removes the directory made by t_tmpdir (and the files in it). */
static inline void t_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	CHECK(d != NULL, "opendir %s", dir);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			CHECK(unlinkat(dirfd(d), e->d_name, 0) == 0, "unlink %s", e->d_name);
	closedir(d);
	CHECK(rmdir(dir) == 0, "rmdir %s", dir);
}

/*
 * A connected AF_UNIX stream socket pair at fds `at` and `at` + 1 (numbers
 * audit rules and filters can name), made by socketpair() itself -- not
 * moved there with dup2(), which would make it an alias libesca never
 * defers on: the numbers below are taken first, then given back.
 */
static inline void t_pair_at(int at, int sv[2])
{
	t_fill_below(at - 1);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && sv[0] == at, "pair at %d", sv[0]);
	t_unfill();
}

#endif
