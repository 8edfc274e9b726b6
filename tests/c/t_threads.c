// SPDX-License-Identifier: MIT
/* Threads: each runs its own segments on its own sockets; every byte
 * arrives, in order, on the right socket.  A thread that exits with
 * entries pending has them flushed (pthread key destructor). */
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esca_test.h"

#define NTHREADS 8
#define ROUNDS 400

static int sv[NTHREADS][2];

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned char buf[512];
	unsigned long long pos = 0, rng = id + 1;

	for (int r = 0; r < ROUNDS; r++) {
		ESCA_BATCH_START();
		for (int k = 0; k < 4; k++) {
			size_t len = 1 + t_rand(&rng) % sizeof(buf);

			for (size_t i = 0; i < len; i++)
				buf[i] = t_pattern(id, pos + i);
			if (write(sv[id][0], buf, len) != (ssize_t)len)
				FAIL("write: %m");
			pos += len;
		}
		if (r == ROUNDS - 1)
			break;	/* leave the last segment open: exit flushes it */
		ESCA_BATCH_FLUSH();
	}
	if (close(sv[id][0]) < 0)
		FAIL("close: %m");
	return (void *)(uintptr_t)pos;
}

int main(void)
{
	pthread_t th[NTHREADS];
	static unsigned char got[NTHREADS][ROUNDS * 4 * 512];

	ESCA_INIT();
	for (int i = 0; i < NTHREADS; i++) {
		int big = 1 << 21;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0)
			FAIL("socketpair: %m");
		setsockopt(sv[i][0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
	}
	for (int i = 0; i < NTHREADS; i++) {
		void *ret;
		size_t n = 0;
		ssize_t r;
		unsigned long long want;

		/* read until EOF: the data and the close both arrive */
		while ((r = read(sv[i][1], got[i] + n, sizeof(got[i]) - n)) > 0)
			n += (size_t)r;
		pthread_join(th[i], &ret);
		want = (uintptr_t)ret;
		CHECK(n == want, "thread %d: %zu of %llu bytes", i, n, want);
		for (size_t k = 0; k < n; k++)
			if (got[i][k] != t_pattern((unsigned)i, k)) {
				FAIL("thread %d: byte %zu differs", i, k);
				break;
			}
	}
	printf("ok\n");
	return T_PASS;
}
