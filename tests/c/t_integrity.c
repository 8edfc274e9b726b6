// SPDX-License-Identifier: MIT
/*
 * Byte-exact integrity over many TCP loopback connections.
 *
 *   t_integrity NCONN BYTES_PER_CONN SEED [SNDBUF SLOW_US]
 *
 * An epoll server (this thread) sends each connection a deterministic
 * stream in messages of random size and random call (write, writev, send,
 * sendmsg, sendfile with and without an offset pointer), overwriting its
 * buffer right after each call, inside batching segments; then shutdown
 * and close.  Client threads read until EOF and compare every byte.
 * SNDBUF shrinks the server's send buffers and SLOW_US makes the clients
 * sleep between reads, forcing short writes that libesca must complete.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "esca_test.h"

#define MAXCONN 256
#define FILESZ (1 << 20)

static int nconn, slow_us, port;
static unsigned long long total;
static unsigned char *filedata;	/* t_pattern(0, q) for q < FILESZ */

struct conn {
	int fd, filefd;
	unsigned long long sent;
	off_t fpos;		/* file position of filefd (sendfile without offset) */
};

/* Connection c's stream is the file's content starting at c * 4099 (mod
 * FILESZ), so that sendfile can serve any part of it. */
static unsigned char expected(unsigned c, unsigned long long p)
{
	return filedata[(p + c * 4099ULL) % FILESZ];
}

static void *client(void *arg)
{
	unsigned c = (unsigned)(uintptr_t)arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	unsigned char buf[65536];
	unsigned long long got = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		FAIL("client connect: %m");
	/* tell the server who we are */
	if (write(fd, &c, sizeof(c)) != sizeof(c))
		FAIL("client hello: %m");
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != expected(c, got + i))
				FAIL("conn %u byte %llu: got %u want %u", c, got + i, buf[i],
				     expected(c, got + i));
		got += r;
		if (slow_us)
			usleep(slow_us);
	}
	if (r < 0)
		FAIL("client read: %m");
	if (got != total)
		FAIL("conn %u received %llu of %llu bytes", c, got, total);
	close(fd);
	return NULL;
}

/* Sends the next message of c; returns bytes accepted (may be short for
 * calls that run directly), 0 when the socket would block. */
static ssize_t send_some(struct conn *cn, unsigned c, unsigned long long *rng)
{
	static unsigned char buf[262144];
	unsigned long long left = total - cn->sent;
	size_t len = 1 + t_rand(rng) % (t_rand(rng) % 4 ? 3000 : 100000);
	unsigned long long pos = (cn->sent + c * 4099ULL) % FILESZ;
	ssize_t r;

	if (len > left)
		len = left;
	if (pos + len > FILESZ)
		len = FILESZ - pos;
	for (size_t i = 0; i < len; i++)
		buf[i] = expected(c, cn->sent + i);
	switch (t_rand(rng) % 6) {
	case 0:
		r = write(cn->fd, buf, len);
		break;
	case 1: {
		size_t a = len / 3, b = len / 3;
		struct iovec iov[3] = { { buf, a }, { buf + a, b }, { buf + a + b, len - a - b } };

		r = writev(cn->fd, iov, 3);
		break;
	}
	case 2:
		r = send(cn->fd, buf, len, MSG_NOSIGNAL);
		break;
	case 3: {
		struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

		r = sendmsg(cn->fd, &mh, 0);
		break;
	}
	case 4: {
		off_t off = (off_t)pos, before = off;

		r = sendfile(cn->fd, cn->filefd, &off, len);
		if (r >= 0 && off != before + r)
			FAIL("sendfile offset %lld, want %lld", (long long)off,
			     (long long)(before + r));
		break;
	}
	default:
		/* without an offset: the file position must be where we want */
		if (cn->fpos != (off_t)pos) {
			if (lseek(cn->filefd, (off_t)pos, SEEK_SET) < 0)
				FAIL("lseek: %m");
		}
		r = sendfile(cn->fd, cn->filefd, NULL, len);
		cn->fpos = (off_t)pos + (r > 0 ? r : 0);
		break;
	}
	memset(buf, 0xA5, len);	/* the caller reuses its buffer at once */
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r < 0)
		FAIL("send kind: %m");
	return r;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	static struct conn conns[MAXCONN];
	pthread_t th[MAXCONN];
	struct epoll_event ev, evs[64];
	unsigned long long rng;
	int lfd, ep, done = 0, sndbuf = 0, one = 1;
	char path[] = "/tmp/esca-integrity-XXXXXX";
	int tmp;

	if (argc < 4)
		return 2;
	nconn = atoi(argv[1]);
	total = strtoull(argv[2], NULL, 0);
	rng = strtoull(argv[3], NULL, 0);
	if (argc > 5) {
		sndbuf = atoi(argv[4]);
		slow_us = atoi(argv[5]);
	}
	if (nconn < 1 || nconn > MAXCONN)
		return 2;

	filedata = malloc(FILESZ);
	for (unsigned q = 0; q < FILESZ; q++)
		filedata[q] = t_pattern(0, q);
	tmp = mkstemp(path);
	if (tmp < 0 || write(tmp, filedata, FILESZ) != FILESZ)
		FAIL("temp file: %m");
	close(tmp);

	ESCA_INIT();
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 512) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &slen) < 0)
		FAIL("listen: %m");
	port = ntohs(sa.sin_port);
	for (int c = 0; c < nconn; c++)
		pthread_create(&th[c], NULL, client, (void *)(uintptr_t)c);
	for (int k = 0; k < nconn; k++) {
		unsigned c;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0 || read(fd, &c, sizeof(c)) != sizeof(c) || c >= (unsigned)nconn)
			FAIL("accept: %m");
		if (sndbuf)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		fcntl(fd, F_SETFL, O_NONBLOCK);
		conns[c].fd = fd;
		conns[c].filefd = open(path, O_RDONLY | O_CLOEXEC);
		if (conns[c].filefd < 0)
			FAIL("open: %m");
	}
	unlink(path);
	ep = epoll_create1(EPOLL_CLOEXEC);
	for (int c = 0; c < nconn; c++) {
		ev.events = EPOLLOUT;
		ev.data.u32 = (unsigned)c;
		epoll_ctl(ep, EPOLL_CTL_ADD, conns[c].fd, &ev);
	}
	while (done < nconn) {
		int n = epoll_wait(ep, evs, 64, 10000);

		if (n <= 0)
			FAIL("epoll_wait (n=%d): %m", n);
		ESCA_BATCH_START();
		for (int i = 0; i < n; i++) {
			unsigned c = evs[i].data.u32;
			struct conn *cn = &conns[c];

			for (int burst = 0; burst < 4 && cn->sent < total; burst++) {
				ssize_t r = send_some(cn, c, &rng);

				if (r == 0)
					break;
				cn->sent += (unsigned long long)r;
			}
			if (cn->sent == total) {
				epoll_ctl(ep, EPOLL_CTL_DEL, cn->fd, NULL);
				if (shutdown(cn->fd, SHUT_WR) < 0)
					FAIL("shutdown: %m");
				if (close(cn->fd) < 0 || close(cn->filefd) < 0)
					FAIL("close: %m");
				cn->sent++;	/* done marker */
				done++;
			}
		}
		ESCA_BATCH_FLUSH();
	}
	for (int c = 0; c < nconn; c++)
		pthread_join(th[c], NULL);
	printf("ok: %d connections x %llu bytes\n", nconn, total);
	return T_PASS;
}
