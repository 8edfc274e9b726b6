// SPDX-License-Identifier: MIT
/*
 * What did not fit: bytes libesca holds for slow readers.
 *
 * A deferred send that comes out short on a non-blocking socket was
 * already reported sent in full.  Its rest is kept here, per socket, and
 * goes out as the socket drains; the flush never waits for the peer, so no
 * other connection of the event loop waits either (rule 1).  While bytes
 * are held for a socket:
 *   - later deferred entries on it go behind them (data appended, its
 *     close and shutdown done when they are out);
 *   - a call of the program's that sends on it first sends what it can of
 *     them, and gets EAGAIN while any are left: the truth of a full
 *     non-blocking socket, on which it waits for EPOLLOUT as usual (a
 *     socket the program made blocking since waits as a blocking call);
 *   - the program's close() returns at once and frees the number; the
 *     socket lives on as one of libesca's own fds until they are out;
 *   - a TCP peer that reads nothing of them for ESCA_WRITE_TIMEOUT_MS gets
 *     its connection reset: a stream arrives whole, or not at all.  An
 *     AF_UNIX socket has no reset: its peer, local, is waited for.
 * Memory is bounded per socket (one batch of its entries: later data calls
 * on it run directly once it has needed holding, SLOW) and per process:
 * above half of ESCA_HELD_MAX nothing is deferred on any socket.
 *
 * The drainer.  Held bytes must go out whatever the program's threads do
 * meanwhile (one may wait in pthread_join() for a peer that waits for those
 * very bytes), so a thread of libesca's own sends them: it waits in epoll
 * on the held sockets (held_ep) and for the next deadline.  It is a raw
 * clone(), not a pthread: glibc does not know it (the process stays
 * single-threaded to glibc and to libesca: no atomic operation on the hot
 * path, the batch and the wait still share one kernel entry), it runs with
 * every signal blocked (no handler of the program's ever runs there), and
 * it shares its creator's thread pointer, so it touches no thread-local
 * data: no errno, no libc call -- system calls through esca_raw() only.
 * It starts with the first send libesca defers (data is never deferred
 * where it cannot start: a seccomp filter refusing clone, say).
 *
 * Every operation on the records runs under one lock (a futex: the drainer
 * cannot use pthread mutexes), in a program thread with its signals
 * blocked: no handler can interrupt it halfway, no other thread sees a
 * record half made.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct held {
	int fd;			/* the program's number; -1 once it closed it */
	int own;		/* libesca's fd for it after the program closed it, else -1 */
	unsigned kind;		/* ESCA_FD_TCP or ESCA_FD_UNIX */
	bool used;
	bool shut_wr;		/* the program shut down its sending side: after the bytes */
	bool close_own;		/* own goes when they are out */
	char *buf;		/* mmap'd */
	size_t off, len, cap;
	int64_t deadline;	/* ms (CLOCK_MONOTONIC): reset if nothing went out by then */
	uint32_t last_slot, last_seq;	/* the last entry taken (each once) */
};

static _Atomic int held_word;	/* the lock: 0 free, 1 taken, 2 taken and waited for */
static struct held *held;
static unsigned held_cap;
static int held_ep = -1;
_Atomic unsigned esca_held_count;
_Atomic size_t esca_held_bytes;
static _Atomic int drainer;	/* 0 not started, 1 running, -1 could not start */

static int64_t now_ms(void)
{
	struct timespec ts = { 0, 0 };

	esca_raw(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0, 0, 0, 0);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the lock ---------------------------------------------------------------- */

static void lock_word(void)
{
	int c = 0;

	if (atomic_compare_exchange_strong(&held_word, &c, 1))
		return;
	if (c != 2)
		c = atomic_exchange(&held_word, 2);
	while (c != 0) {
		esca_raw(SYS_futex, (long)&held_word, FUTEX_WAIT_PRIVATE, 2, 0, 0, 0);
		c = atomic_exchange(&held_word, 2);
	}
}

static void unlock_word(void)
{
	if (atomic_fetch_sub(&held_word, 1) != 1) {
		atomic_store(&held_word, 0);
		esca_raw(SYS_futex, (long)&held_word, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
	}
}

/* A program thread: its signals blocked, then the lock. */
static void held_enter(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	esca_raw(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, (long)old, 8, 0, 0);
	lock_word();
}

static void held_exit(const sigset_t *old)
{
	unlock_word();
	esca_raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)old, 0, 8, 0, 0);
}

