// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 10 (waits after the flush and in the segment):
 * "Fortified builds (-D_FORTIFY_SOURCE=2) read through __read_chk,
 * __recv_chk, __poll_chk, which libesca never sees: the program hangs. So
 * do getc on an fdopen'd socket, eventfd_read, system(), wait4,
 * pthread_clockjoin_np, sem_clockwait, mq_receive, msgrcv, flock,
 * recvmmsg, splice, a FIONREAD loop."
 *
 *   waits KIND after     the wait follows batch_flush()
 *   waits KIND in        the wait is made inside the still-open segment
 *
 * Built with -O2 -D_FORTIFY_SOURCE=2, as Debian builds packages.  First an
 * event loop of 20 iterations on a TCP connection (epoll_wait -> segment ->
 * read the peer's ping -> write the answer -> batch_flush: a libesca that
 * learns to carry its batch to the next epoll_wait has learnt it, as in
 * tests/c/t_carry.c); the last iteration answers "m".  Then, instead of
 * epoll_wait, the program blocks in KIND, waiting for something the peer
 * (a forked process) does only once it has received that "m":
 *
 *   read_chk recv_chk recvfrom_chk   __read_chk, __recv_chk, __recvfrom_chk
 *                                    of the peer's reply on the socket
 *   poll_chk ppoll_chk               __poll_chk, __ppoll_chk for it
 *   getc fread                       stdio on fdopen(dup(socket))
 *   recvmmsg splice fionread         recvmmsg; splice into a pipe; a loop of
 *                                    ioctl(FIONREAD) and sched_yield()
 *   raw_read                         syscall(SYS_read)
 *   eventfd_read                     the peer writes to a shared eventfd
 *   system                           system("read x < fifo"); the peer writes
 *                                    a line into the fifo
 *   wait4                            the peer exits
 *   clockjoin                        pthread_clockjoin_np of a thread that
 *                                    reads the peer's reply on a 2nd socket
 *   condwait mutex                   pthread_cond_wait / pthread_mutex_lock:
 *                                    that thread signals / unlocks
 *   sem_clockwait                    the peer posts a shared semaphore
 *   mq_receive msgrcv                the peer sends a POSIX / System V message
 *   flock                            the peer holds the lock until then
 *
 * Without libesca every wait ends at once and it prints, e.g.
 *
 *   read_chk after the flush: the wait ended with "R"
 *
 * With a batch held back (the "m" not sent) the program hangs: the
 * watchdog kills it after 5 s (30 s in a QEMU guest).
 */
#include <mqueue.h>
#include <poll.h>
#include <semaphore.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/msg.h>
#include <sys/uio.h>

#include "esca_test.h"

#define LOOPS 20

static const char *const kinds[] = {
	"read_chk", "recv_chk", "recvfrom_chk", "poll_chk", "ppoll_chk", "getc", "fread",
	"recvmmsg", "splice", "fionread", "raw_read", "eventfd_read", "system", "wait4",
	"clockjoin", "condwait", "mutex", "sem_clockwait", "mq_receive", "msgrcv", "flock",
};

enum { K_SOCKET_REPLY = 11 };	/* kinds before this one wait for a reply on the socket */

struct shared {
	sem_t sem;
	int thread_ready;
};

static int kind;
static int s, s_peer, s2, s2_peer, efd, msq;
static mqd_t mq = -1;
static char mqname[64];
static const char *dir;
static struct shared *sh;
/* what a wait uses, made before the loop: the wait is the first call after
 * the last batch_flush() (an interposed open() or pipe() in between would
 * send a carried batch itself) */
static FILE *sock_file;
static int spl[2] = { -1, -1 }, lockfd = -1;

static int is(const char *name)
{
	return !strcmp(kinds[kind], name);
}

static void peer(void *arg)
{
	char c;
	int held = -1;

	(void)arg;
	if (is("flock")) {
		held = open(t_path(dir, "lock"), O_RDWR | O_CLOEXEC);
		CHECK(held >= 0 && flock(held, LOCK_EX) == 0);
	}
	for (int i = 0; i < LOOPS; i++) {
		CHECK(write(s_peer, "p", 1) == 1);
		CHECK(read(s_peer, &c, 1) == 1);
		CHECK(c == (i < LOOPS - 1 ? 'r' : 'm'), "answer %d is %c", i, c);
	}
	/* the "m" arrived: now what the program waits for */
	if (kind < K_SOCKET_REPLY) {
		CHECK(write(s_peer, "R", 1) == 1);
	} else if (is("eventfd_read")) {
		CHECK(eventfd_write(efd, 82) == 0);
	} else if (is("system")) {
		int f = open(t_path(dir, "fifo"), O_WRONLY | O_CLOEXEC);

		CHECK(f >= 0 && write(f, "R\n", 2) == 2 && close(f) == 0);
	} else if (is("wait4")) {
		_exit(82);
	} else if (is("clockjoin") || is("condwait") || is("mutex")) {
		CHECK(write(s2_peer, "R", 1) == 1);
	} else if (is("sem_clockwait")) {
		CHECK(sem_post(&sh->sem) == 0);
	} else if (is("mq_receive")) {
		CHECK(mq_send(mq, "R", 1, 0) == 0);
	} else if (is("msgrcv")) {
		struct { long type; char text[1]; } m = { 1, { 'R' } };

		CHECK(msgsnd(msq, &m, 1, 0) == 0);
	} else if (is("flock")) {
		CHECK(flock(held, LOCK_UN) == 0);
	}
	/* stay until the program is done with the socket */
	while (read(s_peer, &c, 1) > 0)
		;
}

