// SPDX-License-Identifier: MIT
/*
 * Blocking waits of the program, each ended by a timer-driven peer (a forked
 * child that sleeps, then makes the event happen); no signal is sent
 * anywhere.  Whatever libesca does meanwhile -- set-up right before the
 * wait, a flush, a helper thread that batches and exits, the peer (a forked
 * child) dropping its copy of our state and batching on its own -- must not
 * make the wait return early or fail (issue 10: a ring torn down in a live
 * thread made epoll_wait() fail with EINTR).
 *
 *   t_waits KIND ROUNDS   KIND: epoll_wait epoll_pwait poll select nanosleep
 *                         read accept futex
 *
 * One line per round on stdout; exit 0 when every wait ended by its event.
 */
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "esca_test.h"

#define DELAY_MS 30

static const char *kind;
static int ev[2];			/* the peer writes one byte here */
static int listener;
static struct sockaddr_un addr;
static _Atomic uint32_t *word;		/* futex word, shared with the peer */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}


static void *helper(void *arg)
{
	sleep_ms(DELAY_MS / 3);
	t_segment(*(int *)arg);
	return NULL;		/* the thread exits while main waits */
}

static void peer(int sink)
{
	t_segment(sink);		/* the child's own backend, its own table */
	sleep_ms(DELAY_MS);
	if (!strcmp(kind, "accept")) {
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			_exit(2);
		close(s);
	} else if (!strcmp(kind, "futex")) {
		atomic_store(word, 1);
		syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
	} else if (write(ev[1], "e", 1) != 1) {
		_exit(3);
	}
	exit(0);		/* destructors run: flush and teardown paths */
}

/* The wait; returns what it returned, errno in *err. */
static long wait_once(int ep)
{
	struct epoll_event out;
	struct pollfd pfd = { .fd = ev[0], .events = POLLIN };
	struct timespec ts = { 0, DELAY_MS * 1000000L };
	fd_set set;
	char c;
	long r;

	if (!strcmp(kind, "epoll_wait"))
		return epoll_wait(ep, &out, 1, 10000);
	if (!strcmp(kind, "epoll_pwait"))
		return epoll_pwait(ep, &out, 1, 10000, NULL);
	if (!strcmp(kind, "poll"))
		return poll(&pfd, 1, 10000);
	if (!strcmp(kind, "select")) {
		struct timeval tv = { 10, 0 };

		FD_ZERO(&set);
		FD_SET(ev[0], &set);
		return select(ev[0] + 1, &set, NULL, NULL, &tv);
	}
	if (!strcmp(kind, "nanosleep"))
		return nanosleep(&ts, NULL);
	if (!strcmp(kind, "read"))
		return read(ev[0], &c, 1);
	if (!strcmp(kind, "accept")) {
		r = accept(listener, NULL, NULL);
		if (r >= 0)
			close((int)r);
		return r >= 0 ? 1 : r;
	}
	/* futex: a return with the word unchanged is a wake-up for nothing */
	r = syscall(SYS_futex, word, FUTEX_WAIT, 0, NULL, NULL, 0);
	if (r < 0 && errno == EAGAIN)
		r = 0;
	return r == 0 && atomic_load(word) ? 1 : r == 0 ? -2 : r;
}

int main(int argc, char **argv)
{
	struct epoll_event e = { .events = EPOLLIN };
	int rounds = argc > 2 ? atoi(argv[2]) : 3, ep, sink[2], bad = 0;

	kind = argc > 1 ? argv[1] : "epoll_wait";
	word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (word == MAP_FAILED)
		FAIL("mmap: %m");
	/* where the segments write: a pipe nobody reads (small writes) */
	if (pipe2(sink, O_NONBLOCK) < 0 || pipe(ev) < 0)
		FAIL("pipe: %m");
	listener = socket(AF_UNIX, SOCK_STREAM, 0);
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "esca-t_waits-%d", (int)getpid());
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(listener, 4) < 0)
		FAIL("listen: %m");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev[0], &e) < 0)
		FAIL("epoll: %m");

	/* set-up right before the first wait: what it leaves behind (a
	 * throwaway ring's teardown) would land in that wait */
	ESCA_INIT();
	for (int round = 0; round < rounds; round++) {
		pthread_t th;
		int64_t t0 = now_ns(), ms;
		long r;
		int err;
		pid_t pid;
		char c;

		atomic_store(word, 0);
		pid = fork();
		if (pid < 0)
			FAIL("fork: %m");
		if (pid == 0)
			peer(sink[1]);
		t_segment(sink[1]);
		if (pthread_create(&th, NULL, helper, &sink[1]))
			FAIL("pthread_create: %m");
		errno = 0;
		r = wait_once(ep);
		err = errno;
		ms = (now_ns() - t0) / 1000000;
		if (r > 0 && (!strcmp(kind, "epoll_wait") || !strcmp(kind, "epoll_pwait") ||
			      !strcmp(kind, "poll") || !strcmp(kind, "select")) &&
		    read(ev[0], &c, 1) != 1)
			FAIL("drain: %m");
		pthread_join(th, NULL);
		if (waitpid(pid, NULL, 0) != pid)
			FAIL("waitpid: %m");
		if ((!strcmp(kind, "nanosleep") ? r == 0 : r == 1) && ms >= DELAY_MS - 1) {
			t_say("%s round %d: ended by its event\n", kind, round);
		} else {
			t_say("%s round %d: returned %ld (%s) after %lld ms\n", kind, round, r,
			      strerror(err), (long long)ms);
			bad++;
		}
		/* drain what the segments wrote */
		while (read(sink[0], &c, 1) == 1)
			;
	}
	return bad ? T_FAIL : T_PASS;
}