/* ---- records --------------------------------------------------------------------- */

static int sock_of(const struct held *h)
{
	return h->own >= 0 ? h->own : h->fd;
}

static struct held *find(int fd)
{
	for (unsigned i = 0; i < held_cap; i++)
		if (held[i].used && held[i].fd == fd)
			return &held[i];
	return NULL;
}

static void *map(size_t len)
{
	long p = esca_raw(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p < 0 && p > -4096 ? NULL : (void *)p;
}

static void unmap(void *p, size_t len)
{
	esca_raw(SYS_munmap, (long)p, (long)len, 0, 0, 0, 0);
}

static void ep_ctl(int op, int fd, uint32_t idx)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLET, .data.u32 = idx };

	if (held_ep >= 0)
		esca_raw(SYS_epoll_ctl, held_ep, op, fd, (long)&ev, 0, 0);
}

static struct held *new_record(int fd, unsigned kind)
{
	struct held *h;
	unsigned i;

	for (i = 0; i < held_cap && held[i].used; i++)
		;
	if (i == held_cap) {
		unsigned cap = held_cap ? held_cap * 2 : 64;
		struct held *p = map(cap * sizeof(*held));

		if (!p)
			return NULL;
		if (held) {
			memcpy(p, held, held_cap * sizeof(*held));
			unmap(held, held_cap * sizeof(*held));
		}
		held = p;
		held_cap = cap;
	}
	h = &held[i];
	memset(h, 0, sizeof(*h));
	h->used = true;
	h->fd = fd;
	h->own = -1;
	h->kind = kind;
	h->deadline = now_ms() + esca_cfg.write_timeout_ms;
	ep_ctl(EPOLL_CTL_ADD, fd, i);
	atomic_fetch_add(&esca_held_count, 1);
	return h;
}

/* Room for n more bytes in h. */
static bool grow(struct held *h, size_t n)
{
	size_t need = h->len - h->off + n, cap;
	char *p;

	if (h->off && need <= h->cap) {
		memmove(h->buf, h->buf + h->off, h->len - h->off);
		h->len -= h->off;
		h->off = 0;
	}
	if (h->len + n <= h->cap)
		return true;
	cap = (need + 4095) & ~(size_t)4095;
	p = map(cap);
	if (!p)
		return false;
	if (h->buf) {
		memcpy(p, h->buf + h->off, h->len - h->off);
		unmap(h->buf, h->cap);
	}
	h->len -= h->off;
	h->off = 0;
	h->buf = p;
	h->cap = cap;
	return true;
}

/* h is done with: what it still owes the socket (a shutdown, libesca's
 * own fd) is given, and the record goes. */
static void drop(struct held *h)
{
	int fd = sock_of(h);

	atomic_fetch_sub(&esca_held_bytes, h->len - h->off);
	if (fd >= 0)
		esca_raw(SYS_epoll_ctl, held_ep, EPOLL_CTL_DEL, fd, 0, 0, 0);
	if (h->fd >= 0)
		esca_fdw_clear(h->fd, ESCA_FDW_HELD);
	if (h->shut_wr && fd >= 0)
		esca_raw(SYS_shutdown, fd, SHUT_WR, 0, 0, 0, 0);
	if (h->close_own && h->own >= 0)
		esca_own_close(h->own);
	if (h->buf)
		unmap(h->buf, h->cap);
	h->used = false;
	atomic_fetch_sub(&esca_held_count, 1);
}

