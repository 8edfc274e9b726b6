// SPDX-License-Identifier: MIT
/*
 * Semantics of deferred calls: every check runs outside a segment (libc's
 * answer) and inside one (ours), and the two must agree.  Also: buffers
 * reused at once, send then close, sendfile offsets, a full table, per-fd
 * order with a direct call, transparency outside segments, and (with a
 * batching backend) that calls really are deferred.
 */
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "esca_test.h"

/* the bad arguments below are the point of this test */
#pragma GCC diagnostic ignored "-Wnonnull"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#pragma GCC diagnostic ignored "-Wstringop-overflow"

struct res {
	long ret;
	int err;
};

static bool in_seg;

static void seg_begin(bool seg)
{
	in_seg = seg;
	if (seg)
		ESCA_BATCH_START();
}

static void seg_end(void)
{
	if (in_seg)
		ESCA_BATCH_FLUSH();
	in_seg = false;
}

#define RUN(expr) ({ struct res r_; errno = 0; r_.ret = (long)(expr); r_.err = r_.ret < 0 ? errno : 0; r_; })

static void pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		FAIL("socketpair: %m");
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

/* Each bad-input case, run in a fresh set of fds. */
static struct res bad_case(int k, bool seg)
{
	int sv[2], p[2], closed;
	char buf[16] = "0123456789abcdef";
	struct iovec iov[2] = { { buf, 4 }, { buf, 4 } };
	struct res r = { 0, 0 };
	int v = 1;
	off_t *badoff = (off_t *)8;

	pair(sv);
	if (pipe(p) < 0)
		FAIL("pipe: %m");
	closed = dup(sv[0]);
	close(closed);
	seg_begin(seg);
	switch (k) {
	case 0: r = RUN(write(-1, buf, 4)); break;
	case 1: r = RUN(write(closed, buf, 4)); break;
	case 2: r = RUN(write(sv[0], NULL, 4)); break;
	case 3: r = RUN(write(sv[0], (void *)8, 4)); break;
	case 4: r = RUN(writev(sv[0], NULL, 2)); break;
	case 5: r = RUN(writev(sv[0], iov, IOV_MAX + 1)); break;
	case 6: r = RUN(writev(sv[0], iov, -1)); break;
	case 7: r = RUN(send(closed, buf, 4, 0)); break;
	case 8: r = RUN(send(p[1], buf, 4, 0)); break;		/* ENOTSOCK */
	case 9: r = RUN(send(sv[0], (void *)8, 4, 0)); break;
	case 10: r = RUN(close(-1)); break;
	case 11: r = RUN(close(closed)); break;
	case 12: r = RUN(shutdown(sv[0], 7)); break;
	case 13: r = RUN(shutdown(p[1], SHUT_WR)); break;	/* ENOTSOCK */
	case 14: r = RUN(shutdown(closed, SHUT_WR)); break;
	case 15: r = RUN(setsockopt(p[1], IPPROTO_TCP, TCP_CORK, &v, sizeof(v))); break;
	case 16: r = RUN(sendfile(sv[0], closed, NULL, 4)); break;
	case 17: r = RUN(sendfile(sv[0], p[0], badoff, 4)); break;
	case 18: r = RUN(sendmsg(sv[0], NULL, 0)); break;
	case 19: {	/* close twice */
		close(p[0]);
		r = RUN(close(p[0]));
		p[0] = -1;
		break;
	}
	case 20: {	/* write after close of the same fd */
		int d = dup(sv[0]);

		close(d);
		r = RUN(write(d, buf, 4));
		break;
	}
	}
	seg_end();
	close(sv[0]);
	close(sv[1]);
	close(p[1]);
	if (p[0] >= 0)
		close(p[0]);
	return r;
}

static void check_bad_input(void)
{
	for (int k = 0; k <= 20; k++) {
		struct res a = bad_case(k, false), b = bad_case(k, true);

		CHECK(a.ret == b.ret && a.err == b.err,
		      "case %d: libc gives %ld/%s, in a segment %ld/%s", k, a.ret, strerror(a.err),
		      b.ret, strerror(b.err));
	}
}

static size_t drain(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t r;

	while (got < cap && (r = read(fd, buf + got, cap - got)) > 0)
		got += (size_t)r;
	return got;
}

static void check_buffer_reuse_and_close(bool batching)
{
	int sv[2];
	char buf[64], out[256];
	size_t got;
	ssize_t r;

	pair(sv);
	ESCA_BATCH_START();
	strcpy(buf, "first");
	CHECK(write(sv[0], buf, 5) == 5, "write");
	memset(buf, 'X', sizeof(buf));		/* reused at once */
	strcpy(buf, "second");
	CHECK(send(sv[0], buf, 6, 0) == 6, "send");
	memset(buf, 'Y', sizeof(buf));
	if (batching) {
		r = read(sv[1], out, sizeof(out));
		CHECK(r < 0 && errno == EAGAIN, "data visible before the flush: calls not deferred");
	}
	CHECK(close(sv[0]) == 0, "close");
	ESCA_BATCH_FLUSH();
	got = drain(sv[1], out, sizeof(out));
	CHECK(got == 11 && !memcmp(out, "firstsecond", 11), "got %zu bytes '%.*s'", got,
	      (int)got, out);
	CHECK(read(sv[1], out, 1) == 0, "no EOF after send then close");
	close(sv[1]);
}

