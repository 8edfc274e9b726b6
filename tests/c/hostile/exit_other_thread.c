// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 11: "exit() from another thread loses a
 * worker's carried batch (2-14 of 40 runs)."
 *
 *   exit_other_thread segment [RUNS]
 *       a worker thread writes to its TCP connection inside its segment
 *       (deferred) and parks on a condition variable without flushing;
 *   exit_other_thread carried [RUNS]
 *       the worker serves its connection in an event loop (20 iterations
 *       of epoll_wait -> segment -> read -> write -> batch_flush, the last
 *       answer being the bytes checked) and parks right after its last
 *       batch_flush(), as a loop would before its next epoll_wait;
 *
 * then the process's main thread calls exit(0).  The worker's bytes must
 * reach the peer (this program's parent process, reading to EOF).  RUNS
 * processes (default 40, 8 in a QEMU guest); without libesca it prints
 *
 *   segment: the worker's bytes lost in 0 of 40 runs
 */
#include "esca_test.h"

#define LOOPS 20
#define BYTES "the worker's bytes\n"

static int carried, conn;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int written;

static void *worker(void *arg)
{
	(void)arg;
	if (carried) {
		struct epoll_event ev = { .events = EPOLLIN };
		int ep = epoll_create1(EPOLL_CLOEXEC);

		CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev) == 0);
		t_nonblock(conn);
		for (int i = 0; i < LOOPS; i++) {
			struct epoll_event out;
			char c;

			CHECK(epoll_wait(ep, &out, 1, -1) == 1);
			ESCA_BATCH_START();
			CHECK(read(conn, &c, 1) == 1 && c == 'p');
			if (i < LOOPS - 1)
				CHECK(write(conn, "r", 1) == 1);
			else
				CHECK(write(conn, BYTES, strlen(BYTES)) == (ssize_t)strlen(BYTES));
			ESCA_BATCH_FLUSH();
		}
	} else {
		ESCA_BATCH_START();
		CHECK(write(conn, BYTES, strlen(BYTES)) == (ssize_t)strlen(BYTES));
	}
	pthread_mutex_lock(&mu);
	written = 1;
	pthread_cond_broadcast(&cv);
	for (;;)		/* parked: nobody wakes it */
		pthread_cond_wait(&cv, &mu);
	return NULL;
}

static void child(void *arg)
{
	pthread_t th;

	(void)arg;
	ESCA_INIT();
	CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
	pthread_mutex_lock(&mu);
	while (!written)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	exit(0);
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "segment";
	long runs = t_scale(argc, argv, 2, 40, 8), lost = 0;

	carried = !strcmp(variant, "carried");
	CHECK(carried || !strcmp(variant, "segment"), "variant %s", variant);
	ESCA_INIT();
	t_watchdog(20);
	for (long r = 0; r < runs; r++) {
		char buf[256];
		size_t n = 0;
		ssize_t got;
		int peer;
		pid_t pid;

		t_doing = "starting a run";
		t_tcp_pair(&conn, &peer);
		pid = t_spawn(child, NULL, 1, conn);
		CHECK(close(conn) == 0);
		t_doing = "reading a run's bytes";
		if (carried) {
			for (int i = 0; i < LOOPS; i++) {
				char c;

				CHECK(write(peer, "p", 1) == 1);
				if (i < LOOPS - 1)
					CHECK(read(peer, &c, 1) == 1 && c == 'r');
			}
		}
		while ((got = read(peer, buf + n, sizeof(buf) - 1 - n)) > 0)
			n += (size_t)got;
		CHECK(got == 0);
		CHECK(close(peer) == 0);
		t_reap(pid, "the exiting process");
		if (n != strlen(BYTES) || memcmp(buf, BYTES, n))
			lost++;
	}
	t_note("%s: the worker's bytes lost in %ld of %ld runs\n", variant, lost, runs);
	t_notes_print();
	return T_PASS;
}
