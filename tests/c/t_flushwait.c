// SPDX-License-Identifier: MIT
/*
 * Flush with the wait (docs/libesca.md): an event loop whose wait is
 * batch_flush_wait() sends each iteration's batch with the next wait, in
 * one kernel entry; its segment stays open until that wait, and any other
 * call that waits must find the batch sent.
 *
 *   t_flushwait loop N     N iterations of batch_flush_wait -> batch_start
 *                          -> read -> 3 writes (and a 3 x 15000-byte reply
 *                          every 7th: short writes on a small socket buffer)
 *   t_flushwait break KIND 20 loop iterations, the last batch with a write
 *                          the peer echoes, its segment still open; then
 *                          KIND waits for the echo: poll, ppoll, select,
 *                          pselect, read, recv, recvfrom, recvmsg, readv,
 *                          nanosleep, usleep, waitpid, join (a thread waits
 *                          for the echo), exit (_exit: the peer must still
 *                          get the bytes)
 *   t_flushwait signal     20 loop iterations (the same marker), then
 *                          batch_flush_wait on a set with nothing to read,
 *                          ended by SIGALRM: -1 EINTR, the handler ran, the
 *                          batch was sent
 *   t_flushwait timeout    the same ended by its 100 ms timeout: 0
 *   t_flushwait pwait      a plain epoll_pwait inside the open segment, with
 *                          a mask that lets a pending SIGUSR1 in: EINTR, the
 *                          mask is back, the batch was sent first
 *
 * Each prints what it saw; the output is the same with and without libesca.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esca_test.h"

#define BIG 15000

static int sock, ep;
static pid_t peer_pid;
static char big[BIG];

/* The peer: for each request byte 'p' it sends, reads 3 bytes back; for
 * 'b', 3 * BIG bytes; for 'e', echoes what comes until EOF. */
static void peer(int fd, long iterations)
{
	static char buf[3 * BIG];
	long i;

	for (i = 0; i < iterations; i++) {
		char req = (i % 7 == 6) ? 'b' : 'p';
		size_t want = req == 'b' ? 3 * BIG : 3, got = 0;

		if (write(fd, &req, 1) != 1)
			_exit(2);
		while (got < want) {
			ssize_t r = read(fd, buf + got, want - got);

			if (r <= 0)
				_exit(3);
			got += (size_t)r;
		}
		if (req == 'b' && memcmp(buf, big, BIG))
			_exit(4);
	}
	/* echo mode */
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0)
			_exit(r == 0 ? 0 : 5);
		if (write(fd, buf, (size_t)r) != r)
			_exit(6);
	}
}

static void start(long iterations)
{
	int small = 4096;

	for (int i = 0; i < BIG; i++)
		big[i] = (char)t_pattern((unsigned)i, 7);
	peer_pid = t_peer_loop(&sock, &ep, peer, iterations);
	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0)
		FAIL("SO_SNDBUF: %m");
}

/* Iterations of the loop: the wait (with the last iteration's batch) ->
 * read the request -> reply; with marker, the last reply ends with "m",
 * which the peer (echoing from then on) sends back: that last batch is left
 * in the open segment for the next call. */
static void loop(long iterations, int marker)
{
	for (long i = 0; i < iterations; i++) {
		struct epoll_event out;
		int n = ESCA_BATCH_FLUSH_WAIT(ep, &out, 1, -1);
		char c;

		if (n != 1)
			FAIL("epoll_wait returned %d (%s): %m", n, strerror(errno));
		ESCA_BATCH_START();
		if (read(sock, &c, 1) != 1)
			FAIL("read: %m");
		for (int k = 0; k < 3; k++) {
			ssize_t w = c == 'b' ? write(sock, big, BIG) : write(sock, &c, 1);

			if (w != (c == 'b' ? BIG : 1))
				FAIL("write %zd: %m", w);
		}
		if (marker && i == iterations - 1 && write(sock, "m", 1) != 1)
			FAIL("write marker: %m");
	}
}

