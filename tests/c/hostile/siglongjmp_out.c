// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 12: a signal handler that interrupts interposed
 * calls and siglongjmp()s out of them, back into the loop.
 *
 * A fast ITIMER_REAL (every 100 us; 2 ms in a QEMU guest) whose SIGALRM
 * handler, while the loop is inside write() (in a segment) or epoll_wait()
 * (after batch_flush(), every 16th with a 1 ms timeout, 20 ms in QEMU),
 * siglongjmp()s back to the loop, which goes on with the next record.  Each
 * record's number is taken before its write, so a write jumped out of may
 * or may not have been sent (also without libesca): the stream may have
 * gaps, but every record must be whole and the numbers strictly
 * increasing, and the records of a last segment written after the timer
 * stopped must all arrive.  (Whether the segments still batch afterwards
 * is not observable without libesca.)
 * The loop runs until 200 jumps (20 in a QEMU guest) and 300 segments, at
 * most 5 s (30 s in QEMU); how many of them are out of write() is not
 * counted: a libesca that delays a signal to the end of its recording is
 * not observable in principle.  Without libesca it prints:
 *
 *   jumped out of interposed calls: enough
 *   records: whole and strictly increasing
 *   the last segment's records: all there
 */
#include <setjmp.h>
#include <sys/time.h>

#include "esca_test.h"

static sigjmp_buf jb;
/* armed: 1 in write(), 2 in epoll_wait() */
static volatile sig_atomic_t armed, jumps[3];

static void on_alarm(int sig)
{
	(void)sig;
	if (armed) {
		jumps[armed]++;
		armed = 0;
		siglongjmp(jb, 1);
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	/* every 100 us; 2 ms in a QEMU guest (TCG must not live in the handler) */
	long tick_us = t_qemu() ? 2000 : 100;
	struct itimerval on = { { 0, tick_us }, { 0, tick_us } }, off = { { 0, 0 }, { 0, 0 } };
	struct epoll_event ev = { .events = EPOLLIN };
	long target = t_scale(argc, argv, 1, 200, 20), count, last;
	volatile unsigned seq = 0;
	volatile long segs = 0;
	struct t_sink *sink;
	double deadline;
	const char *why;
	unsigned first_final;
	int s, peer, ep;
	pid_t pid;

	ESCA_INIT();
	t_watchdog(15);
	sink = t_sink_new(1 << 20);
	t_tcp_pair_buf(&s, &peer, 1 << 20, 0);
	pid = t_sink_start(sink, peer);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	deadline = t_now() + (t_qemu() ? 30 : 5);
	CHECK(setitimer(ITIMER_REAL, &on, NULL) == 0);

	t_doing = "in the loop";
	while ((jumps[1] + jumps[2] < target || segs < 300) && t_now() < deadline &&
	       seq < 900000 / H_REC) {
		struct epoll_event out;

		ESCA_BATCH_START();
		for (volatile int k = 0; k < 4; k++) {
			char rec[H_REC];

			t_record(rec, 'S', seq++);
			if (sigsetjmp(jb, 1) == 0) {
				armed = 1;
				if (write(s, rec, H_REC) != H_REC)
					FAIL("write: %m");
				armed = 0;
			}
		}
		ESCA_BATCH_FLUSH();
		if (sigsetjmp(jb, 1) == 0) {
			armed = 2;
			if (epoll_wait(ep, &out, 1, segs % 16 ? 0 : (int)(tick_us / 100)) != 0)
				FAIL("epoll_wait: %m");
			armed = 0;
		}
		segs++;
	}
	armed = 0;
	CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);

	t_doing = "in the last segment";
	first_final = seq;
	ESCA_BATCH_START();
	for (int k = 0; k < 10; k++) {
		char rec[H_REC];

		t_record(rec, 'E', seq++);
		CHECK(write(s, rec, H_REC) == H_REC);
	}
	ESCA_BATCH_FLUSH();
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_doing = "waiting for the sink";
	t_reap(pid, "sink");
	t_note("jumped out of interposed calls: %s\n",
	       jumps[1] + jumps[2] >= target ? "enough" : "not enough");
	if (getenv("T_VERBOSE"))
		fprintf(stderr, "%ld segments, %d + %d jumps\n", (long)segs, (int)jumps[1],
			(int)jumps[2]);
	why = t_check_records(sink->data, sink->len, 0, &count, &last);
	t_note("records: %s\n", why ? why : "whole and strictly increasing");
	{
		int all = sink->len >= 10 * H_REC;

		for (unsigned k = 0; all && k < 10; k++) {
			char rec[H_REC];

			t_record(rec, 'E', first_final + k);
			all = !memcmp(sink->data + sink->len - (10 - k) * H_REC, rec, H_REC);
		}
		t_note("the last segment's records: %s\n", all ? "all there" : "missing");
	}
	t_notes_print();
	return T_PASS;
}
