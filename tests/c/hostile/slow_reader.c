// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 1: "On a non-blocking socket whose send buffer is
 * full, deferred write/send/sendfile return the full count ... at the flush
 * libesca waits up to ESCA_WRITE_TIMEOUT_MS per entry ... then drops what
 * did not fit and still sends the entries after it".
 *
 *   slow_reader flush        the loop ends each segment with batch_flush()
 *                            and then calls epoll_wait()
 *   slow_reader flushwait    with batch_flush_wait() (ESCA_BATCH_FLUSH_WAIT:
 *                            plain epoll_wait() where no libesca defines it)
 *
 * An event loop (epoll, level-triggered) serves two non-blocking TCP
 * connections.  On the first (SO_SNDBUF 8 KiB, the peer's SO_RCVBUF 4 KiB)
 * it sends a 256 KiB stream in chunks of 700 to 20000 bytes, by write,
 * writev, send and sendfile (from a file holding the stream) in turn, up to
 * four chunks per iteration, as a correct non-blocking server does: a short
 * write keeps the rest of its chunk, EAGAIN waits for the next wake-up
 * (EPOLLOUT, or a ping on the second connection: the loop tries the first
 * connection's output at every iteration).  Its peer
 * reads 32 KiB, pauses 1 s, then reads 4 KiB a millisecond, and checks
 * every byte and the order.  On the second connection a peer sends a ping
 * every 20 ms and times the loop's "pong" until the first peer is done.
 * Without libesca it prints:
 *
 *   stream 1: 262144 bytes intact, in order
 *   second client answered while the first paused: yes
 *
 * ("yes": at least one ping during the pause, every answer within 300 ms.)
 */
#include <sys/sendfile.h>
#include <sys/uio.h>

#include "esca_test.h"

#define TOTAL (256 * 1024)
#define FIRST (32 * 1024)

struct shared {
	int pausing, paused, done;
	long got, bad_at;
	int pings_in_pause;
	double worst;
};

static struct shared *sh;
static int p1, p2;

static void slow_peer(void *arg)
{
	static unsigned char buf[4096];
	long pos = 0;

	(void)arg;
	sh->bad_at = -1;
	for (;;) {
		size_t want = pos < FIRST ? (size_t)(FIRST - pos) : sizeof(buf);
		ssize_t r = read(p1, buf, want < sizeof(buf) ? want : sizeof(buf));

		CHECK(r >= 0, "stream 1 read");
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (sh->bad_at < 0 && buf[i] != t_pattern(1, (unsigned long long)(pos + i)))
				sh->bad_at = pos + i;
		pos += r;
		if (pos == FIRST && !sh->paused) {
			__atomic_store_n(&sh->pausing, 1, __ATOMIC_RELEASE);
			syscall(SYS_nanosleep, &(struct timespec){ 1, 0 }, NULL);
			__atomic_store_n(&sh->pausing, 0, __ATOMIC_RELEASE);
			sh->paused = 1;
		} else if (pos > FIRST) {
			syscall(SYS_nanosleep, &(struct timespec){ 0, 1000000 }, NULL);
		}
	}
	sh->got = pos;
	__atomic_store_n(&sh->done, 1, __ATOMIC_RELEASE);
}

static void pinger(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE)) {
		int during = __atomic_load_n(&sh->pausing, __ATOMIC_ACQUIRE);
		double t0 = t_now(), dt;
		char pong[4];

		CHECK(write(p2, "q", 1) == 1);
		t_read_full(p2, pong, 4);
		CHECK(!memcmp(pong, "pong", 4));
		dt = t_now() - t0;
		if (dt > sh->worst)
			sh->worst = dt;
		if (during && __atomic_load_n(&sh->pausing, __ATOMIC_ACQUIRE))
			sh->pings_in_pause++;
		syscall(SYS_nanosleep, &(struct timespec){ 0, 20000000 }, NULL);
	}
}

static const size_t sizes[5] = { 3000, 1500, 6000, 20000, 700 };

