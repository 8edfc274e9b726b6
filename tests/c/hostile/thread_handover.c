// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 6 (thread hand-off of an fd): thread A serves a
 * TCP connection in an event loop (20 iterations of epoll_wait -> segment
 * -> read -> write -> flush, so that a libesca that learns to carry its
 * flushes has learnt it); its last iteration answers "A's data" and hands
 * the fd to thread B (mutex + condition variable).  B closes it,
 * opens a log file, which takes the same number, and writes a line to it.
 *
 *   thread_handover segment   A's segment is still open during B's close
 *                             and open; A flushes after B is done
 *   thread_handover flushed   A calls batch_flush() before handing over
 *
 * A's data must reach the socket's peer before its EOF, and the log holds
 * only B's line.  (The program is called thread_handover, not
 * thread_handoff: test ids are selected with -k off.)  Without libesca it
 * prints:
 *
 *   B's open() took the socket's number: yes
 *   peer got: "A's data\n"
 *   log: "B's line\n"
 */
#include "esca_test.h"

#define LOOPS 20

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int handed = -1, logfd = -1, b_done;
static const char *dir;

static void *thread_b(void *arg)
{
	int fd;

	(void)arg;
	pthread_mutex_lock(&mu);
	while (handed < 0)
		pthread_cond_wait(&cv, &mu);
	fd = handed;
	pthread_mutex_unlock(&mu);
	t_fill_below(fd);
	CHECK(close(fd) == 0);
	logfd = open(t_path(dir, "log"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(logfd >= 0);
	t_note("B's open() took the socket's number: %s\n", logfd == fd ? "yes" : "no");
	CHECK(write(logfd, "B's line\n", 9) == 9);
	pthread_mutex_lock(&mu);
	b_done = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return NULL;
}

struct peer_out {
	size_t len;
	char data[256];
};

static int peer_fd;

static void peer(void *arg)
{
	struct peer_out *out = arg;
	char c;
	ssize_t r;

	for (int i = 0; i < LOOPS; i++) {
		CHECK(write(peer_fd, "p", 1) == 1);
		if (i < LOOPS - 1)
			CHECK(read(peer_fd, &c, 1) == 1 && c == 'r');
	}
	while ((r = read(peer_fd, out->data + out->len, sizeof(out->data) - 1 - out->len)) > 0)
		out->len += (size_t)r;
	CHECK(r == 0, "read to EOF");
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "segment";
	struct peer_out *out = t_shared(sizeof(*out));
	struct epoll_event ev = { .events = EPOLLIN };
	int s, ep, flushed = !strcmp(variant, "flushed");
	pthread_t b;
	pid_t pid;

	CHECK(flushed || !strcmp(variant, "segment"), "variant %s", variant);
	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();
	t_tcp_pair(&s, &peer_fd);
	pid = t_spawn(peer, out, 1, peer_fd);
	close(peer_fd);
	t_nonblock(s);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);
	CHECK(pthread_create(&b, NULL, thread_b, NULL) == 0);

	t_doing = "in the event loop";
	for (int i = 0; i < LOOPS; i++) {
		struct epoll_event got;
		char c;

		CHECK(epoll_wait(ep, &got, 1, -1) == 1);
		ESCA_BATCH_START();
		CHECK(read(s, &c, 1) == 1 && c == 'p');
		if (i < LOOPS - 1) {
			CHECK(write(s, "r", 1) == 1);
			ESCA_BATCH_FLUSH();
		}
	}
	/* the last iteration's answer, then the hand-over */
	t_doing = "handing the fd over";
	CHECK(write(s, "A's data\n", 9) == 9);
	if (flushed)
		ESCA_BATCH_FLUSH();
	pthread_mutex_lock(&mu);
	handed = s;
	pthread_cond_broadcast(&cv);
	while (!b_done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (!flushed)
		ESCA_BATCH_FLUSH();
	CHECK(pthread_join(b, NULL) == 0);
	CHECK(close(logfd) == 0);
	t_unfill();
	t_doing = "waiting for the peer";
	t_reap(pid, "peer");
	t_note("peer got: \"%s\"\n", t_escape(out->data, out->len));
	t_note_file("log", t_path(dir, "log"));
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
