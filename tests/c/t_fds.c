// SPDX-License-Identifier: MIT
/*
 * File descriptors: the program's own fds get the numbers they get without
 * libesca, and the program's wholesale closes (close_range, closefrom, a
 * loop closing every fd, dup2 onto any number) neither lose deferred calls
 * nor break libesca.  Everything observable goes to stdout, to be compared
 * with a run without libesca.
 *
 *   t_fds numbers     fds of open, socket, socketpair, pipe, accept, dup,
 *                     epoll, eventfd in and between segments, a thread's and
 *                     a forked child's; /proc/self/fd of a forked child
 *   t_fds closeall [high]
 *                     close_range(3, ~0U, 0), closefrom(3) and a close()
 *                     loop over every fd, in and out of segments, with
 *                     deferred writes to stdout and to a socket the close
 *                     takes away; high: with the soft limit at 8192 (then
 *                     libesca's fds are under it, where the loop goes)
 *   t_fds dup2        dup2()/dup3() onto every number around the top of the
 *                     first 4096 (where libesca keeps its fds when the soft
 *                     limit is high), then batching goes on
 *   t_fds table       the kernel's fd table (FDSize) does not grow between
 *                     esca_init() and the end of segments that defer sends
 *                     on a TCP socket (where libesca starts its drainer)
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <stdint.h>

#include "esca_test.h"

static void segment_say(const char *what)
{
	ESCA_BATCH_START();
	t_say("%s: in a segment\n", what);
	t_say("%s: still in it\n", what);
	ESCA_BATCH_FLUSH();
}

/* the thread says it is set up on ready, then waits on go */
static int thread_ready[2], thread_go[2];

static void *thread_fds(void *arg)
{
	int fd;
	char c;

	(void)arg;
	segment_say("thread");
	fd = open("/dev/null", O_RDONLY);
	t_say("thread open: %d\n", fd);
	close(fd);
	/* alive, with its backend set up, while main forks */
	if (write(thread_ready[1], "r", 1) != 1 || read(thread_go[0], &c, 1) != 1)
		FAIL("thread sync: %m");
	return NULL;
}

/* The fds /proc/self/fd lists, but the one listing it. */
static void say_open_fds(const char *who)
{
	char line[256] = "";
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	size_t n = 0;

	if (!dir)
		FAIL("opendir: %m");
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.' && atoi(d->d_name) != dirfd(dir) && n < sizeof(line) - 16)
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", d->d_name);
	closedir(dir);
	t_say("%s: open fds:%s\n", who, line);
}

static int numbers(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int sv[2], p[2], l, c, a, fd, status;
	pthread_t th;
	pid_t pid;
	char ch;

	segment_say("main");
	fd = open("/dev/null", O_RDONLY);
	t_say("open: %d\n", fd);
	t_say("socket: %d\n", l = socket(AF_UNIX, SOCK_STREAM, 0));
	snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "esca-t_fds-%d", (int)getpid());
	if (bind(l, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(l, 1) < 0)
		FAIL("listen: %m");
	ESCA_BATCH_START();
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		FAIL("connect: %m");
	a = accept(l, NULL, NULL);
	t_say("in a segment: socket %d, accept %d\n", c, a);
	close(a);
	ESCA_BATCH_FLUSH();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
		FAIL("socketpair: %m");
	t_say("socketpair: %d %d, pipe: %d %d\n", sv[0], sv[1], p[0], p[1]);
	t_say("dup: %d, epoll: %d, eventfd: %d\n", dup(0), epoll_create1(0), eventfd(0, 0));
	if (pipe(thread_ready) < 0 || pipe(thread_go) < 0 ||
	    pthread_create(&th, NULL, thread_fds, NULL) || read(thread_ready[0], &ch, 1) != 1)
		FAIL("thread: %m");
	pid = fork();
	if (pid == 0) {
		/* only this thread came along: no fd of the others' either */
		say_open_fds("child");
		segment_say("child");
		t_say("child open: %d\n", open("/dev/null", O_RDONLY));
		exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status)
		FAIL("child: %m");
	if (write(thread_go[1], "g", 1) != 1 || pthread_join(th, NULL))
		FAIL("thread end: %m");
	t_say("after the thread: open %d\n", open("/dev/null", O_RDONLY));
	t_say("fcntl F_DUPFD 0: %d\n", fcntl(0, F_DUPFD, 0));
	return T_PASS;
}

/* Closes every fd from 3 with close(); says how many were open. */
static void close_loop(const char *what)
{
	long max = sysconf(_SC_OPEN_MAX), fd, n = 0, ebadf = 0;

	for (fd = 3; fd < max; fd++) {
		if (close((int)fd) == 0)
			n++;
		else if (errno == EBADF)
			ebadf++;
	}
	t_say("%s: closed %ld, EBADF for the other %s\n", what, n,
	      n + ebadf == max - 3 ? "ones" : "FEW");
}

/* A reader child of a socket pair: it exits 0 when it read exactly `want`,
 * then the end of the stream. */
static int reader(const char *want)
{
	char buf[256];
	size_t n = 0;
	ssize_t r;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		FAIL("socketpair: %m");
	if (fork() == 0) {
		close(sv[0]);
		while (n < sizeof(buf) && (r = read(sv[1], buf + n, sizeof(buf) - n)) > 0)
			n += (size_t)r;
		_exit(n == strlen(want) && !memcmp(buf, want, n) ? 0 : 1);
	}
	close(sv[1]);
	return sv[0];
}

static void reader_done(void)
{
	int status;

	if (wait(&status) < 0)
		FAIL("wait: %m");
	t_say("the reader got %s\n",
	      WIFEXITED(status) && !WEXITSTATUS(status) ? "it all, then the end" : "LESS");
}

