/*
 * Every allowlisted call runs with its real result: write, writev, sendto,
 * sendmsg, sendfile (with an offset pointer), setsockopt, shutdown, close.
 * Stops: after a negative result, after ESCA_ENTRY_EXPECT mismatches; bad
 * user pointers in arguments give the syscall's own -EFAULT, nothing worse.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "esca_test.h"

static void expect_read(int fd, const char *want, size_t n)
{
	char buf[256];
	ssize_t r = read(fd, buf, sizeof(buf));

	if (r != (ssize_t)n || memcmp(buf, want, n))
		FAIL("read %zd bytes '%.*s', expected '%.*s'", r, (int)(r > 0 ? r : 0), buf,
		     (int)n, want);
}

static void expect_done(const struct esca_entry *e, long long res, int i)
{
	if (e->status != ESCA_ST_DONE || e->result != res)
		FAIL("entry %d: status %u result %lld, expected DONE %lld", i, e->status,
		     (long long)e->result, res);
}

int main(void)
{
	int fd = esca_open();
	struct esca_entry *t = table_alloc(64);
	int p[2], sv[2], tcp, one = 1, file, closeme;
	struct iovec iov[2] = { { "ab", 2 }, { "cde", 3 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	char tmpl[] = "/tmp/esca-sendfile-XXXXXX";
	off_t off = 2;
	socklen_t len = sizeof(one);
	int n = 0;

	CHECK(esca_register(fd, t, 64) == 0);
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK((tcp = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	CHECK((file = mkstemp(tmpl)) >= 0);
	unlink(tmpl);
	CHECK(write(file, "0123456789", 10) == 10);
	CHECK((closeme = dup(p[0])) >= 0);

	entry_set(&t[n++], SYS_write, p[1], (uintptr_t)"hello", 5, 0);
	entry_set(&t[n++], SYS_writev, p[1], (uintptr_t)iov, 2, 0);
	entry_set(&t[n++], SYS_sendto, sv[0], (uintptr_t)"to", 2, 0);
	entry_set(&t[n++], SYS_sendmsg, sv[0], (uintptr_t)&mh, 0, 0);
	entry_set(&t[n++], SYS_sendfile, sv[0], file, (uintptr_t)&off, 3);
	entry_set(&t[n++], SYS_setsockopt, tcp, IPPROTO_TCP, TCP_NODELAY, (uintptr_t)&one);
	t[n - 1].args[4] = sizeof(one);
	entry_set(&t[n++], SYS_shutdown, sv[0], SHUT_WR, 0, 0);
	entry_set(&t[n++], SYS_close, closeme, 0, 0, 0);
	t[0].flags = ESCA_ENTRY_EXPECT;
	t[0].expect = 5;

	if (esca_flush(fd, 0, n) != n)
		FAIL("flush of %d calls did not run them all", n);
	expect_done(&t[0], 5, 0);
	expect_done(&t[1], 5, 1);
	expect_done(&t[2], 2, 2);
	expect_done(&t[3], 5, 3);
	expect_done(&t[4], 3, 4);
	expect_done(&t[5], 0, 5);
	expect_done(&t[6], 0, 6);
	expect_done(&t[7], 0, 7);
	expect_read(p[0], "helloabcde", 10);
	expect_read(sv[1], "toabcde234", 10);
	if (off != 5)
		FAIL("sendfile offset %lld, expected 5", (long long)off);
	{
		char c;
		CHECK(read(sv[1], &c, 1) == 0);	/* shutdown(SHUT_WR) seen */
	}
	one = 0;
	CHECK(getsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, &len) == 0 && one);
	CHECK_ERR(fcntl(closeme, F_GETFD), EBADF);

	/* A negative result stops the flush after that entry. */
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"A", 1, 0);
	entry_set(&t[1], SYS_close, 999999, 0, 0, 0);
	entry_set(&t[2], SYS_write, p[1], (uintptr_t)"B", 1, 0);
	t[2].status = ESCA_ST_QUEUED;
	if (esca_flush(fd, 0, 3) != 2)
		FAIL("flush did not stop after -EBADF");
	expect_done(&t[1], -EBADF, 1);
	if (t[2].status != ESCA_ST_QUEUED)
		FAIL("entry after a failed one ran");
	expect_read(p[0], "A", 1);

	/* ESCA_ENTRY_EXPECT: a result other than expect stops the flush too. */
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"xyz", 3, 0);
	t[0].flags = ESCA_ENTRY_EXPECT;
	t[0].expect = 4;
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"B", 1, 0);
	t[1].status = ESCA_ST_QUEUED;
	if (esca_flush(fd, 0, 2) != 1)
		FAIL("flush did not stop after a result other than expect");
	expect_done(&t[0], 3, 0);
	if (t[1].status != ESCA_ST_QUEUED)
		FAIL("entry after an EXPECT mismatch ran");
	expect_read(p[0], "xyz", 3);

	/* Bad pointers inside arguments: the syscall's own -EFAULT. */
	entry_set(&t[0], SYS_write, p[1], 0, 5, 0);
	entry_set(&t[1], SYS_write, p[1], 0xffffffff81000000ULL, 16, 0);
	entry_set(&t[2], SYS_writev, p[1], 0xffff888000000000ULL, 2, 0);
	entry_set(&t[3], SYS_sendmsg, sv[1], 0x10, 0, 0);
	entry_set(&t[4], SYS_sendfile, p[1], file, 0xffffffffff600000ULL, 1);
	entry_set(&t[5], SYS_setsockopt, tcp, IPPROTO_TCP, TCP_NODELAY, 0xffffffff81000000ULL);
	t[5].args[4] = 4;
	for (int i = 0; i < 6; i++) {
		long r = esca_flush(fd, i, 1);

		if (r != 1 || t[i].status != ESCA_ST_DONE || t[i].result != -EFAULT)
			FAIL("bad pointer in entry %d: flush %ld status %u result %lld", i, r,
			     t[i].status, (long long)t[i].result);
	}
	/* Slices: only [first, first + count) runs. */
	for (int i = 0; i < 8; i++) {
		entry_set(&t[i], SYS_write, p[1], (uintptr_t)"0123456789abcdef" + i, 1, 0);
		t[i].status = ESCA_ST_QUEUED;
	}
	CHECK(esca_flush(fd, 3, 4) == 4);
	for (int i = 0; i < 8; i++)
		if ((t[i].status == ESCA_ST_DONE) != (i >= 3 && i < 7))
			FAIL("slice [3,7): entry %d status %u", i, t[i].status);
	expect_read(p[0], "3456", 4);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