void esca_reset_connection(int fd, uint32_t w)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	if (esca_fdw_kind(w) == ESCA_FD_TCP) {
		/* a disconnect: the peer gets a RST, the program ECONNRESET */
		esca_raw(SYS_setsockopt, fd, SOL_SOCKET, SO_LINGER, (long)&lg, sizeof(lg), 0);
		esca_raw(SYS_connect, fd, (long)&sa, sizeof(sa), 0, 0, 0);
	} else {
		esca_raw(SYS_shutdown, fd, SHUT_RDWR, 0, 0, 0, 0);
	}
	esca_fdw_or(fd, ESCA_FDW_BROKEN);
}

/* h's peer read nothing for too long: reset (TCP), counted. */
static void expire(struct held *h)
{
	size_t lost = h->len - h->off;

	esca_debug("fd %d: the peer read none of %zu held bytes for %d ms: connection reset",
		   h->fd >= 0 ? h->fd : h->own, lost, esca_cfg.write_timeout_ms);
	esca_reset_connection(sock_of(h), h->kind);
	esca_stats_add(offsetof(struct esca_stats, resets), 1);
	esca_stats_add(offsetof(struct esca_stats, bytes_lost), lost);
	h->shut_wr = false;
	drop(h);
}

/* Sends what the socket takes of h now.  Returns true when all went out
 * (h dropped), false when some is left (or the connection was reset or is
 * gone: h dropped too, *gone). */
static bool push(struct held *h, int64_t now, bool *gone)
{
	int fd = sock_of(h);
	long r;

	*gone = false;
	while (h->off < h->len) {
		r = esca_raw(SYS_sendto, fd, (long)(h->buf + h->off), (long)(h->len - h->off),
			     MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
		if (r > 0) {
			h->off += (size_t)r;
			atomic_fetch_sub(&esca_held_bytes, (size_t)r);
			h->deadline = now + esca_cfg.write_timeout_ms;
			continue;
		}
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN) {
			if (h->kind == ESCA_FD_TCP && now >= h->deadline) {
				expire(h);
				*gone = true;
			}
			return false;
		}
		/* the peer is gone: what is left cannot arrive */
		if (h->fd >= 0)
			esca_fdw_or(h->fd, ESCA_FDW_BROKEN);
		esca_stats_add(offsetof(struct esca_stats, errors_dropped), 1);
		esca_stats_add(offsetof(struct esca_stats, bytes_lost), h->len - h->off);
		h->shut_wr = false;
		drop(h);
		*gone = true;
		return false;
	}
	drop(h);
	return true;
}

/* Pushes every record; returns the earliest deadline left (-1: none). */
static int64_t push_all(void)
{
	int64_t now = now_ms(), next = -1;
	bool gone;

	for (unsigned i = 0; i < held_cap; i++) {
		struct held *h = &held[i];

		if (!h->used || push(h, now, &gone) || gone)
			continue;
		if (h->kind == ESCA_FD_TCP && (next < 0 || h->deadline < next))
			next = h->deadline;
	}
	return next;
}

/* ---- the drainer ------------------------------------------------------------------ */

#define DRAINER_STACK	(64 * 1024)

/* The drainer's loop (module comment): every signal blocked, no thread-local
 * data, system calls only. */
static int drainer_main(void *arg)
{
	struct epoll_event ev[32];
	int64_t next, now;
	long ms;

	(void)arg;
	for (;;) {
		lock_word();
		next = push_all();
		unlock_word();
		now = now_ms();
		ms = next < 0 ? -1 : next > now ? next - now : 0;
		esca_raw(SYS_epoll_pwait, held_ep, (long)ev, 32, ms, 0, 8);
	}
	return 0;
}

/* Makes held_ep, once (lock held). */
static bool make_ep(void)
{
	int fd;

	if (held_ep >= 0)
		return true;
	fd = (int)esca_raw(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0, 0, 0, 0);
	if (fd < 0)
		return false;
	held_ep = esca_own_fd(fd);
	return true;
}

/*
 * At esca_init(): held_ep now, not with the first deferred send.  It goes
 * above the soft limit (esca_own_fd()), which grows the kernel's fd table,
 * and growing a table that other tasks share -- the ring's io-wq workers,
 * the program's threads -- waits for an RCU grace period: 15 ms on the
 * machines here, an event loop stalled while it serves (lighttpd's SCGI
 * backend, which gives a request 10 ms, answered 500).  The table keeps
 * its size: libesca's later fds fit in it, and a forked child's table
 * is made as large (held_ep is open when it forks).
 */
