// SPDX-License-Identifier: MIT
/*
 * esca-microbench: the per-call cost of small fire-and-forget calls made
 * inside a batching segment.  Run it with libesca preloaded and
 * ESCA_BACKEND=off for the direct baseline, =uring or =module for ESCA
 * (esca-bench micro runs them interleaved and prints the table).
 *
 *   esca-microbench write|close|sockopt|waitwrite BATCH ROUNDS [SOCKETS]
 *
 * write: BATCH 64-byte writes per segment, spread round-robin over SOCKETS
 *        AF_UNIX stream sockets (default 1: all on one socket).
 * close: BATCH closes of freshly opened fds per segment.
 * sockopt: BATCH setsockopt(TCP_NODELAY) calls on a loopback TCP socket.
 * waitwrite: the writes of "write", then epoll_wait() on an eventfd that is
 *        always readable, as an event loop's next wait (with flush with the
 *        wait, the batch goes into the kernel with it); the wait is timed too.
 * Prints one line: "<op> <batch> <ns per call, median over rounds>".
 * Only the segment (batch_start .. batch_flush, and the wait) is timed.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "esca.h"

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static char payload[64], sink[1 << 16];
	int batch, rounds, nsock = 1, sv[64][2], i, r, *fds, sndbuf = 1 << 22, tcp = -1, ep = -1;
	long long *samples, t0;
	bool is_write, is_sockopt, is_wait;
	struct epoll_event ev = { .events = EPOLLIN };

	if ((argc != 4 && argc != 5) ||
	    (strcmp(argv[1], "write") && strcmp(argv[1], "close") && strcmp(argv[1], "sockopt") &&
	     strcmp(argv[1], "waitwrite"))) {
		fprintf(stderr, "usage: %s write|close|sockopt|waitwrite BATCH ROUNDS [SOCKETS]\n",
			argv[0]);
		return 2;
	}
	is_wait = !strcmp(argv[1], "waitwrite");
	is_write = !strcmp(argv[1], "write") || is_wait;
	is_sockopt = !strcmp(argv[1], "sockopt");
	batch = atoi(argv[2]);
	rounds = atoi(argv[3]);
	if (argc == 5)
		nsock = atoi(argv[4]);
	if (batch < 1 || batch > 4096 || rounds < 1 || nsock < 1 || nsock > 64) {
		fprintf(stderr, "%s: BATCH must be 1..4096, ROUNDS >= 1, SOCKETS 1..64\n", argv[0]);
		return 2;
	}
	samples = calloc((size_t)rounds, sizeof(*samples));
	fds = calloc((size_t)batch, sizeof(*fds));
	if (!samples || !fds)
		return 1;
	memset(payload, 'x', sizeof(payload));
	for (i = 0; i < nsock; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0) {
			perror("socketpair");
			return 1;
		}
		setsockopt(sv[i][0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		fcntl(sv[i][1], F_SETFL, O_NONBLOCK);
	}
	if (is_sockopt) {
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t sl = sizeof(sa);
		int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (l < 0 || tcp < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) ||
		    listen(l, 1) || getsockname(l, (struct sockaddr *)&sa, &sl) ||
		    connect(tcp, (struct sockaddr *)&sa, sizeof(sa))) {
			perror("loopback TCP");
			return 1;
		}
	}
	if (is_wait) {
		int efd = eventfd(1, EFD_CLOEXEC);

		ep = epoll_create1(EPOLL_CLOEXEC);
		if (efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev)) {
			perror("eventfd/epoll");
			return 1;
		}
	}
	ESCA_INIT();

	for (r = -rounds / 10; r < rounds; r++) {	/* first tenth: warm-up */
		if (!is_write && !is_sockopt)
			for (i = 0; i < batch; i++)
				if ((fds[i] = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
					perror("open /dev/null");
					return 1;
				}
		t0 = now_ns();
		ESCA_BATCH_START();
		for (i = 0; i < batch; i++) {
			if (is_write) {
				if (write(sv[i % nsock][0], payload, sizeof(payload)) !=
				    sizeof(payload)) {
					perror("write");
					return 1;
				}
			} else if (is_sockopt) {
				int one = 1;

				if (setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
					perror("setsockopt");
					return 1;
				}
			} else if (close(fds[i]) < 0) {
				perror("close");
				return 1;
			}
		}
		ESCA_BATCH_FLUSH();
		if (is_wait && epoll_wait(ep, &ev, 1, -1) != 1) {
			perror("epoll_wait");
			return 1;
		}
		if (r >= 0)
			samples[r] = now_ns() - t0;
		for (i = 0; is_write && i < nsock; i++)
			while (read(sv[i][1], sink, sizeof(sink)) > 0)
				;
	}
	qsort(samples, (size_t)rounds, sizeof(*samples), cmp_ll);
	printf("%s %d %.1f\n", argv[1], batch, (double)samples[rounds / 2] / batch);
	return 0;
}
