// SPDX-License-Identifier: MIT
/*
 * Signals during segments, with and without SA_RESTART: the program's
 * handler runs, its blocking call restarts or fails with EINTR exactly as
 * without libesca, and the byte stream (the segment's writes and the
 * handler's) comes out in program order.  A peer process sends each signal
 * once the program is blocked in the call, seen in /proc/PID/syscall, so the
 * sequence is the same on every run.
 *
 *   t_signals restart|norestart ROUNDS
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "esca_test.h"

struct shared {
	_Atomic int round;	/* the round the program is in */
	_Atomic int handled;	/* handler runs */
};

static struct shared *sh;
static int sock;		/* the program's end of the stream */

static void on_signal(int sig)
{
	int saved = errno;

	(void)sig;
	if (write(sock, "H", 1) != 1)
		_exit(4);
	atomic_fetch_add(&sh->handled, 1);
	errno = saved;
}

/* Whether pid is blocked in syscall nr on fd. */
static bool blocked_in(pid_t pid, long nr, int fd)
{
	char path[64], buf[256];
	long n, a0;
	FILE *f;
	bool in;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	in = fgets(buf, sizeof(buf), f) && sscanf(buf, "%ld %lx", &n, &a0) == 2 &&
	     (n == nr || (nr == SYS_epoll_wait && n == SYS_epoll_pwait)) && a0 == fd;
	fclose(f);
	return in;
}

static void pause_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

/* For each round: wait until the program blocks, signal it, wait until the
 * handler ran, then give the blocked call its byte. */
static void peer(pid_t prog, int rounds, int data_w, int rd, int ep)
{
	for (int r = 0; r < rounds; r++) {
		bool epoll = r & 1;

		while (atomic_load(&sh->round) != r ||
		       !blocked_in(prog, epoll ? SYS_epoll_wait : SYS_read, epoll ? ep : rd))
			pause_us(200);
		pause_us(2000);	/* asleep in it, not just entering */
		kill(prog, SIGUSR1);
		while (atomic_load(&sh->handled) != r + 1)
			pause_us(200);
		if (write(data_w, "x", 1) != 1)
			_exit(3);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	bool restart = argc > 1 && !strcmp(argv[1], "restart");
	int rounds = argc > 2 ? atoi(argv[2]) : 6, sv[2], data[2], ep, status;
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct sigaction sa;
	char buf[256], c;
	pid_t pid, self = getpid();
	ssize_t n;
	long r;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(data) < 0)
		FAIL("setup: %m");
	sock = sv[0];
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, data[0], &ev) < 0)
		FAIL("epoll: %m");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	ESCA_INIT();
	pid = fork();
	if (pid < 0)
		FAIL("fork: %m");
	if (pid == 0)
		peer(self, rounds, data[1], data[0], ep);

	for (int round = 0; round < rounds; round++) {
		ESCA_BATCH_START();
		if (write(sock, "a", 1) != 1)
			FAIL("write: %m");
		atomic_store(&sh->round, round);
		if (round & 1) {
			/* epoll_wait never restarts: EINTR with or without
			 * SA_RESTART, then the byte */
			while ((r = epoll_wait(ep, &out, 1, -1)) < 0 && errno == EINTR)
				t_say("round %d: epoll_wait: EINTR\n", round);
			t_say("round %d: epoll_wait: %ld\n", round, r);
		}
		while ((r = read(data[0], &c, 1)) < 0 && errno == EINTR)
			t_say("round %d: read: EINTR\n", round);
		t_say("round %d: read: %ld '%c'\n", round, r, r == 1 ? c : '?');
		if (write(sock, "b", 1) != 1)
			FAIL("write: %m");
		ESCA_BATCH_FLUSH();
	}
	if (waitpid(pid, &status, 0) != pid || status)
		FAIL("peer: %m");
	shutdown(sock, SHUT_WR);
	t_say("handler ran %d times; the stream: ", atomic_load(&sh->handled));
	while ((n = read(sv[1], buf, sizeof(buf))) > 0)
		t_say("%.*s", (int)n, buf);
	t_say("\n");
	return T_PASS;
}
