// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 16: "A deferred close changes fd numbers:
 * socket() after close(3) returns 4; close(1); open(log) returns 5 and the
 * output stays on the old stdout."
 *
 * Inside segments: two writes to a connected TCP socket, close() of it,
 * then socket(); and close(n) followed by each call that takes the lowest
 * free number (open, accept, pipe, dup, eventfd, epoll_create1, accept4,
 * socketpair, fcntl(F_DUPFD_CLOEXEC), socket): each must get the number a
 * plain run gets (the one just closed: the program lays its fds out so
 * that it is the lowest free one).  Then close(1) + open(log) inside a
 * segment: open returns 1, and the writes to fd 1 of that segment and of
 * the next one land in the log, not on the old stdout.  Without libesca it
 * prints (for a program started with fds 0, 1 and 2 only):
 *
 *   first free number: 8
 *   close(4) socket(): 4
 *   close(4) open(): 4
 *   close(4) accept(): 4
 *   close(4) pipe(): 4 8
 *   close(4) dup(): 4
 *   close(4) eventfd(): 4
 *   close(4) epoll_create1(): 4
 *   close(4) accept4(): 4
 *   close(4) socketpair(): 4 8
 *   close(4) fcntl(F_DUPFD_CLOEXEC): 4
 *   close(4) accept(): 4
 *   close(4) socket(UDP): 4
 *   close(1) open(log): 1
 *   write(1) in that segment: 11
 *   write(1) in the next one: 14
 *   log: "to the log\nstill the log\n"
 *   peer of the closed socket got: "hello, then closed" (end: 0)
 *   stdout: back
 */
#include <sys/eventfd.h>

#include "esca_test.h"

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct t_sink *sink = t_sink_new(4096);
	int tcp, peer, lst, c[3], n, pp[2], saved, x;
	const char *dir;
	pid_t sinkpid;

	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();
	t_tcp_pair(&tcp, &peer);
	sinkpid = t_sink_start(sink, peer);
	/* a listener with three connections waiting to be accepted */
	lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(listen(lst, 8) == 0 && getsockname(lst, (struct sockaddr *)&a, &alen) == 0);
	for (int i = 0; i < 3; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(c[i] >= 0 && connect(c[i], (struct sockaddr *)&a, sizeof(a)) == 0);
	}
	x = dup(0);
	CHECK(x >= 0 && close(x) == 0);
	t_note("first free number: %d\n", x);

	t_doing = "in the segment of socket() after a deferred close";
	ESCA_BATCH_START();
	CHECK(write(tcp, "hello, ", 7) == 7);
	CHECK(write(tcp, "then closed", 11) == 11);
	x = tcp;
	CHECK(close(tcp) == 0);
	n = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	t_note("close(%d) socket(): %d\n", x, n);
	ESCA_BATCH_FLUSH();
	t_notes_print();

	t_doing = "in the segment of closes and new fds";
	ESCA_BATCH_START();
	x = n;
	CHECK(close(x) == 0);
	n = open(t_path(dir, "a"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	t_note("close(%d) open(): %d\n", x, n);
	CHECK(write(n, "a", 1) == 1);
	x = n;
	CHECK(close(x) == 0);
	n = accept(lst, NULL, NULL);
	t_note("close(%d) accept(): %d\n", x, n);
	CHECK(write(n, "b", 1) == 1);
	x = n;
	CHECK(close(x) == 0);
	CHECK(pipe(pp) == 0);
	t_note("close(%d) pipe(): %d %d\n", x, pp[0], pp[1]);
	CHECK(close(pp[1]) == 0);
	x = pp[0];
	CHECK(close(x) == 0);
	n = dup(2);
	t_note("close(%d) dup(): %d\n", x, n);
	x = n;
	CHECK(close(x) == 0);
	n = eventfd(0, EFD_CLOEXEC);
	t_note("close(%d) eventfd(): %d\n", x, n);
	x = n;
	CHECK(close(x) == 0);
	n = epoll_create1(EPOLL_CLOEXEC);
	t_note("close(%d) epoll_create1(): %d\n", x, n);
	x = n;
	CHECK(close(x) == 0);
	n = accept4(lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	t_note("close(%d) accept4(): %d\n", x, n);
	CHECK(write(n, "c", 1) == 1);
	x = n;
	CHECK(close(x) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pp) == 0);
	t_note("close(%d) socketpair(): %d %d\n", x, pp[0], pp[1]);
	CHECK(write(pp[0], "d", 1) == 1);
	CHECK(close(pp[1]) == 0);
	x = pp[0];
	CHECK(close(x) == 0);
	n = fcntl(0, F_DUPFD_CLOEXEC, 0);
	t_note("close(%d) fcntl(F_DUPFD_CLOEXEC): %d\n", x, n);
	x = n;
	CHECK(close(x) == 0);
	n = accept(lst, NULL, NULL);
	t_note("close(%d) accept(): %d\n", x, n);
	x = n;
	CHECK(close(x) == 0);
	n = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	t_note("close(%d) socket(UDP): %d\n", x, n);
	CHECK(close(n) == 0);
	ESCA_BATCH_FLUSH();
	t_notes_print();

	t_doing = "in the segment of close(1) and open(log)";
	saved = dup(1);
	CHECK(saved >= 0);
	ESCA_BATCH_START();
	CHECK(close(1) == 0);
	n = open(t_path(dir, "log"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	t_note("close(1) open(log): %d\n", n);
	t_note("write(1) in that segment: %zd\n", write(1, "to the log\n", 11));
	ESCA_BATCH_FLUSH();
	ESCA_BATCH_START();
	t_note("write(1) in the next one: %zd\n", write(1, "still the log\n", 14));
	ESCA_BATCH_FLUSH();
	CHECK(dup2(saved, 1) == 1 && close(saved) == 0);
	if (n != 1)
		CHECK(close(n) == 0);
	t_note_file("log", t_path(dir, "log"));
	t_doing = "waiting for the sink";
	t_reap(sinkpid, "sink");
	t_note("peer of the closed socket got: \"%s\" (end: %s)\n",
	       t_escape(sink->data, sink->len), t_errname(sink->err));
	t_note("stdout: back\n");
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
