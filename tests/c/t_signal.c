// SPDX-License-Identifier: MIT
/* A signal handler that writes while the interrupted code is recording
 * (nginx logs from its signal handler): neither stream may be corrupted.
 * The handler's writes go to their own pipe, the loop's to a socket. */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "esca_test.h"

static int sigpipe_w;
static volatile sig_atomic_t fired;

static void on_alarm(int sig)
{
	int saved = errno;

	(void)sig;
	if (write(sigpipe_w, "S", 1) == 1)
		fired++;
	errno = saved;
}

int main(void)
{
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	struct sigaction sa;
	int sv[2], p[2], big = 1 << 22;
	static unsigned char buf[64], got[1 << 22];
	unsigned long long pos = 0, n = 0;
	long sig_bytes = 0;
	ssize_t r;

	ESCA_INIT();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
		FAIL("setup: %m");
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	sigpipe_w = p[1];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);

	for (int seg = 0; seg < 20000; seg++) {
		ESCA_BATCH_START();
		for (int k = 0; k < 3; k++) {
			for (size_t i = 0; i < sizeof(buf); i++)
				buf[i] = t_pattern(1, pos + i);
			if (write(sv[0], buf, sizeof(buf)) != sizeof(buf))
				FAIL("write: %m");
			pos += sizeof(buf);
		}
		ESCA_BATCH_FLUSH();
		while ((r = read(sv[1], got, sizeof(got))) > 0) {
			for (ssize_t i = 0; i < r; i++)
				if (got[i] != t_pattern(1, n + i))
					FAIL("byte %llu differs", n + i);
			n += (unsigned long long)r;
		}
		while ((r = read(p[0], got, 4096)) > 0) {
			for (ssize_t i = 0; i < r; i++)
				CHECK(got[i] == 'S', "signal pipe byte %ld", sig_bytes + i);
			sig_bytes += r;
		}
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	while ((r = read(p[0], got, 4096)) > 0)
		sig_bytes += r;
	CHECK(n == pos, "socket: %llu of %llu bytes", n, pos);
	CHECK(sig_bytes == fired, "signal pipe: %ld of %d bytes", sig_bytes, (int)fired);
	CHECK(fired > 10, "only %d signals fired", (int)fired);
	printf("ok: %d signals\n", (int)fired);
	return T_PASS;
}
