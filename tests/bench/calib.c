/*
 * The calibration of the guest -icount measurement (scripts/guest-bench):
 * the cost of a null system call (getppid) and of a 64-byte write to a TCP
 * socket on 127.0.0.1, the same program on this machine (nanoseconds) and in
 * the QEMU guest (there -icount makes nanoseconds proportional to
 * instructions).  Prints "null_ns V", "write64_unix_ns V" (an AF_UNIX
 * stream socket, as esca-bench micro writes) and "write64_tcp_ns V" (TCP with
 * TCP_NODELAY: each write a segment through the loopback stack, as a
 * server's response): the lowest over 7 rounds of the mean per call (the
 * round least disturbed by other processes: noise only adds time).
 *
 *   calib [CALLS-PER-ROUND]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "esca_test.h"

#define ROUNDS 7
#define BURST 64

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double lowest(const double *v)
{
	double m = v[0];

	for (int i = 1; i < ROUNDS; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

static void die(const char *what)
{
	FAIL("%s: %m", what);
}

/* a connected pair of TCP sockets on 127.0.0.1: fds[0] writes, fds[1] reads */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int l, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		die("listen");
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	fds[1] = accept(l, NULL, NULL);
	if (fds[1] < 0)
		die("accept");
	close(l);
	/* each write is sent at once, as a server's response is */
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void drain(int fd)
{
	char buf[65536];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		die("recv");
}

/* ns per 64-byte write: bursts, the reader drained between them (not timed) */
static double writes(int fds[2], long calls, const char *msg)
{
	double t0, spent = 0;
	long i, j;

	for (i = 0; i + BURST <= calls; i += BURST) {
		t0 = now_ns();
		for (j = 0; j < BURST; j++)
			if (write(fds[0], msg, 64) != 64)
				die("write");
		spent += now_ns() - t0;
		drain(fds[1]);
	}
	return spent / i;
}

int main(int argc, char **argv)
{
	long calls = argc > 1 ? atol(argv[1]) : 100000;
	double null_ns[ROUNDS], unix_ns[ROUNDS], tcp_ns[ROUNDS], t0;
	char msg[64];
	int tcp[2], unx[2];
	long i;

	if (calls < BURST) {
		fprintf(stderr, "calib: CALLS-PER-ROUND must be at least %d\n", BURST);
		return 2;
	}
	memset(msg, 'x', sizeof(msg));
	tcp_pair(tcp);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, unx))
		die("socketpair");
	for (int r = 0; r < ROUNDS; r++) {
		t0 = now_ns();
		for (i = 0; i < calls; i++)
			syscall(SYS_getppid);
		null_ns[r] = (now_ns() - t0) / calls;
		unix_ns[r] = writes(unx, calls, msg);
		tcp_ns[r] = writes(tcp, calls, msg);
	}
	printf("null_ns %.2f\nwrite64_unix_ns %.2f\nwrite64_tcp_ns %.2f\n", lowest(null_ns),
	       lowest(unix_ns), lowest(tcp_ns));
	return 0;
}
