/* SPDX-License-Identifier: MIT */
/*
 * A tiny event-loop-shaped program with the ESCA hooks, for the autopkgtest
 * "libesca" and "tools" (debian/tests/control).  Built two ways:
 *
 *   cc hooked.c                          weak hooks (what a patched server does):
 *                                        runs the plain calls without libesca and
 *                                        batches them with LD_PRELOAD=libesca.so.0
 *   cc -DESCA_STRONG_HOOKS hooked.c -lesca   linked to libesca (libesca-dev's
 *                                        libesca.so): always batches
 *
 * usage: hooked DIR [wait]
 *
 * Four segments (batch_start() ... batch_flush()), each writing and sending
 * to its own connected AF_UNIX stream socket (deferred by libesca) and
 * appending to DIR/log through a file it opens and closes (the write runs at
 * once, the close is deferred); the last one also shuts the socket down and
 * closes it.  Between segments it reads what arrived on the other end and
 * prints it, then prints DIR/log.  The output on stdout is the same with or
 * without libesca, byte for byte.  With "wait" it runs 40 segments (libesca
 * publishes a thread's counters every 32 flushes, and at exit), then makes
 * DIR/ready and reads stdin until EOF: esca-stat reads its live counters
 * meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <esca.h>

#define ROUNDS 4
#define ROUNDS_WAIT 40
#define WRITES 5

static void die(const char *what)
{
	fprintf(stderr, "hooked: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Whether some loaded object defines the hooks (always, linked to libesca). */
static int hooked(void)
{
#ifdef ESCA_STRONG_HOOKS
	return 1;
#else
	return esca_init != NULL && batch_start != NULL && batch_flush != NULL;
#endif
}

static void put(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write stdout");
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Reads exactly len bytes (len 0: until EOF) from fd and prints them. */
static size_t drain(int fd, size_t len)
{
	char buf[4096];
	size_t got = 0;

	while (len == 0 || got < len) {
		size_t want = sizeof(buf);
		ssize_t n;

		if (len != 0 && len - got < want)
			want = len - got;
		n = read(fd, buf, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read socket");
		}
		if (n == 0)
			break;
		put(buf, (size_t)n);
		got += (size_t)n;
	}
	return got;
}

int main(int argc, char **argv)
{
	char path[4096], line[128];
	int sv[2], round, rounds;

	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "wait") != 0)) {
		fprintf(stderr, "usage: hooked DIR [wait]\n");
		return 2;
	}
	if (hooked() && esca_init() != 0)
		die("esca_init");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		die("socketpair");
	snprintf(path, sizeof(path), "%s/log", argv[1]);
	rounds = argc == 3 ? ROUNDS_WAIT : ROUNDS;

	for (round = 0; round < rounds; round++) {
		size_t sent = 0;
		struct iovec iov[2];
		int i, fd, len;

		if (hooked())
			batch_start();
		for (i = 0; i < WRITES; i++) {
			len = snprintf(line, sizeof(line), "round %d write %d\n", round, i);
			if (write(sv[0], line, (size_t)len) != len)
				die("write");
			sent += (size_t)len;
		}
		len = snprintf(line, sizeof(line), "round %d send\n", round);
		if (send(sv[0], line, (size_t)len, MSG_NOSIGNAL) != len)
			die("send");
		sent += (size_t)len;
		iov[0].iov_base = "round ";
		iov[0].iov_len = 6;
		iov[1].iov_base = "writev\n";
		iov[1].iov_len = 7;
		if (writev(sv[0], iov, 2) != 13)
			die("writev");
		sent += 13;
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			die("open log");
		len = snprintf(line, sizeof(line), "log %d (fd %d)\n", round, fd);
		if (write(fd, line, (size_t)len) != len)
			die("write log");
		if (close(fd) != 0)
			die("close log");
		if (round == rounds - 1) {
			if (shutdown(sv[0], SHUT_WR) != 0)
				die("shutdown");
			if (close(sv[0]) != 0)
				die("close");
		}
		if (hooked() && batch_flush() < 0)
			die("batch_flush");
		if (drain(sv[1], sent) != sent) {
			errno = EPROTO;
			die("short read");
		}
	}
	if (drain(sv[1], 0) != 0) {
		errno = EPROTO;
		die("data after shutdown");
	}
	close(sv[1]);

	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		char buf[4096];
		ssize_t n;

		if (fd < 0)
			die("open log");
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			put(buf, (size_t)n);
		close(fd);
	}

	if (argc == 3) {
		char c;
		int fd;

		snprintf(path, sizeof(path), "%s/ready", argv[1]);
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || close(fd) != 0)
			die("ready");
		while (read(STDIN_FILENO, &c, 1) > 0)
			;
	}
	return 0;
}