/* One call of kind k for len bytes of the stream at pos: its result. */
static ssize_t put(int s, int file, int k, long pos, size_t len)
{
	static unsigned char chunk[20000];
	struct iovec iov[2];
	off_t off = pos;

	for (size_t i = 0; i < len; i++)
		chunk[i] = t_pattern(1, (unsigned long long)(pos + (long)i));
	switch (k % 4) {
	case 0:
		return write(s, chunk, len);
	case 1:
		iov[0] = (struct iovec){ chunk, len / 2 };
		iov[1] = (struct iovec){ chunk + len / 2, len - len / 2 };
		return writev(s, iov, 2);
	case 2:
		return send(s, chunk, len, 0);
	default:
		return sendfile(s, file, &off, len);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "flush";
	struct epoll_event ev1 = { .events = EPOLLOUT, .data.fd = 1 };
	struct epoll_event ev2 = { .events = EPOLLIN, .data.fd = 2 };
	int flushwait = !strcmp(mode, "flushwait"), s1, s2, ep, file, started = 0;
	long pos = 0, chunk = 0, chunk_off = 0;
	pid_t slow, ping;
	const char *dir;

	CHECK(flushwait || !strcmp(mode, "flush"), "mode %s", mode);
	ESCA_INIT();
	t_watchdog(10);
	sh = t_shared(sizeof(*sh));
	dir = t_tmpdir();
	file = open(t_path(dir, "stream"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(file >= 0);
	{
		static unsigned char all[TOTAL];

		for (long i = 0; i < TOTAL; i++)
			all[i] = t_pattern(1, (unsigned long long)i);
		CHECK(write(file, all, TOTAL) == TOTAL);
	}
	t_tcp_pair_buf(&s1, &p1, 8192, 4096);
	t_tcp_pair(&s2, &p2);
	slow = t_spawn(slow_peer, NULL, 1, p1);
	ping = t_spawn(pinger, NULL, 1, p2);
	CHECK(close(p1) == 0 && close(p2) == 0);
	t_nonblock(s1);
	t_nonblock(s2);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s1, &ev1) == 0 &&
	      epoll_ctl(ep, EPOLL_CTL_ADD, s2, &ev2) == 0);

	t_doing = "in the event loop";
	while (s1 >= 0 || s2 >= 0) {
		struct epoll_event evs[4];
		int n;

		if (flushwait && started) {
			n = ESCA_BATCH_FLUSH_WAIT(ep, evs, 4, -1);
		} else {
			if (started)
				ESCA_BATCH_FLUSH();
			n = epoll_wait(ep, evs, 4, -1);
		}
		CHECK(n > 0 || (n < 0 && errno == EINTR), "epoll_wait");
		ESCA_BATCH_START();
		started = 1;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == 2 && s2 >= 0) {
				char req[64];
				ssize_t r = read(s2, req, sizeof(req));

				if (r < 0 && errno == EAGAIN)
					continue;
				CHECK(r >= 0, "read the second client");
				if (r == 0) {
					CHECK(close(s2) == 0);
					s2 = -1;
					continue;
				}
				for (ssize_t k = 0; k < r; k++)
					CHECK(write(s2, "pong", 4) == 4);
			}
		}
		/* the first connection's output, on EPOLLOUT and on every other
		 * wake-up too (an attempt on a full buffer gets EAGAIN) */
		for (int k = 0; s1 >= 0 && k < 4 && pos < TOTAL; k++) {
			size_t size = sizes[chunk % 5], left;
			ssize_t w;

			if ((long)size > TOTAL - pos + chunk_off)
				size = (size_t)(TOTAL - pos + chunk_off);
			left = size - (size_t)chunk_off;
			w = put(s1, file, (int)(chunk % 4), pos, left);
			if (w < 0 && errno == EAGAIN)
				break;
			CHECK(w > 0, "chunk %ld: %zd", chunk, w);
			pos += w;
			if ((size_t)w < left) {
				chunk_off += w;	/* short: keep the rest */
				break;
			}
			chunk++;
			chunk_off = 0;
		}
		if (s1 >= 0 && pos == TOTAL) {
			CHECK(close(s1) == 0);
			s1 = -1;
		}
	}
	ESCA_BATCH_FLUSH();
	t_doing = "waiting for the peers";
	t_reap(slow, "the slow reader");
	t_reap(ping, "the pinger");
	if (sh->bad_at >= 0 || sh->got != TOTAL)
		t_note("stream 1: %ld bytes, the first wrong one at %ld\n", sh->got, sh->bad_at);
	else
		t_note("stream 1: %ld bytes intact, in order\n", sh->got);
	t_note("second client answered while the first paused: %s\n",
	       sh->pings_in_pause > 0 && sh->worst < 0.3 ? "yes" : "no");
	if (getenv("T_VERBOSE"))
		fprintf(stderr, "pings in the pause %d, worst %.3f s\n", sh->pings_in_pause,
			sh->worst);
	t_notes_print();
	CHECK(close(file) == 0);
	t_rmdir(dir);
	return T_PASS;
}