/*
 * An fd number that was a socket, closed by close_range(), comes back from
 * a call libesca does not see (eventfd): what libesca knew of the old fd
 * must not apply to the new one (a socket write to an eventfd fails).
 */
static void evfd_reuse(void)
{
	uint64_t one = 1, sum = 0;
	int sv[2], ev;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		FAIL("socketpair: %m");
	close_range((unsigned)sv[0], (unsigned)sv[1], 0);
	ev = eventfd(0, 0);
	ESCA_BATCH_START();
	for (int i = 0; i < 3; i++)
		if (write(ev, &one, sizeof(one)) != sizeof(one))
			FAIL("eventfd write: %m");
	ESCA_BATCH_FLUSH();
	if (read(ev, &sum, sizeof(sum)) != sizeof(sum))
		FAIL("eventfd read: %m");
	t_say("eventfd at %s number: %llu\n", ev == sv[0] ? "the socket's" : "another",
	      (unsigned long long)sum);
	close(ev);
}

static int closeall(void)
{
	int s, i;

	ESCA_INIT();
	segment_say("warm-up");

	s = reader("to-the-reader");
	ESCA_BATCH_START();
	t_say("close_range: before\n");
	if (write(s, "to-the-reader", 13) != 13)
		FAIL("write: %m");
	t_say("close_range: %d\n", close_range(3, ~0U, 0));
	t_say("close_range: after\n");
	ESCA_BATCH_FLUSH();
	reader_done();
	for (i = 0; i < 3; i++)
		t_say("open after close_range: %d\n", open("/dev/null", O_RDONLY));
	segment_say("after close_range");
	evfd_reuse();

	s = reader("again");
	ESCA_BATCH_START();
	if (write(s, "again", 5) != 5)
		FAIL("write: %m");
	t_say("closefrom: before\n");
	closefrom(3);
	t_say("closefrom: after\n");
	ESCA_BATCH_FLUSH();
	reader_done();
	segment_say("after closefrom");

	s = reader("and-again");
	ESCA_BATCH_START();
	if (write(s, "and-again", 9) != 9)
		FAIL("write: %m");
	close_loop("close loop in a segment");
	t_say("after the loop\n");
	ESCA_BATCH_FLUSH();
	reader_done();
	for (i = 0; i < 3; i++)
		t_say("open after the loop: %d\n", open("/dev/null", O_RDONLY));
	close_loop("close loop");
	segment_say("after the loops");
	return T_PASS;
}

/* A soft limit above 4096: libesca's fds then sit just under 4096. */
static void high_soft_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		FAIL("getrlimit: %m");
	rl.rlim_cur = 8192;
	if (rl.rlim_max < 8192)
		rl.rlim_max = 8192;	/* root may (CAP_SYS_RESOURCE) */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		printf("hard RLIMIT_NOFILE below 8192 and cannot be raised\n");
		exit(T_SKIP);
	}
}

static int dup2_all(void)
{
	int fd, bad = 0, ok = 0;

	high_soft_limit();
	ESCA_INIT();
	segment_say("warm-up");
	for (fd = 3968; fd < 4160; fd++) {
		if ((fd & 1 ? dup2(1, fd) : dup3(1, fd, O_CLOEXEC)) == fd)
			ok++;
		else
			bad++;
	}
	t_say("dup2 and dup3 onto 3968..4159: %d ok, %d failed\n", ok, bad);
	segment_say("after dup2");
	for (fd = 3968; fd < 4160; fd++)
		if (write(fd, "", 0) != 0 || close(fd) != 0)
			bad++;
	t_say("the copies: %s\n", bad ? "BROKEN" : "all stdout, all closed");
	segment_say("after the closes");
	return T_PASS;
}

/* FDSize of /proc/self/status: the size of the kernel's fd table. */
static long fd_table_size(void)
{
	char line[128];
	long n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "FDSize: %ld", &n) == 1)
			break;
	fclose(f);
	CHECK(n > 0, "no FDSize in /proc/self/status");
	return n;
}

/*
 * libesca puts its own fds above the soft limit, which grows the kernel's
 * fd table; that must happen in esca_init(), not while the program serves:
 * growing a table that other tasks share (the ring's io-wq workers, the
 * program's threads) waits for an RCU grace period, 10-15 ms of a stalled
 * event loop (lighttpd's SCGI backend, which gives a request 10 ms,
 * answered 500).
 */
static int table(void)
{
	char buf[64];
	size_t got = 0;
	long before, after;
	ssize_t r;
	int s, peer;

	ESCA_INIT();
	before = fd_table_size();
	t_tcp_pair(&s, &peer);
	for (int i = 0; i < 4; i++) {
		ESCA_BATCH_START();
		CHECK(write(s, "ab", 2) == 2);
		CHECK(send(s, "cd", 2, 0) == 2);
		ESCA_BATCH_FLUSH();
	}
	while (got < 16 && (r = read(peer, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)r;
	after = fd_table_size();
	t_say("peer read %zu bytes\n", got);
	if (after == before)
		t_say("the fd table did not grow while serving\n");
	else
		t_say("the fd table grew while serving: FDSize %ld after esca_init(), %ld after "
		      "the segments\n", before, after);
	return T_PASS;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "numbers";

	if (!strcmp(what, "numbers")) {
		ESCA_INIT();
		return numbers();
	}
	if (!strcmp(what, "closeall")) {
		if (argc > 2 && !strcmp(argv[2], "high"))
			high_soft_limit();
		return closeall();
	}
	if (!strcmp(what, "dup2"))
		return dup2_all();
	if (!strcmp(what, "table"))
		return table();
	fprintf(stderr, "usage: t_fds numbers|closeall|dup2|table\n");
	return T_FAIL;
}