static void check_sendfile(void)
{
	char path[] = "/tmp/esca-sf-XXXXXX", out[64];
	int fd = mkstemp(path), sv[2];
	off_t off = 3;

	if (fd < 0 || write(fd, "abcdefghijklmnopqrstuvwxyz", 26) != 26)
		FAIL("temp file: %m");
	unlink(path);
	pair(sv);
	lseek(fd, 10, SEEK_SET);
	ESCA_BATCH_START();
	CHECK(sendfile(sv[0], fd, &off, 4) == 4, "sendfile with offset");
	CHECK(off == 7, "offset is %lld, want 7", (long long)off);
	CHECK(sendfile(sv[0], fd, NULL, 5) == 5, "sendfile without offset");
	ESCA_BATCH_FLUSH();
	CHECK(lseek(fd, 0, SEEK_CUR) == 15, "file position %lld, want 15",
	      (long long)lseek(fd, 0, SEEK_CUR));
	CHECK(drain(sv[1], out, 9) == 9 && !memcmp(out, "defgklmno", 9), "data '%.9s'", out);
	close(fd);
	close(sv[0]);
	close(sv[1]);
}

static void check_full_table_and_order(void)
{
	/* writes alternate between two sockets, so none merge: more entries
	 * than the table holds (the test runs with ESCA_TABLE_ENTRIES=64) */
	int a[2], b[2], n = 100;
	static char big[20000], out[2][40000];
	char msg[8];
	size_t got[2];
	unsigned long long rng = 7;

	pair(a);
	pair(b);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)t_rand(&rng);
	ESCA_BATCH_START();
	for (int i = 0; i < n; i++) {
		snprintf(msg, sizeof(msg), "%06d", i);
		CHECK(write(a[0], msg, 6) == 6, "write a %d", i);
		CHECK(write(b[0], msg, 6) == 6, "write b %d", i);
	}
	/* a call that runs directly (larger than ESCA_DEFER_MAX) must come
	 * after the pending ones on its fd */
	CHECK(write(a[0], big, sizeof(big)) == (ssize_t)sizeof(big), "big write");
	ESCA_BATCH_FLUSH();
	got[0] = drain(a[1], out[0], sizeof(out[0]));
	got[1] = drain(b[1], out[1], sizeof(out[1]));
	CHECK(got[0] == 6 * n + sizeof(big) && got[1] == 6 * (size_t)n, "got %zu and %zu bytes",
	      got[0], got[1]);
	for (int i = 0; i < n; i++) {
		snprintf(msg, sizeof(msg), "%06d", i);
		if (memcmp(out[0] + 6 * i, msg, 6) || memcmp(out[1] + 6 * i, msg, 6)) {
			FAIL("message %d lost or out of order", i);
			break;
		}
	}
	CHECK(!memcmp(out[0] + 6 * n, big, sizeof(big)), "direct write data out of order");
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

/* read() on a socket needs no flush (its directions are independent), but
 * after a pending close it must give EBADF as in program order. */
static void check_read_after_pending(bool batching)
{
	int sv[2];
	char out[8];

	pair(sv);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	ESCA_BATCH_START();
	CHECK(write(sv[0], "abc", 3) == 3, "write");
	CHECK(read(sv[0], out, sizeof(out)) < 0 && errno == EAGAIN, "read of an empty socket");
	if (batching)
		CHECK(read(sv[1], out, sizeof(out)) < 0 && errno == EAGAIN,
		      "a read on the writing socket flushed its pending write");
	CHECK(close(sv[0]) == 0, "close");
	CHECK(read(sv[0], out, sizeof(out)) < 0 && errno == EBADF,
	      "read after a pending close: %s", strerror(errno));
	ESCA_BATCH_FLUSH();
	CHECK(drain(sv[1], out, sizeof(out)) == 3 && !memcmp(out, "abc", 3), "data");
	close(sv[1]);
}

static void check_transparent_outside(void)
{
	int sv[2];
	char out[8];

	pair(sv);
	CHECK(write(sv[0], "now", 3) == 3, "write");
	CHECK(read(sv[1], out, sizeof(out)) == 3, "outside a segment the write must be immediate");
	CHECK(close(sv[0]) == 0 && read(sv[1], out, 1) == 0, "outside a segment close is immediate");
	close(sv[1]);
}

int main(void)
{
	const char *be = getenv("ESCA_BACKEND");
	bool batching = be && strcmp(be, "off") != 0;

	ESCA_INIT();
	check_bad_input();
	check_buffer_reuse_and_close(batching);
	check_sendfile();
	check_full_table_and_order();
	check_read_after_pending(batching);
	check_transparent_outside();
	printf("ok\n");
	return T_PASS;
}