void esca_held_init(void)
{
	sigset_t old;

	held_enter(&old);
	make_ep();
	held_exit(&old);
}

/* Starts the drainer, once (lock held). */
static bool start_drainer(void)
{
	sigset_t all, old;
	char *stack;
	int r;

	if (!make_ep())
		return false;
	stack = map(DRAINER_STACK);
	if (!stack)
		return false;
	/* the child takes this mask: every signal blocked, for good */
	sigfillset(&all);
	esca_raw(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, (long)&old, 8, 0, 0);
	r = REAL(clone)(drainer_main, stack + DRAINER_STACK,
			CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
				CLONE_SYSVSEM,
			NULL);
	esca_raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8, 0, 0);
	if (r < 0) {
		unmap(stack, DRAINER_STACK);
		esca_log("cannot start the thread that sends what slow readers left (%s): "
			 "sends are not deferred", strerror(errno));
		return false;
	}
	return true;
}

bool esca_drainer_ready(void)
{
	int d = atomic_load_explicit(&drainer, memory_order_acquire);
	sigset_t old;

	if (likely(d))
		return d > 0;
	/* not from a signal handler that interrupted libesca: it may hold the
	 * lock (the next call outside it starts the drainer) */
	if (esca_self && esca_self->busy)
		return false;
	held_enter(&old);
	if (!atomic_load(&drainer))
		atomic_store_explicit(&drainer, start_drainer() ? 1 : -1, memory_order_release);
	held_exit(&old);
	return atomic_load(&drainer) > 0;
}

/* ---- what the flush and the program's calls do -------------------------------------- */

/* The bytes of entry i from `from` on, into h (each entry once). */
static bool take(struct esca_thread *t, unsigned i, uint64_t from, struct held *h)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	size_t n = (size_t)(e->expect - from), got = 0;
	long r;

	if (h->last_slot == t->slot && h->last_seq == m->seq && h->last_seq)
		return true;
	if (!grow(h, n))
		return false;
	if (e->nr == SYS_sendto) {
		/* (an emulated sendfile the ring read is a send of the arena's
		 * bytes by now: backend_uring.c) */
		memcpy(h->buf + h->len, (char *)(uintptr_t)e->args[1] + from, n);
	} else {
		/* sendfile: the file's bytes, now (the program may close it) */
		while (got < n) {
			if (m->offset >= 0)
				r = esca_raw(SYS_pread64, m->in_fd, (long)(h->buf + h->len + got),
					     (long)(n - got),
					     (long)(m->offset + (int64_t)from + (int64_t)got), 0, 0);
			else
				r = esca_raw(SYS_read, m->in_fd, (long)(h->buf + h->len + got),
					     (long)(n - got), 0, 0, 0);
			if (r == -EINTR)
				continue;
			if (r <= 0)
				return false;	/* the file is shorter than promised */
			got += (size_t)r;
		}
	}
	h->len += n;
	atomic_fetch_add(&esca_held_bytes, n);
	h->last_slot = t->slot;
	h->last_seq = m->seq;
	t->st.writes_held++;
	t->st.bytes_held += n;
	return true;
}

bool esca_held_add(struct esca_thread *t, unsigned i, uint64_t sent)
{
	struct esca_meta *m = &t->meta[i];
	uint32_t w = esca_fdw(m->fd);
	struct held *h;
	sigset_t old;
	bool ok;

	held_enter(&old);
	h = find(m->fd);
	if (!h)
		h = new_record(m->fd, esca_fdw_kind(w) == ESCA_FD_TCP ? ESCA_FD_TCP : ESCA_FD_UNIX);
	ok = h && take(t, i, sent, h);
	if (ok) {
		esca_fdw_or(m->fd, ESCA_FDW_HELD | ESCA_FDW_SLOW);
	} else {
		esca_debug("fd %d: cannot keep the rest of a short %s: connection reset", m->fd,
			   m->kind == ESCA_CALL_SENDFILE ? "sendfile (the file is shorter)" :
							   "write (no memory)");
		esca_reset_connection(m->fd, w);
		t->st.resets++;
		t->st.bytes_lost += t->table[i].expect - sent;
		if (h && h->len == h->off)
			drop(h);
	}
	held_exit(&old);
	return ok;
}