/* the thread of clockjoin, condwait and mutex */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static char thread_got;

static void *reader(void *arg)
{
	char c = 0;

	(void)arg;
	if (is("mutex"))
		CHECK(pthread_mutex_lock(&mu) == 0);
	__atomic_store_n(&sh->thread_ready, 1, __ATOMIC_RELEASE);
	CHECK(read(s2, &c, 1) == 1);
	if (is("mutex")) {
		thread_got = c;
		CHECK(pthread_mutex_unlock(&mu) == 0);
	} else {
		CHECK(pthread_mutex_lock(&mu) == 0);
		thread_got = c;
		CHECK(pthread_cond_broadcast(&cv) == 0);
		CHECK(pthread_mutex_unlock(&mu) == 0);
	}
	return NULL;
}

static struct timespec in_seconds(clockid_t clk, int sec)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += sec;
	return ts;
}

/* The wait; returns what it got, as text (static). */
static const char *wait_for(pid_t peer_pid, pthread_t th)
{
	static char got[32];
	/* a length the compiler cannot see: the fortified calls check it */
	volatile size_t len = 1;
	volatile nfds_t nfds = 1;
	char buf[16] = "";
	struct pollfd pfd[2] = { { .fd = s, .events = POLLIN } };

	if (is("read_chk")) {
		CHECK(read(s, buf, len) == 1);
	} else if (is("recv_chk")) {
		CHECK(recv(s, buf, len, 0) == 1);
	} else if (is("recvfrom_chk")) {
		CHECK(recvfrom(s, buf, len, 0, NULL, NULL) == 1);
	} else if (is("poll_chk") || is("ppoll_chk")) {
		int r = is("poll_chk") ? poll(pfd, nfds, -1) : ppoll(pfd, nfds, NULL, NULL);

		CHECK(r == 1 && (pfd[0].revents & POLLIN));
		CHECK(read(s, buf, 1) == 1);
	} else if (is("getc") || is("fread")) {
		int c;

		if (is("getc")) {
			c = getc(sock_file);
			CHECK(c != EOF);
			buf[0] = (char)c;
		} else {
			CHECK(fread(buf, 1, len, sock_file) == 1);
		}
	} else if (is("recvmmsg")) {
		struct iovec iov = { buf, 1 };
		struct mmsghdr m = { .msg_hdr = { .msg_iov = &iov, .msg_iovlen = 1 } };

		CHECK(recvmmsg(s, &m, 1, 0, NULL) == 1 && m.msg_len == 1);
	} else if (is("splice")) {
		CHECK(splice(s, NULL, spl[1], NULL, 1, 0) == 1);
		CHECK(read(spl[0], buf, 1) == 1);
	} else if (is("fionread")) {
		int n = 0;

		while (ioctl(s, FIONREAD, &n) == 0 && n == 0)
			sched_yield();
		CHECK(n == 1 && read(s, buf, 1) == 1);
	} else if (is("raw_read")) {
		CHECK(syscall(SYS_read, s, buf, 1) == 1);
	} else if (is("eventfd_read")) {
		eventfd_t v = 0;

		CHECK(eventfd_read(efd, &v) == 0);
		buf[0] = (char)v;
	} else if (is("system")) {
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "exec </dev/null >/dev/null 2>&1; read x < '%s' && test \"$x\" = R",
			 t_path(dir, "fifo"));
		CHECK(system(cmd) == 0);
		buf[0] = 'R';
	} else if (is("wait4")) {
		int st;

		CHECK(wait4(peer_pid, &st, 0, NULL) == peer_pid);
		CHECK(WIFEXITED(st));
		buf[0] = (char)WEXITSTATUS(st);
	} else if (is("clockjoin")) {
		struct timespec t = in_seconds(CLOCK_MONOTONIC, 600);

		CHECK(pthread_clockjoin_np(th, NULL, CLOCK_MONOTONIC, &t) == 0);
		buf[0] = thread_got;
	} else if (is("condwait")) {
		CHECK(pthread_mutex_lock(&mu) == 0);
		while (!thread_got)
			CHECK(pthread_cond_wait(&cv, &mu) == 0);
		buf[0] = thread_got;
		CHECK(pthread_mutex_unlock(&mu) == 0);
	} else if (is("mutex")) {
		CHECK(pthread_mutex_lock(&mu) == 0);
		buf[0] = thread_got;
		CHECK(pthread_mutex_unlock(&mu) == 0);
	} else if (is("sem_clockwait")) {
		struct timespec t = in_seconds(CLOCK_MONOTONIC, 600);

		CHECK(sem_clockwait(&sh->sem, CLOCK_MONOTONIC, &t) == 0);
		buf[0] = 'R';
	} else if (is("mq_receive")) {
		char m[16];

		CHECK(mq_receive(mq, m, sizeof(m), NULL) == 1);
		buf[0] = m[0];
	} else if (is("msgrcv")) {
		struct { long type; char text[8]; } m;

		CHECK(msgrcv(msq, &m, sizeof(m.text), 0, 0) == 1);
		buf[0] = m.text[0];
	} else if (is("flock")) {
		CHECK(flock(lockfd, LOCK_EX) == 0);
		buf[0] = 'R';
	}
	snprintf(got, sizeof(got), "%s", t_escape(buf, 1));
	return got;
}

