// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 13: writes to a connection the peer reset, inside
 * a segment.  Each TCP connection's peer (a forked process) sets SO_LINGER
 * {1, 0} and closes: a reset, which the program observes first through
 * recv() == -1 ECONNRESET.  Then, in a segment:
 *
 *   - SIGPIPE caught by a counting handler: write, writev, send, sendmsg,
 *     sendfile each return -1 EPIPE and the handler has run once more when
 *     the call returns;
 *   - send(MSG_NOSIGNAL): -1 EPIPE, no signal;
 *   - SIGPIPE ignored: write returns -1 EPIPE;
 *   - default disposition (in a forked child): the child dies of SIGPIPE at
 *     its write (what it would write to a pipe after it never comes);
 *   - a pipe whose read end is closed: write returns -1 EPIPE, SIGPIPE
 *     caught (pipes are never deferred).
 *
 * Without libesca it prints:
 *
 *   recv after the reset: -1 ECONNRESET
 *   write: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 *   writev: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 *   send: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 *   sendmsg: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 *   sendfile: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 *   send MSG_NOSIGNAL: -1 EPIPE, SIGPIPE caught 0 (0 after the flush)
 *   write, SIGPIPE ignored: -1 EPIPE
 *   write, SIGPIPE default: the child was killed by signal 13
 *   write to a pipe without reader: -1 EPIPE, SIGPIPE caught 1 (1 after the flush)
 */
#include <sys/sendfile.h>
#include <sys/uio.h>

#include "esca_test.h"

static volatile sig_atomic_t caught;
static int peer_fd, file;

static void on_pipe(int sig)
{
	(void)sig;
	caught++;
}

static void resetter(void *arg)
{
	struct linger l = { 1, 0 };

	(void)arg;
	CHECK(setsockopt(peer_fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0);
	CHECK(close(peer_fd) == 0);
}

/* A TCP connection whose peer reset it; the program has seen ECONNRESET. */
static int reset_conn(int say)
{
	char c;
	ssize_t r;
	int s;

	t_tcp_pair(&s, &peer_fd);
	t_reap(t_spawn(resetter, NULL, 1, peer_fd), "resetter");
	CHECK(close(peer_fd) == 0);
	r = recv(s, &c, 1, 0);
	if (say)
		t_note("recv after the reset: %zd %s\n", r, t_errname(r < 0 ? errno : 0));
	CHECK(r == -1 && errno == ECONNRESET, "recv after the reset: %zd", r);
	return s;
}

static void handler(void (*h)(int))
{
	struct sigaction sa = { .sa_handler = h };

	CHECK(sigaction(SIGPIPE, &sa, NULL) == 0);
}

/* One call in a segment: its result, the handler's count when it returned
 * and after the flush. */
static void one(const char *what, int fd, int how)
{
	struct iovec iov[2] = { { "ab", 2 }, { "cd", 2 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	int now, err;
	off_t off = 0;
	ssize_t r;

	caught = 0;
	ESCA_BATCH_START();
	switch (how) {
	case 0: r = write(fd, "abcd", 4); break;
	case 1: r = writev(fd, iov, 2); break;
	case 2: r = send(fd, "abcd", 4, 0); break;
	case 3: r = sendmsg(fd, &m, 0); break;
	case 4: r = sendfile(fd, file, &off, 4); break;
	default: r = send(fd, "abcd", 4, MSG_NOSIGNAL); break;
	}
	err = errno;
	now = caught;
	ESCA_BATCH_FLUSH();
	t_note("%s: %zd %s, SIGPIPE caught %d (%d after the flush)\n", what, r,
	       t_errname(r < 0 ? err : 0), now, (int)caught);
}

static int report[2];

static void default_child(void *arg)
{
	int s = *(int *)arg;

	signal(SIGPIPE, SIG_DFL);
	ESCA_BATCH_START();
	if (write(s, "abcd", 4) < 0)
		_exit(2);
	/* not reached without libesca */
	if (write(report[1], "alive after the write", 21) != 21)
		_exit(3);
	ESCA_BATCH_FLUSH();
	_exit(0);
}

int main(void)
{
	static const char *const calls[] = { "write", "writev", "send", "sendmsg", "sendfile",
					     "send MSG_NOSIGNAL" };
	const char *dir;
	int s, pp[2], code;
	ssize_t r;

	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();
	file = open(t_path(dir, "data"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(file >= 0 && write(file, "abcd", 4) == 4);
	handler(on_pipe);
	for (int i = 0; i < 6; i++) {
		t_doing = calls[i];
		s = reset_conn(i == 0);
		one(calls[i], s, i);
		CHECK(close(s) == 0);
	}
	t_notes_print();

	t_doing = "write, SIGPIPE ignored";
	handler(SIG_IGN);
	s = reset_conn(0);
	ESCA_BATCH_START();
	r = write(s, "abcd", 4);
	t_note("write, SIGPIPE ignored: %zd %s\n", r, t_errname(r < 0 ? errno : 0));
	ESCA_BATCH_FLUSH();
	CHECK(close(s) == 0);

	t_doing = "write, SIGPIPE default";
	s = reset_conn(0);
	CHECK(pipe2(report, O_CLOEXEC) == 0);
	{
		pid_t pid = t_spawn(default_child, &s, 2, s, report[1]);
		char got[64];

		CHECK(close(report[1]) == 0);
		r = read(report[0], got, sizeof(got));
		code = wait_child(pid);
		CHECK(close(report[0]) == 0);
		if (r > 0)
			t_note("write, SIGPIPE default: the child said \"%s\"\n", t_escape(got, (size_t)r));
	}
	if (code > 128)
		t_note("write, SIGPIPE default: the child was killed by signal %d\n", code - 128);
	else
		t_note("write, SIGPIPE default: the child exited %d\n", code);
	CHECK(close(s) == 0);

	t_doing = "a pipe without reader";
	handler(on_pipe);
	CHECK(pipe2(pp, O_CLOEXEC) == 0 && close(pp[0]) == 0);
	one("write to a pipe without reader", pp[1], 0);
	CHECK(close(pp[1]) == 0);
	t_notes_print();
	CHECK(close(file) == 0);
	t_rmdir(dir);
	return T_PASS;
}
