// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 8: "a log record then a socket send that wakes a
 * peer which reads the log: the peer misses the record (212 of 300 forced,
 * 2 of 300 default)".
 *
 *   cross_fd_order [N]     N iterations (default 300, 30 in a QEMU guest)
 *
 * An event loop on a TCP connection: epoll_wait -> segment -> read the
 * peer's request -> append a record to a log file (O_APPEND) -> send the
 * record's number on the socket -> write to a second client (a second TCP
 * connection, read by a sink) -> batch_flush.  The peer (a forked
 * process), woken by the send, reads the log at that record's offset and
 * counts the records that are not there yet.  Without libesca it prints
 *
 *   log records the peer missed: 0 of 300
 */
#include "esca_test.h"

#define REC 16

static long iterations;
static int peer_fd;
static const char *dir;

static void rec(char *buf, long i)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "log record %04ld\n", i % 10000);
	memcpy(buf, tmp, REC);
}

static void peer(void *arg)
{
	long *missed = arg;
	int log = open(t_path(dir, "log"), O_RDONLY | O_CLOEXEC);

	CHECK(log >= 0);
	for (long i = 0; i < iterations; i++) {
		char want[REC], got[REC];
		uint32_t n;

		CHECK(write(peer_fd, "n", 1) == 1);
		t_read_full(peer_fd, &n, sizeof(n));
		CHECK(n == (uint32_t)i, "token %u, expected %ld", n, i);
		rec(want, i);
		if (pread(log, got, REC, (off_t)i * REC) != REC || memcmp(got, want, REC))
			++*missed;
	}
}

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN };
	long *missed = t_shared(sizeof(long));
	struct t_sink *sink;
	int s, s2, s2_peer, ep, log;
	pid_t pid, sinkpid;

	iterations = t_scale(argc, argv, 1, 300, 30);
	ESCA_INIT();
	t_watchdog(20);
	dir = t_tmpdir();
	log = open(t_path(dir, "log"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	CHECK(log >= 0);
	t_tcp_pair(&s, &peer_fd);
	pid = t_spawn(peer, missed, 1, peer_fd);
	CHECK(close(peer_fd) == 0);
	sink = t_sink_new((size_t)iterations * 8 + 64);
	t_tcp_pair(&s2, &s2_peer);
	sinkpid = t_sink_start(sink, s2_peer);
	t_nonblock(s);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	t_doing = "in the event loop";
	for (long i = 0; i < iterations; i++) {
		struct epoll_event out;
		char buf[REC], c;
		uint32_t n = (uint32_t)i;

		CHECK(epoll_wait(ep, &out, 1, -1) == 1);
		ESCA_BATCH_START();
		CHECK(read(s, &c, 1) == 1 && c == 'n');
		rec(buf, i);
		CHECK(write(log, buf, REC) == REC);
		CHECK(send(s, &n, sizeof(n), 0) == sizeof(n));
		CHECK(write(s2, "other!\n", 7) == 7);
		ESCA_BATCH_FLUSH();
	}
	t_doing = "waiting for the peer";
	t_reap(pid, "peer");
	CHECK(shutdown(s2, SHUT_WR) == 0);
	t_reap(sinkpid, "sink");
	CHECK(sink->len == (size_t)iterations * 7, "the second client got %zu bytes", sink->len);
	t_note("log records the peer missed: %ld of %ld\n", *missed, iterations);
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