static int finish(void)
{
	int status;

	ESCA_BATCH_FLUSH();
	close(sock);
	if (waitpid(peer_pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		FAIL("peer status %#x: %m", status);
	return T_PASS;
}

/* The echo is there now, checked without any interposed call. */
static int echo_there(void)
{
	char c = 0;
	long r = syscall(SYS_recvfrom, sock, &c, 1, MSG_DONTWAIT, NULL, NULL);

	return r == 1 && c == 'm';
}

/* A thread that waits (without interposed calls) for the echo. */
static void *echo_waiter(void *arg)
{
	for (int i = 0; i < 500; i++) {
		if (echo_there())
			return (void *)1;
		syscall(SYS_nanosleep, &(struct timespec){ 0, 10000000 }, NULL);
	}
	return arg;
}

static int do_break(const char *kind)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	struct timespec ts = { 0, 200 * 1000000 };
	char c = 0;
	int ok = 0;

	loop(20, 1);
	if (!strcmp(kind, "poll")) {
		ok = poll(&p, 1, 5000) == 1 && echo_there();
	} else if (!strcmp(kind, "ppoll")) {
		struct timespec t5 = { 5, 0 };

		ok = ppoll(&p, 1, &t5, NULL) == 1 && echo_there();
	} else if (!strcmp(kind, "select") || !strcmp(kind, "pselect")) {
		struct timeval tv = { 5, 0 };
		struct timespec t5 = { 5, 0 };
		fd_set r;

		FD_ZERO(&r);
		FD_SET(sock, &r);
		ok = (kind[0] == 's' ? select(sock + 1, &r, NULL, NULL, &tv) :
				       pselect(sock + 1, &r, NULL, NULL, &t5, NULL)) == 1 &&
		     echo_there();
	} else if (!strcmp(kind, "read")) {
		ok = read(sock, &c, 1) == 1 && c == 'm';
	} else if (!strcmp(kind, "recv")) {
		ok = recv(sock, &c, 1, 0) == 1 && c == 'm';
	} else if (!strcmp(kind, "recvfrom")) {
		ok = recvfrom(sock, &c, 1, 0, NULL, NULL) == 1 && c == 'm';
	} else if (!strcmp(kind, "recvmsg")) {
		struct iovec iov = { &c, 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

		ok = recvmsg(sock, &m, 0) == 1 && c == 'm';
	} else if (!strcmp(kind, "readv")) {
		struct iovec iov = { &c, 1 };

		ok = readv(sock, &iov, 1) == 1 && c == 'm';
	} else if (!strcmp(kind, "nanosleep")) {
		ok = nanosleep(&ts, NULL) == 0 && echo_there();
	} else if (!strcmp(kind, "usleep")) {
		ok = usleep(200000) == 0 && echo_there();
	} else if (!strcmp(kind, "waitpid")) {
		pid_t child = fork();
		int status = -1;

		if (child == 0) {	/* a child that waits for the echo itself */
			for (int i = 0; i < 500; i++) {
				if (echo_there())
					syscall(SYS_exit_group, 0);
				syscall(SYS_nanosleep, &(struct timespec){ 0, 10000000 }, NULL);
			}
			syscall(SYS_exit_group, 1);
		}
		ok = waitpid(child, &status, 0) == child && WIFEXITED(status) &&
		     WEXITSTATUS(status) == 0;
	} else if (!strcmp(kind, "join")) {
		pthread_t th;
		void *seen = NULL;

		if (pthread_create(&th, NULL, echo_waiter, NULL))
			FAIL("pthread_create: %m");
		ok = pthread_join(th, &seen) == 0 && seen == (void *)1;
	} else if (!strcmp(kind, "exit")) {
		/* the batch must reach the peer though _exit() skips destructors;
		 * the parent of this process checks the echo (below) */
		_exit(0);
	} else {
		FAIL("unknown kind %s: %m", kind);
	}
	t_say("%s: batch sent before the call: %s\n", kind, ok ? "yes" : "no");
	CHECK(ok, "%s: the marker write was not sent before the call", kind);
	return finish();
}

static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

static int do_wait(const char *kind)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	struct epoll_event out;
	sigset_t block, mask, now;
	int n, err;

	/* a second epoll set on a pipe with nothing in it */
	int pp[2];
	struct epoll_event ev = { .events = EPOLLIN };
	int ep2 = epoll_create1(EPOLL_CLOEXEC);

	if (pipe(pp) < 0 || ep2 < 0 || epoll_ctl(ep2, EPOLL_CTL_ADD, pp[0], &ev) < 0)
		FAIL("pipe/epoll: %m");
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	loop(20, 1);
	if (!strcmp(kind, "signal")) {
		alarm(1);
		n = ESCA_BATCH_FLUSH_WAIT(ep2, &out, 1, -1);
	} else if (!strcmp(kind, "timeout")) {
		n = ESCA_BATCH_FLUSH_WAIT(ep2, &out, 1, 100);
	} else if (!strcmp(kind, "pwait")) {
		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigprocmask(SIG_BLOCK, &block, NULL);
		raise(SIGUSR1);
		sigprocmask(SIG_BLOCK, NULL, &mask);
		sigdelset(&mask, SIGUSR1);
		n = epoll_pwait(ep2, &out, 1, -1, &mask);
		sigprocmask(SIG_BLOCK, NULL, &now);
		CHECK(sigismember(&now, SIGUSR1), "epoll_pwait's mask was not restored");
	} else {
		FAIL("unknown kind %s: %m", kind);
	}
	err = n < 0 ? errno : 0;
	t_say("%s: epoll_wait %d errno %s handled %d\n", kind, n, err ? strerror(err) : "-",
	      (int)handled);
	/* the batch went out before (or with) the wait */
	for (int i = 0; i < 500 && !echo_there(); i++) {
		if (i == 499)
			FAIL("%s: the marker write was never sent", kind);
		syscall(SYS_nanosleep, &(struct timespec){ 0, 10000000 }, NULL);
	}
	return finish();
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "loop";

	ESCA_INIT();
	if (!strcmp(what, "loop")) {
		long n = argc > 2 ? atol(argv[2]) : 1000;

		start(n);
		loop(n, 0);
		t_say("loop: %ld iterations\n", n);
		return finish();
	}
	if (!strcmp(what, "break")) {
		const char *kind = argc > 2 ? argv[2] : "poll";

		start(20);
		if (!strcmp(kind, "exit")) {
			pid_t child = fork();
			int status;

			if (child == 0)
				return do_break(kind);
			if (waitpid(child, &status, 0) != child)
				FAIL("waitpid: %m");
			/* our copy of sock is open too: the echo reaches it */
			for (int i = 0; i < 500 && !echo_there(); i++) {
				if (i == 499)
					FAIL("exit: the batch of a process that called _exit was lost");
				syscall(SYS_nanosleep, &(struct timespec){ 0, 10000000 }, NULL);
			}
			t_say("exit: batch sent before _exit\n");
			return finish();
		}
		return do_break(kind);
	}
	start(20);
	return do_wait(what);
}
