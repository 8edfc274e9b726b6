// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 11b: "exit() waits for a thread blocked in its
 * own flush".
 *
 *   exit_blocked_flush send|wait
 *
 * send: a worker thread sends 4 KiB on a blocking TCP socket whose peer
 * reads nothing and whose buffers are full, inside a segment, and flushes:
 * the send blocks (without libesca the send() itself blocks);
 * wait: a worker sends 4 KiB on a socket with room and ends its segment
 * with batch_flush_wait() on an epoll set where nothing ever happens (an
 * idle event loop); the peer reads the 4 KiB.
 *
 * The main thread then calls exit(0).  Without libesca the process ends at
 * once, the worker with it; so must it with libesca, instead of waiting for
 * the worker's flush or wait to end.  The parent reports how the process
 * ended and what the peer read:
 *
 *   send: status 0, peer read 0 bytes
 *   wait: status 0, peer read 4096 bytes
 */
#include "esca_test.h"

static int conn, waits;

static void *worker(void *arg)
{
	static char data[4096];
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)arg;
	CHECK(ep >= 0);
	memset(data, 'w', sizeof(data));
	ESCA_BATCH_START();
	CHECK(write(conn, data, sizeof(data)) == (ssize_t)sizeof(data));
	if (waits)
		CHECK(ESCA_BATCH_FLUSH_WAIT(ep, &ev, 1, -1) >= 0);
	else
		ESCA_BATCH_FLUSH();
	return NULL;
}

static void child(void *arg)
{
	static char fill[65536];
	pthread_t th;
	ssize_t r;

	(void)arg;
	ESCA_INIT();
	if (!waits) {
		/* the send buffer full: the worker's send blocks */
		t_nonblock(conn);
		while ((r = write(conn, fill, sizeof(fill))) > 0)
			;
		CHECK(r < 0 && errno == EAGAIN);
		CHECK(fcntl(conn, F_SETFL, 0) == 0);
	}
	CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
	/* the worker in its flush (or its wait) by then: TCG is slow */
	usleep(t_qemu() ? 3000000 : 300000);
	exit(0);
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "send";
	static char buf[1 << 20];
	size_t got = 0;
	int peer, code;
	ssize_t r;
	pid_t pid;

	waits = !strcmp(variant, "wait");
	CHECK(waits || !strcmp(variant, "send"), "variant %s", variant);
	ESCA_INIT();
	t_watchdog(20);
	if (waits)
		t_tcp_pair(&conn, &peer);
	else
		t_tcp_pair_buf(&conn, &peer, 4096, 4096);
	t_doing = "waiting for the exiting process";
	pid = t_spawn(child, NULL, 1, conn);
	CHECK(close(conn) == 0);
	code = wait_child(pid);
	/* what the peer got, the filler (send) left aside */
	t_nonblock(peer);
	while ((r = read(peer, buf, sizeof(buf))) > 0)
		if (waits)
			got += (size_t)r;
	CHECK(close(peer) == 0);
	t_note("%s: status %d, peer read %zu bytes\n", variant, code, got);
	t_notes_print();
	return T_PASS;
}
