// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 17: a signal handler writes to the socket the
 * main loop writes to inside segments.
 *
 *   handler_order alarm     SIGALRM from an ITIMER_REAL every 100 us
 *   handler_order thread    SIGUSR1 sent to the main thread by a second
 *                           thread in a loop (pthread_kill, ~50 us apart)
 *
 * (In a QEMU guest 20 times slower: every 2 ms, 1 ms apart.)
 *
 * Both the handler and the main loop take the next sequence number right
 * before their write of a 10-byte record ("H..." / "M...") to the same TCP
 * socket; the main loop's writes (three per segment, then batch_flush, a
 * zero-timeout epoll_wait and 20 us of work without system calls) are
 * protected from reordering by program
 * order only.  The one rule that keeps a run without libesca
 * deterministic: the handler writes nothing while the main loop is
 * between taking a number and its write's return (it would overtake that
 * record), and the signal is never blocked.  The peer checks every record
 * whole, the numbers consecutive from 0.  The loop runs until the handler
 * wrote 100 records (10 in a QEMU guest) in at least 300 segments, at
 * most 5 s (30 s in QEMU).  Without libesca it prints:
 *
 *   the handler wrote: enough
 *   records: whole, consecutive, in order
 */
#include <sys/time.h>

#include "esca_test.h"

static volatile sig_atomic_t busy, handler_writes, stop;
static volatile unsigned next_seq;
static int s;

static void on_signal(int sig)
{
	int saved = errno;
	char rec[H_REC];

	(void)sig;
	if (busy || stop)
		return;
	t_record(rec, 'H', next_seq++);
	if (write(s, rec, H_REC) != H_REC) {
		syscall(SYS_write, 2, "handler: write failed\n", 22);
		_exit(T_FAIL);
	}
	handler_writes++;
	errno = saved;
}

static pthread_t main_thread;
static long tick_us = 100;	/* 2 ms in a QEMU guest: TCG must not live in the handler */

static void *kicker(void *arg)
{
	(void)arg;
	while (!stop) {
		pthread_kill(main_thread, SIGUSR1);
		syscall(SYS_nanosleep, &(struct timespec){ 0, 500L * tick_us }, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "alarm";
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	struct itimerval on, off = { { 0, 0 }, { 0, 0 } };
	struct epoll_event ev = { .events = EPOLLIN };
	long target = t_scale(argc, argv, 2, 100, 10), segs = 0, count, last;
	int alarm_ = !strcmp(variant, "alarm"), peer, ep;
	struct t_sink *sink;
	const char *why;
	pthread_t th;
	double deadline;
	pid_t pid;

	CHECK(alarm_ || !strcmp(variant, "thread"), "variant %s", variant);
	if (t_qemu())
		tick_us = 2000;
	on.it_interval = on.it_value = (struct timeval){ 0, tick_us };
	ESCA_INIT();
	t_watchdog(15);
	sink = t_sink_new(1 << 20);
	/* a send buffer nothing here fills: a write never blocks, so never
	 * comes back short because of a signal */
	t_tcp_pair_buf(&s, &peer, 1 << 20, 0);
	pid = t_sink_start(sink, peer);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	CHECK(sigaction(alarm_ ? SIGALRM : SIGUSR1, &sa, NULL) == 0);
	deadline = t_now() + (t_qemu() ? 30 : 5);
	main_thread = pthread_self();
	if (alarm_)
		CHECK(setitimer(ITIMER_REAL, &on, NULL) == 0);
	else
		CHECK(pthread_create(&th, NULL, kicker, NULL) == 0);

	t_doing = "in the loop";
	while ((handler_writes < target || segs < 300) && t_now() < deadline &&
	       next_seq < 60000) {
		struct epoll_event out;

		ESCA_BATCH_START();
		for (int k = 0; k < 3; k++) {
			char rec[H_REC];

			busy = 1;
			t_record(rec, 'M', next_seq++);
			if (write(s, rec, H_REC) != H_REC)
				FAIL("write: %m");
			busy = 0;
		}
		ESCA_BATCH_FLUSH();
		if (epoll_wait(ep, &out, 1, 0) != 0)
			FAIL("epoll_wait: %m");
		/* 20 us of work without system calls: the handler's chance */
		for (double until = t_now() + (double)tick_us / 5e6; t_now() < until;)
			;
		segs++;
	}
	stop = 1;
	if (alarm_)
		CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
	else
		CHECK(pthread_join(th, NULL) == 0);

	t_doing = "waiting for the sink";
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	t_note("the handler wrote: %s\n", handler_writes >= target ? "enough" : "not enough");
	why = t_check_records(sink->data, sink->len, 1, &count, &last);
	t_note("records: %s\n", why ? why : "whole, consecutive, in order");
	if (!why && last + 1 != (long)next_seq)
		t_note("records: %ld, %u written\n", last + 1, next_seq);
	if (getenv("T_VERBOSE"))
		fprintf(stderr, "%ld segments, %d handler writes\n", segs, (int)handler_writes);
	t_notes_print();
	return T_PASS;
}
