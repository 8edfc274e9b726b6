// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 4: one socket under several numbers -- dup(),
 * fcntl(F_DUPFD_CLOEXEC), dup2(s, 1) (the socket becomes stdout) and
 * dup2(1, 2) ("2>&1") -- with writes alternating between the numbers inside
 * segments (write, send, writev, sendmsg): the peer must get them in
 * program order.  The aliases are made inside the first segment and stdout
 * and stderr are put back inside the last one, after writes through them.
 * Sequence-numbered 10-byte records; on TCP, then on AF_UNIX.
 *
 * Without libesca it prints:
 *
 *   TCP: 129 records, whole and in program order
 *   AF_UNIX: 129 records, whole and in program order
 */
#include <sys/uio.h>

#include "esca_test.h"

#define SEGMENTS 15

static unsigned seq;

static void put(int fd, int how)
{
	char rec[H_REC];
	struct iovec iov[2] = { { rec, 4 }, { rec + 4, H_REC - 4 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t w;

	t_record(rec, "WSVM"[how], seq++);
	switch (how) {
	case 0: w = write(fd, rec, H_REC); break;
	case 1: w = send(fd, rec, H_REC, 0); break;
	case 2: w = writev(fd, iov, 2); break;
	default: w = sendmsg(fd, &m, 0); break;
	}
	CHECK(w == H_REC, "record %u through fd %d (%d)", seq - 1, fd, how);
}

static void run(const char *kind, int tcp)
{
	struct t_sink *sink = t_sink_new(1 << 16);
	int s, peer, d, f, saved1, saved2;
	const char *why;
	long count, last;
	pid_t pid;

	seq = 0;
	if (tcp)
		t_tcp_pair(&s, &peer);
	else
		t_unix_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	saved1 = dup(1);
	saved2 = dup(2);
	CHECK(saved1 >= 0 && saved2 >= 0);
	for (int i = 0; i < SEGMENTS; i++) {
		ESCA_BATCH_START();
		if (i == 0) {
			put(s, 0);
			d = dup(s);
			put(d, 1);
			put(s, 2);
			f = fcntl(s, F_DUPFD_CLOEXEC, 20);
			CHECK(d >= 0 && f >= 0);
			put(f, 3);
			CHECK(dup2(s, 1) == 1);
			put(1, 0);
			CHECK(dup2(1, 2) == 2);	/* 2>&1 */
			put(2, 1);
		}
		for (int k = 0; k < 8; k++) {
			int fds[5] = { s, d, 1, 2, f };

			put(fds[(i + k) % 5], (i + 2 * k) % 4);
		}
		if (i == SEGMENTS - 1) {
			CHECK(dup2(saved1, 1) == 1 && dup2(saved2, 2) == 2);
			put(d, 0);
			put(s, 1);
			put(f, 2);
		}
		ESCA_BATCH_FLUSH();
	}
	CHECK(close(saved1) == 0 && close(saved2) == 0 && close(d) == 0 && close(f) == 0);
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	close(s);
	why = t_check_records(sink->data, sink->len, 1, &count, &last);
	t_note("%s: %ld records, %s\n", kind, count, why ? why : "whole and in program order");
}

int main(void)
{
	ESCA_INIT();
	t_watchdog(10);
	t_doing = "TCP";
	run("TCP", 1);
	t_doing = "AF_UNIX";
	run("AF_UNIX", 0);
	t_notes_print();
	return T_PASS;
}