/* fd's socket goes on as libesca's own fd (the number is about to be
 * closed or replaced by the program); it is closed when drained.  Lock
 * held. */
static void detach(struct held *h)
{
	long nfd;

	if (h->own >= 0)
		return;
	nfd = esca_raw(SYS_fcntl, h->fd, F_DUPFD_CLOEXEC, 0, 0, 0, 0);
	if (nfd < 0) {
		/* no fd left to keep it: what is held cannot go out */
		expire(h);
		return;
	}
	h->own = esca_own_fd((int)nfd);
	ep_ctl(EPOLL_CTL_ADD, h->own, (uint32_t)(h - held));
	esca_fdw_clear(h->fd, ESCA_FDW_HELD);
	h->fd = -1;
	h->close_own = true;
}

bool esca_held_behind(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	struct held *h;
	sigset_t old;
	int how;

	held_enter(&old);
	h = find(m->fd);
	if (!h) {
		/* the drainer sent them all meanwhile: the entry runs as any */
		held_exit(&old);
		return false;
	}
	switch (e->nr) {
	case SYS_sendto:
	case SYS_sendfile:
		if (!take(t, i, 0, h)) {
			esca_reset_connection(m->fd, esca_fdw(m->fd));
			t->st.resets++;
			t->st.bytes_lost += e->expect;
			drop(h);
		}
		e->result = (int64_t)e->expect;
		break;
	case SYS_close:
		detach(h);
		esca_raw(SYS_close, m->fd, 0, 0, 0, 0, 0);
		e->result = 0;
		break;
	case SYS_shutdown:
		how = (int)e->args[1];
		if (how != SHUT_WR)
			esca_raw(SYS_shutdown, m->fd, SHUT_RD, 0, 0, 0, 0);
		if (how != SHUT_RD)
			h->shut_wr = true;
		e->result = 0;
		break;
	default:
		e->result = esca_raw((long)e->nr, (long)e->args[0], (long)e->args[1],
				     (long)e->args[2], (long)e->args[3], (long)e->args[4],
				     (long)e->args[5]);
		break;
	}
	e->status = ESCA_ST_DONE;
	held_exit(&old);
	return true;
}

int esca_held_push_fd(int fd, int flags)
{
	struct held *h;
	bool gone = false, drained, blocking = false, shut;
	sigset_t old;
	long fl;

	for (;;) {
		held_enter(&old);
		h = find(fd);
		if (!h) {
			held_exit(&old);
			return 0;
		}
		shut = h->shut_wr;
		drained = !shut && push(h, now_ms(), &gone);
		if (!drained && !gone && !shut) {
			fl = esca_raw(SYS_fcntl, fd, F_GETFL, 0, 0, 0, 0);
			blocking = fl >= 0 && !(fl & O_NONBLOCK) && !(flags & MSG_DONTWAIT);
		}
		held_exit(&old);
		if (drained)
			return 0;
		if (shut) {
			/* sending after shutdown(SHUT_WR): as the kernel answers */
			if (!(flags & MSG_NOSIGNAL))
				esca_raw(SYS_tgkill, esca_raw(SYS_getpid, 0, 0, 0, 0, 0, 0),
					 esca_raw(SYS_gettid, 0, 0, 0, 0, 0, 0), SIGPIPE, 0, 0, 0);
			errno = EPIPE;
			return -1;
		}
		if (gone)
			return 0;	/* reset: the program's call meets it */
		if (!blocking) {
			errno = EAGAIN;
			return -1;
		}
		/* the program made the socket blocking: its call waits */
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		esca_raw(SYS_poll, (long)&p, 1, esca_cfg.write_timeout_ms, 0, 0, 0);
	}
}

