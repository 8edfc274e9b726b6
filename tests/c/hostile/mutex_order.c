// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 9: "writes ordered by a mutex across threads
 * reordered".
 *
 *   mutex_order [N]      4 threads x N segments (default 200, 25 in a QEMU
 *                        guest)
 *
 * Four threads, each in its own loop of segments (batch_start, then twice:
 * lock a mutex, take the next sequence number, write that record to one
 * shared TCP socket, unlock; batch_flush).  The mutex orders the writes:
 * the peer must get every record whole, numbers consecutive from 0.  Without
 * libesca it prints
 *
 *   records: 1600 of 1600, whole and in the mutex's order
 */
#include "esca_test.h"

#define THREADS 4

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned next_seq;
static long segments;
static int s;

static void *thread(void *arg)
{
	(void)arg;
	t_mutex_segments(s, &mu, &next_seq, segments);
	return NULL;
}

int main(int argc, char **argv)
{
	long total, count, last;
	struct t_sink *sink;
	pthread_t th[THREADS];
	const char *why;
	int peer;
	pid_t pid;

	segments = t_scale(argc, argv, 1, 200, 25);
	total = THREADS * 2 * segments;
	ESCA_INIT();
	t_watchdog(20);
	sink = t_sink_new((size_t)total * H_REC + 64);
	t_tcp_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	t_doing = "in the threads' segments";
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, thread, NULL) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	t_doing = "waiting for the sink";
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	why = t_check_records(sink->data, sink->len, 1, &count, &last);
	t_note("records: %ld of %ld, %s\n", count, total,
	       why ? why : "whole and in the mutex's order");
	t_notes_print();
	return T_PASS;
}
