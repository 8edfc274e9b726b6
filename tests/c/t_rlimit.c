// SPDX-License-Identifier: MIT
/*
 * RLIMIT_NOFILE set to exactly what the program needs: its own opens still
 * succeed, and the first one too many fails with EMFILE, as without
 * libesca.
 *
 *   t_rlimit soft   soft limit = what the program needs (hard limit as it
 *                   was), set after libesca's set-up
 *   t_rlimit hard   soft and hard limits = what the program needs
 *   t_rlimit full   the program uses every fd under its limit before its
 *                   first segment: libesca finds no fd to set up with, says
 *                   nothing, and leaves the wait that follows alone
 */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "esca_test.h"

#define OPENS 4

/* A segment of three writes; the hooks leave errno alone (without libesca
 * they do nothing). */
static void segment(int fd, const char *what)
{
	errno = ENOTRECOVERABLE;
	ESCA_BATCH_START();
	if (errno != ENOTRECOVERABLE)
		t_say("batch_start() changed errno to %s\n", strerror(errno));
	for (int i = 0; i < 3; i++)
		if (write(fd, what, strlen(what)) != (ssize_t)strlen(what))
			FAIL("write: %m");
	errno = ENOTRECOVERABLE;
	ESCA_BATCH_FLUSH();
	if (errno != ENOTRECOVERABLE)
		t_say("batch_flush() changed errno to %s\n", strerror(errno));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "soft";
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct rlimit rl;
	int sv[2], p[2], ep, fd, i;
	char buf[256];
	ssize_t n;

	closefrom(3);		/* whatever the caller left open: the count is exact */
	ESCA_INIT();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
		FAIL("socketpair: %m");
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) < 0)
		FAIL("epoll: %m");
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		FAIL("getrlimit: %m");
	if (strcmp(mode, "full"))
		segment(sv[0], "a");	/* libesca sets up here */
	/* 0, 1, 2, the pair, the pipe, epoll, and OPENS files */
	rl.rlim_cur = (rlim_t)ep + 1 + OPENS;
	if (!strcmp(mode, "hard"))
		rl.rlim_max = rl.rlim_cur;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		FAIL("setrlimit: %m");
	for (i = 0; i < OPENS; i++) {
		fd = open("/dev/null", O_RDONLY);
		t_say("open %d: %d%s\n", i, fd, fd < 0 ? strerror(errno) : "");
	}
	segment(sv[0], "b");
	/* a wait right after the segment: nothing may cut it short */
	t_say("epoll_wait: %d\n", epoll_wait(ep, &out, 1, 50));
	fd = open("/dev/null", O_RDONLY);
	t_say("one more: %d (%s)\n", fd, fd < 0 ? strerror(errno) : "opened");
	segment(sv[0], "c");
	close(sv[0]);
	while ((n = read(sv[1], buf, sizeof(buf))) > 0)
		t_say("the peer read '%.*s'\n", (int)n, buf);
	return T_PASS;
}
