// SPDX-License-Identifier: MIT
/*
 * esca-microbench: the per-call cost of small fire-and-forget calls made
 * inside a batching segment.  Run it with libesca preloaded and
 * ESCA_BACKEND=off for the direct baseline, =uring or =module for ESCA
 * (esca-bench micro runs them interleaved and prints the table).
 *
 *   esca-microbench write|close BATCH ROUNDS [SOCKETS]
 *
 * write: BATCH 64-byte writes per segment, spread round-robin over SOCKETS
 *        AF_UNIX stream sockets (default 1: all on one socket).
 * close: BATCH closes of freshly opened fds per segment.
 * Prints one line: "<op> <batch> <ns per call, median over rounds>".
 * Only the segment (batch_start .. batch_flush) is timed.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	int batch, rounds, nsock = 1, sv[64][2], i, r, *fds, sndbuf = 1 << 22;
	long long *samples, t0;
	bool is_write;

	if ((argc != 4 && argc != 5) || (strcmp(argv[1], "write") && strcmp(argv[1], "close"))) {
		fprintf(stderr, "usage: %s write|close BATCH ROUNDS [SOCKETS]\n", argv[0]);
		return 2;
	}
	is_write = !strcmp(argv[1], "write");
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
	ESCA_INIT();

	for (r = -rounds / 10; r < rounds; r++) {	/* first tenth: warm-up */
		if (!is_write)
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
			} else if (close(fds[i]) < 0) {
				perror("close");
				return 1;
			}
		}
		ESCA_BATCH_FLUSH();
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