int esca_held_close(int fd)
{
	struct held *h;
	sigset_t old;
	long r;

	held_enter(&old);
	h = find(fd);
	if (h)
		detach(h);
	held_exit(&old);
	esca_fd_forget(fd);
	r = esca_raw(SYS_close, fd, 0, 0, 0, 0, 0);
	if (r < 0 && r != -EINTR) {
		errno = (int)-r;
		return -1;
	}
	return 0;
}

int esca_held_shutdown(int fd, int how)
{
	struct held *h;
	sigset_t old;
	long r = 0;

	held_enter(&old);
	h = find(fd);
	if (h && how >= SHUT_RD && how <= SHUT_RDWR) {
		if (how != SHUT_WR)
			r = esca_raw(SYS_shutdown, fd, SHUT_RD, 0, 0, 0, 0);
		if (how != SHUT_RD)
			h->shut_wr = true;
	} else {
		r = esca_raw(SYS_shutdown, fd, how, 0, 0, 0, 0);
	}
	held_exit(&old);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return 0;
}

void esca_held_detach(int fd)
{
	struct held *h;
	sigset_t old;

	held_enter(&old);
	h = find(fd);
	if (h)
		detach(h);
	held_exit(&old);
}

void esca_held_detach_range(unsigned first, unsigned last)
{
	sigset_t old;

	if (!atomic_load(&esca_held_count))
		return;
	held_enter(&old);
	for (unsigned i = 0; i < held_cap; i++)
		if (held[i].used && held[i].fd >= 0 && (unsigned)held[i].fd >= first &&
		    (unsigned)held[i].fd <= last)
			detach(&held[i]);
	held_exit(&old);
}

void esca_held_fd_moved(int from, int to)
{
	sigset_t old;

	held_enter(&old);
	for (unsigned i = 0; i < held_cap; i++)
		if (held[i].used && held[i].own == from)
			held[i].own = to;
	if (held_ep == from)
		held_ep = to;
	held_exit(&old);
}

/* Before the process image goes (exit, exec): every held byte out, or its
 * connection reset after ESCA_WRITE_TIMEOUT_MS without progress. */
void esca_held_drain_all(void)
{
	int64_t next, now;
	struct pollfd p;
	sigset_t old;

	while (atomic_load(&esca_held_count) && held_ep >= 0) {
		held_enter(&old);
		next = push_all();
		held_exit(&old);
		if (!atomic_load(&esca_held_count))
			break;
		now = now_ms();
		if (next < 0)	/* AF_UNIX peers only: one more timeout */
			next = now + esca_cfg.write_timeout_ms;
		p = (struct pollfd){ .fd = held_ep, .events = POLLIN };
		if (esca_raw(SYS_poll, (long)&p, 1, next > now ? next - now : 0, 0, 0, 0) == 0 &&
		    next <= now_ms()) {
			held_enter(&old);
			for (unsigned i = 0; i < held_cap; i++)
				if (held[i].used)
					expire(&held[i]);
			held_exit(&old);
		}
	}
}

void esca_held_fork_prepare(void)
{
	lock_word();
}

void esca_held_fork_parent(void)
{
	unlock_word();
}

void esca_held_after_fork(void)
{
	/* the parent's bytes are the parent's to send, by its drainer, which
	 * did not come along; the sockets it keeps for them must not stay open
	 * here (their FIN would wait for this child) */
	for (unsigned i = 0; i < held_cap; i++) {
		if (!held[i].used)
			continue;
		if (held[i].buf)
			unmap(held[i].buf, held[i].cap);
		if (held[i].own >= 0)
			esca_own_close(held[i].own);
	}
	if (held)
		unmap(held, held_cap * sizeof(*held));
	held = NULL;
	held_cap = 0;
	if (held_ep >= 0)
		esca_own_close(held_ep);
	held_ep = -1;
	atomic_store(&esca_held_count, 0);
	atomic_store(&esca_held_bytes, 0);
	atomic_store(&held_word, 0);
	atomic_store(&drainer, 0);
}