int main(int argc, char **argv)
{
	const char *where = argc > 2 ? argv[2] : "after";
	struct epoll_event ev = { .events = EPOLLIN };
	int in_segment = !strcmp(where, "in"), ep;
	pthread_t th = 0;
	const char *got;
	pid_t pid;

	kind = -1;
	for (size_t i = 0; argc > 1 && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(argv[1], kinds[i]))
			kind = (int)i;
	if (kind < 0 || (!in_segment && strcmp(where, "after")))
		FAIL("usage: waits KIND after|in");
	ESCA_INIT();
	t_watchdog(5);
	dir = t_tmpdir();
	sh = t_shared(sizeof(*sh));
	CHECK(sem_init(&sh->sem, 1, 0) == 0);
	t_tcp_pair(&s, &s_peer);
	t_tcp_pair(&s2, &s2_peer);
	efd = eventfd(0, EFD_CLOEXEC);
	CHECK(efd >= 0);
	snprintf(mqname, sizeof(mqname), "/esca-hostile-%d", (int)getpid());
	{
		struct mq_attr qa = { .mq_maxmsg = 4, .mq_msgsize = 16 };

		mq = mq_open(mqname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &qa);
	}
	CHECK(mq >= 0 && mq_unlink(mqname) == 0);
	msq = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	CHECK(msq >= 0);
	{
		int f = open(t_path(dir, "lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		CHECK(f >= 0 && close(f) == 0);
		CHECK(mkfifo(t_path(dir, "fifo"), 0600) == 0);
	}
	pid = t_spawn(peer, NULL, 4, s_peer, s2_peer, efd, (int)mq);
	CHECK(close(s_peer) == 0 && close(s2_peer) == 0);
	if (is("clockjoin") || is("condwait") || is("mutex")) {
		CHECK(pthread_create(&th, NULL, reader, NULL) == 0);
		while (!__atomic_load_n(&sh->thread_ready, __ATOMIC_ACQUIRE))
			sched_yield();
	}
	if (is("getc") || is("fread")) {
		sock_file = fdopen(dup(s), "r");
		CHECK(sock_file != NULL);
		setvbuf(sock_file, NULL, _IONBF, 0);
	}
	if (is("splice"))
		CHECK(pipe2(spl, O_CLOEXEC) == 0);
	if (is("flock")) {
		lockfd = open(t_path(dir, "lock"), O_RDWR | O_CLOEXEC);
		CHECK(lockfd >= 0);
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0);

	t_doing = "in the event loop";
	for (int i = 0; i < LOOPS; i++) {
		struct epoll_event out;
		char c;

		CHECK(epoll_wait(ep, &out, 1, -1) == 1);
		ESCA_BATCH_START();
		CHECK(read(s, &c, 1) == 1 && c == 'p');
		CHECK(write(s, i < LOOPS - 1 ? "r" : "m", 1) == 1);
		if (i < LOOPS - 1 || !in_segment)
			ESCA_BATCH_FLUSH();
	}
	t_doing = "in the wait for the peer's answer to the last write";
	got = wait_for(pid, th);
	if (in_segment)
		ESCA_BATCH_FLUSH();
	t_note("%s %s: the wait ended with \"%s\"\n", kinds[kind],
	       in_segment ? "in the segment" : "after the flush", got);

	t_doing = "cleaning up";
	if (th && !is("clockjoin"))
		CHECK(pthread_join(th, NULL) == 0);
	CHECK(shutdown(s, SHUT_WR) == 0);
	if (!is("wait4"))
		t_reap(pid, "peer");
	CHECK(msgctl(msq, IPC_RMID, NULL) == 0);
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
