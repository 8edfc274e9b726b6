// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 14: "Calls that fail at once without libesca
 * succeed under it: write to an O_RDONLY fd, a directory, a pipe's read end
 * (EBADF); 3 bytes to an eventfd (EINVAL); unconnected UDP (EDESTADDRREQ)
 * or TCP (EPIPE); TCP_NODELAY on AF_UNIX, TCP_CORK on UDP; shutdown of an
 * unconnected socket (ENOTCONN); sendto with an address on a connected
 * socket (EISCONN)."
 *
 * Each call is made inside a segment; the program prints its return value
 * and errno (SIGPIPE is ignored: EPIPE is the answer, not a signal), then,
 * after the flush, that a connected TCP socket's peer got exactly the
 * bytes of the calls that succeeded.  Without libesca it prints:
 *
 *   write O_RDONLY file: -1 EBADF
 *   write directory: -1 EBADF
 *   write pipe read end: -1 EBADF
 *   write 3 bytes to eventfd: -1 EINVAL
 *   send unconnected UDP: -1 EDESTADDRREQ
 *   write unconnected UDP: -1 EDESTADDRREQ
 *   write unconnected TCP: -1 EPIPE
 *   send unconnected TCP: -1 EPIPE
 *   TCP_NODELAY on AF_UNIX: -1 EOPNOTSUPP
 *   TCP_CORK on UDP: -1 ENOPROTOOPT
 *   shutdown unconnected TCP: -1 ENOTCONN
 *   sendto with an address, connected AF_UNIX stream: -1 EISCONN
 *   sendto with an address, connected TCP: 4 0
 *   sendto with an address, connected UDP: 4 0
 *   writev 0 iovecs to connected TCP: 0 0
 *   write to a closed fd: -1 EBADF
 *   write after close in the segment: -1 EBADF
 *   peer got: "okaytcp!"
 */
#include <sys/eventfd.h>
#include <sys/uio.h>

#include "esca_test.h"

static void say(const char *what, long r)
{
	t_note("%s: %ld %s\n", what, r, t_errname(r < 0 ? errno : 0));
}

int main(void)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sh { int tcp, peer, udp, utcp, un[2], cudp, cudp2; } s;
	const char *dir;
	int rdonly, dfd, pp[2], efd, one = 1, spare;
	struct t_sink *sink = t_sink_new(4096);
	pid_t sinkpid;

	ESCA_INIT();
	t_watchdog(10);
	signal(SIGPIPE, SIG_IGN);
	dir = t_tmpdir();
	rdonly = open(t_path(dir, "ro"), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(rdonly >= 0 && dfd >= 0 && pipe2(pp, O_CLOEXEC) == 0);
	efd = eventfd(0, EFD_CLOEXEC);
	s.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	s.utcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(efd >= 0 && s.udp >= 0 && s.utcp >= 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.un) == 0);
	t_tcp_pair(&s.tcp, &s.peer);
	sinkpid = t_sink_start(sink, s.peer);
	/* a connected UDP socket and its far end */
	s.cudp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	s.cudp2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t alen = sizeof(a);

		CHECK(bind(s.cudp2, (struct sockaddr *)&a, sizeof(a)) == 0);
		CHECK(getsockname(s.cudp2, (struct sockaddr *)&a, &alen) == 0);
		CHECK(connect(s.cudp, (struct sockaddr *)&a, sizeof(a)) == 0);
		to.sin_port = a.sin_port;
	}
	spare = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(spare >= 0 && close(spare) == 0);

	t_doing = "in the segment of failing calls";
	ESCA_BATCH_START();
	say("write O_RDONLY file", write(rdonly, "x", 1));
	say("write directory", write(dfd, "x", 1));
	say("write pipe read end", write(pp[0], "x", 1));
	say("write 3 bytes to eventfd", write(efd, "abc", 3));
	say("send unconnected UDP", send(s.udp, "x", 1, 0));
	say("write unconnected UDP", write(s.udp, "x", 1));
	say("write unconnected TCP", write(s.utcp, "x", 1));
	say("send unconnected TCP", send(s.utcp, "x", 1, 0));
	say("TCP_NODELAY on AF_UNIX",
	    setsockopt(s.un[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	say("TCP_CORK on UDP", setsockopt(s.udp, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)));
	say("shutdown unconnected TCP", shutdown(s.utcp, SHUT_WR));
	say("sendto with an address, connected AF_UNIX stream",
	    sendto(s.un[0], "x", 1, 0, (struct sockaddr *)&to, sizeof(to)));
	say("sendto with an address, connected TCP",
	    sendto(s.tcp, "okay", 4, 0, (struct sockaddr *)&to, sizeof(to)));
	say("sendto with an address, connected UDP",
	    sendto(s.cudp, "udp!", 4, 0, (struct sockaddr *)&to, sizeof(to)));
	say("writev 0 iovecs to connected TCP", writev(s.tcp, NULL, 0));
	say("write to a closed fd", write(spare, "x", 1));
	CHECK(write(s.tcp, "tcp!", 4) == 4);
	{
		int dupd = dup(s.tcp);

		CHECK(dupd >= 0 && close(dupd) == 0);
		say("write after close in the segment", write(dupd, "lost", 4));
	}
	ESCA_BATCH_FLUSH();

	t_doing = "waiting for the sink";
	CHECK(shutdown(s.tcp, SHUT_WR) == 0);
	t_reap(sinkpid, "sink");
	t_note("peer got: \"%s\"\n", t_escape(sink->data, sink->len));
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
