// SPDX-License-Identifier: MIT
/*
 * The event loop of issue 10: epoll_wait -> read one byte -> three 1-byte
 * writes back inside batch_start()/batch_flush(), driven ping-pong over a
 * socketpair by a forked peer.  No signal handler is installed anywhere, so
 * epoll_wait() has no reason to fail with EINTR: each such failure is
 * counted (and the loop goes on).
 *
 *   t_evloop ITERATIONS      prints "iterations=N eintr=K", exit 0 iff K == 0
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esca_test.h"

static void peer(int fd, long iterations)
{
	char buf[3];
	long i;

	for (i = 0; i < iterations; i++) {
		size_t got = 0;

		if (write(fd, "p", 1) != 1)
			_exit(2);
		while (got < sizeof(buf)) {
			ssize_t r = read(fd, buf + got, sizeof(buf) - got);

			if (r <= 0)
				_exit(3);
			got += (size_t)r;
		}
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 2000, done = 0, eintr = 0;
	int sock, ep, status;
	pid_t pid;
	char c;

	ESCA_INIT();
	pid = t_peer_loop(&sock, &ep, peer, iterations);
	while (done < iterations) {
		struct epoll_event out;
		int n = epoll_wait(ep, &out, 1, -1);

		if (n < 0 && errno == EINTR) {
			eintr++;
			continue;
		}
		if (n != 1)
			FAIL("epoll_wait returned %d: %m", n);
		ESCA_BATCH_START();
		if (read(sock, &c, 1) != 1)
			FAIL("read: %m");
		for (int k = 0; k < 3; k++)
			if (write(sock, &c, 1) != 1)
				FAIL("write: %m");
		ESCA_BATCH_FLUSH();
		done++;
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		FAIL("peer: %m");
	printf("iterations=%ld eintr=%ld\n", done, eintr);
	return eintr ? T_FAIL : T_PASS;
}
