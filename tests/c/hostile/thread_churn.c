// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 9b: "threads that end while others begin".
 *
 *   thread_churn [N]     N threads in all (default 400, 100 in a QEMU guest),
 *                        at most four alive at a time
 *
 * Each thread runs a few segments (batch_start, then twice: lock a mutex,
 * take the next sequence number, write that record to one shared TCP
 * socket, unlock; batch_flush) and ends; the main thread joins the oldest
 * and starts the next one, so that a thread's end (libesca's state goes
 * back to be reused, its backend context is closed) meets another's first
 * segment (a state taken, a context opened).  The peer must get every
 * record whole, numbers consecutive from 0, and the fd limit the program
 * set is the one it finds at the end (libesca places its own fds above
 * it, raising it for a moment).  Without libesca it prints
 *
 *   records: 4800 of 4800, whole and in the mutex's order
 */
#include "esca_test.h"

#include <sys/resource.h>

#define ALIVE		4
#define SEGMENTS	6

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned next_seq;
static int s;

static void *thread(void *arg)
{
	(void)arg;
	t_mutex_segments(s, &mu, &next_seq, SEGMENTS);
	return NULL;
}

int main(int argc, char **argv)
{
	long nthreads, total, count, last;
	pthread_t th[ALIVE];
	struct t_sink *sink;
	const char *why;
	int peer;
	struct rlimit before, after;
	pid_t pid;

	CHECK(getrlimit(RLIMIT_NOFILE, &before) == 0);
	nthreads = t_scale(argc, argv, 1, 400, 100);
	total = nthreads * SEGMENTS * 2;
	ESCA_INIT();
	t_watchdog(30);
	sink = t_sink_new((size_t)total * H_REC + 64);
	t_tcp_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	t_doing = "in the threads' segments";
	for (long i = 0; i < nthreads; i++) {
		if (i >= ALIVE)
			CHECK(pthread_join(th[i % ALIVE], NULL) == 0);
		CHECK(pthread_create(&th[i % ALIVE], NULL, thread, NULL) == 0);
	}
	for (long i = nthreads > ALIVE ? nthreads - ALIVE : 0; i < nthreads; i++)
		CHECK(pthread_join(th[i % ALIVE], NULL) == 0);
	t_doing = "waiting for the sink";
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	why = t_check_records(sink->data, sink->len, 1, &count, &last);
	t_note("records: %ld of %ld, %s\n", count, total,
	       why ? why : "whole and in the mutex's order");
	CHECK(getrlimit(RLIMIT_NOFILE, &after) == 0);
	if (after.rlim_cur != before.rlim_cur || after.rlim_max != before.rlim_max)
		t_note("RLIMIT_NOFILE was %llu/%llu, is %llu/%llu\n",
		       (unsigned long long)before.rlim_cur, (unsigned long long)before.rlim_max,
		       (unsigned long long)after.rlim_cur, (unsigned long long)after.rlim_max);
	t_notes_print();
	return T_PASS;
}
