// SPDX-License-Identifier: MIT
/*
 * Running a thread's batch, and what happens to each result.
 *
 * The batch runs in program order, across fds too: the module runs its
 * entries one after the other, io_uring as one link chain (backends).  The
 * table says where each entry stands (status), not the flush's local
 * variables: a flush that a signal handler left by a jump (siglongjmp) is
 * picked up by the next one, and every entry runs exactly once.
 *
 *   QUEUED    not run: given to the backend, or run with syscall(2);
 *   RUNNING   a direct call on its way when a handler jumped out: it ran,
 *             its result is unknown (a data entry's connection is reset:
 *             its stream cannot be known whole);
 *   LOST      the module ran it and could not write its result back (the
 *             program made the table unwritable): settled as RUNNING, but
 *             never run again;
 *   INFLIGHT  in the ring: its CQE will say (backend settle());
 *   DONE      ran: its result is checked (finish_entry()), then
 *   FINISHED; entries [0, head) are.
 *
 * Every real result is checked.  A data entry that came out short on a
 * non-blocking socket keeps the rest, which goes out as the socket drains
 * (held.c): the flush never waits for a peer, later data on that socket
 * goes behind the rest, and a peer that reads nothing for
 * ESCA_WRITE_TIMEOUT_MS is reset.  On a blocking socket the rest is sent
 * as a blocking write would (a send timeout, SO_SNDTIMEO, resets the
 * connection).  A sendfile from a file that turned out shorter resets the
 * connection: the peer would find other bytes where the file's were
 * promised.  An EPIPE raises SIGPIPE where the program's call would have
 * (its MSG_NOSIGNAL, its disposition).  Errors on a socket whose peer is
 * gone are counted (errors_dropped) and mark it broken: the program's later
 * calls on it run at once and fail as the plain ones.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *call_name(unsigned kind)
{
	static const char *const names[ESCA_CALL_KINDS] = {
		"close", "shutdown", "write", "writev", "send", "sendmsg", "sendfile", "setsockopt",
	};

	return kind < ESCA_CALL_KINDS ? names[kind] : "?";
}

static bool peer_gone(int err)
{
	switch (err) {
	case EPIPE:
	case ECONNRESET:
	case ENOTCONN:
	case ESHUTDOWN:
	case ECONNABORTED:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

static void count_error(struct esca_thread *t, unsigned i, int err, uint64_t unsent)
{
	struct esca_meta *m = &t->meta[i];

	if (peer_gone(err)) {
		t->st.errors_dropped++;
		esca_fdw_or(m->fd, ESCA_FDW_BROKEN);
		esca_debug("deferred %s(fd=%d): %s (peer gone; %llu bytes dropped)",
			   call_name(m->kind), m->fd, strerror(err), (unsigned long long)unsent);
		return;
	}
	t->st.errors_other++;
	t->st.bytes_lost += unsent;
	esca_debug("deferred %s(fd=%d) failed: %s (%llu bytes not sent)", call_name(m->kind),
		   m->fd, strerror(err), (unsigned long long)unsent);
}

static long raw6(const struct esca_entry *e)
{
	return REAL(syscall)((long)e->nr, e->args[0], e->args[1], e->args[2], e->args[3],
			     e->args[4], e->args[5]);
}

void esca_run_direct(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	long r;

	e->status = ESCA_ST_RUNNING;
	atomic_signal_fence(memory_order_seq_cst);
	do
		r = raw6(e);
	while (r < 0 && errno == EINTR && e->nr != SYS_close);
	e->result = r < 0 ? -errno : r;
	atomic_signal_fence(memory_order_seq_cst);
	e->status = ESCA_ST_DONE;
	t->st.direct_calls++;
}

bool esca_entry_runnable(const struct esca_thread *t, unsigned i)
{
	const struct esca_meta *m = &t->meta[i];

	return t->table[i].status == ESCA_ST_QUEUED && !(esca_fdw(m->fd) & ESCA_FDW_HELD);
}

/* The thread raises SIGPIPE, as the kernel does for a plain call. */
static void raise_sigpipe(void)
{
	REAL(syscall)(SYS_tgkill, (long)getpid(), (long)gettid(), (long)SIGPIPE);
}

int64_t esca_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends bytes [sent, expect) of a data entry, as the same kind of call. */
static long send_rest(const struct esca_entry *e, const struct esca_meta *m, uint64_t sent)
{
	uint64_t rest = e->expect - sent;
	off_t off;

	if (e->nr == SYS_sendto)
		return REAL(syscall)(SYS_sendto, e->args[0], e->args[1] + sent, rest, e->args[3],
				     0, 0);
	if (m->offset < 0)
		return REAL(syscall)(SYS_sendfile, e->args[0], e->args[1], NULL, rest);
	off = (off_t)(m->offset + (int64_t)sent);
	return REAL(syscall)(SYS_sendfile, e->args[0], e->args[1], &off, rest);
}

/* The send timeout of a blocking socket (SO_SNDTIMEO), in ms; -1: none. */
static int send_timeout_ms(int fd)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) < 0 ||
	    (!tv.tv_sec && !tv.tv_usec))
		return -1;
	return (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

/*
 * A blocking socket: the rest is sent as the program's blocking call would
 * have sent it, waiting for the peer; a send timeout (SO_SNDTIMEO) that
 * expires resets the connection.  Returns with the entry finished.
 */
static void complete_blocking(struct esca_thread *t, unsigned i, uint64_t sent)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	int fd = (int)e->args[0], tmo = send_timeout_ms(fd);
	int64_t deadline = tmo < 0 ? -1 : esca_now_ms() + tmo;
	uint64_t start = sent;
	long r;

	m->sent = sent;
	while (m->sent < e->expect) {
		e->status = ESCA_ST_RUNNING;
		r = send_rest(e, m, m->sent);
		if (r > 0) {
			m->sent += (uint64_t)r;
			continue;
		}
		if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
			int err = r == 0 ? ENODATA : errno;

			e->status = ESCA_ST_DONE;
			if (err == ENODATA) {
				/* sendfile at the end of a file shorter than promised */
				esca_reset_connection(fd, esca_fdw(fd));
				t->st.resets++;
				t->st.bytes_lost += e->expect - m->sent;
				return;
			}
			e->result = -err;
			return;	/* finish_data() counts it */
		}
		if (errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int left = deadline < 0 ? -1 : (int)(deadline - esca_now_ms());

			if ((deadline >= 0 && left <= 0) ||
			    (REAL(poll)(&p, 1, left) == 0 && deadline >= 0)) {
				esca_debug("deferred %s(fd=%d): the peer did not read for %d ms "
					   "(SO_SNDTIMEO): connection reset", call_name(m->kind), fd, tmo);
				esca_reset_connection(fd, esca_fdw(fd));
				t->st.resets++;
				t->st.bytes_lost += e->expect - m->sent;
				e->status = ESCA_ST_DONE;
				e->result = (int64_t)e->expect;
				return;
			}
		}
	}
	e->status = ESCA_ST_DONE;
	e->result = (int64_t)e->expect;
	t->st.short_writes_completed++;
	t->st.bytes_completed += m->sent - start;
}

/* Whether the program's call on fd would have blocked for room. */
static bool blocking_send(const struct esca_meta *m)
{
	int fl = REAL(fcntl)(m->fd, F_GETFL);

	return fl >= 0 && !(fl & O_NONBLOCK) && !(m->sock_flags & MSG_DONTWAIT);
}

/* The result of a data entry (sendto, sendfile). */
static void finish_data(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	int64_t res = e->result;
	uint64_t sent;
	int err;

	if (res == (int64_t)e->expect)
		return;
	if (res >= 0 || res == -EAGAIN || res == -EINTR) {
		sent = res > 0 ? (uint64_t)res : 0;
		if (e->nr == SYS_sendfile && res == 0) {
			/* the file ends before the count the program was told */
			esca_debug("deferred sendfile(fd=%d): the file ended %llu bytes early: "
				   "connection reset", m->fd, (unsigned long long)e->expect);
			esca_reset_connection(m->fd, esca_fdw(m->fd));
			t->st.resets++;
			t->st.bytes_lost += e->expect;
			return;
		}
		if (blocking_send(m)) {
			complete_blocking(t, i, sent);
			if (e->result == (int64_t)e->expect || e->result >= 0)
				return;
			res = e->result;	/* an error while completing */
		} else {
			(void)esca_held_add(t, i, sent);
			return;
		}
	}
	err = (int)-res;
	count_error(t, i, err, e->expect);
	if (err == EPIPE && !(m->sock_flags & MSG_NOSIGNAL) &&
	    !(m->flags & ESCA_META_KERNEL_SIGPIPE)) {
		/* finished first: a handler that jumps out must not raise it again */
		e->status = ESCA_ST_FINISHED;
		t->head = i + 1;
		raise_sigpipe();
	}
}

/* Entry i is DONE: its result is taken care of, and it is FINISHED. */
static void finish_entry(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];

	switch (e->nr) {
	case SYS_sendto:
	case SYS_sendfile:
		finish_data(t, i);
		break;
	case SYS_close:
		/* the number is free: a new fd there is another file */
		esca_fd_closed(m->fd);
		if (e->result < 0)
			count_error(t, i, (int)-e->result, 0);
		break;
	default:
		if (e->result < 0)
			count_error(t, i, (int)-e->result, 0);
		break;
	}
	e->status = ESCA_ST_FINISHED;
	if (t->head == i)
		t->head = i + 1;
}

/*
 * A direct call a handler's jump interrupted (RUNNING) or one the module ran
 * and lost the result of (LOST): it ran, with an unknown result.  A close
 * is done; a data entry's stream cannot be known whole: its connection is
 * reset; anything else that may not have run yet (RUNNING: the jump may
 * have come before the call) runs again, a shutdown or a socket option
 * twice being the same, and a LOST one is done.
 */
static void resolve_unknown(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];

	switch (e->nr) {
	case SYS_close:
		e->result = 0;
		e->status = ESCA_ST_DONE;
		break;
	case SYS_sendto:
	case SYS_sendfile:
		esca_reset_connection(m->fd, esca_fdw(m->fd));
		t->st.resets++;
		e->result = (int64_t)e->expect;
		e->status = ESCA_ST_DONE;
		break;
	default:
		if (e->status == ESCA_ST_LOST) {
			e->result = 0;
			e->status = ESCA_ST_DONE;
		} else {
			esca_run_direct(t, i);
		}
		break;
	}
}

/* What the kernel checks each data entry against (merges grow them). */
static void seal(struct esca_thread *t)
{
	for (unsigned i = t->head; i < t->n; i++) {
		struct esca_entry *e = &t->table[i];

		if (e->status == ESCA_ST_QUEUED && (e->flags & ESCA_ENTRY_EXPECT))
			e->expect = e->nr == SYS_sendfile ? e->args[3] : e->args[2];
	}
}

void esca_sq_take(struct esca_thread *t);

/*
 * Runs the table from head to its end (and what the signal queue adds),
 * through the backend when `via`, else as direct calls.
 */
static void run_all(struct esca_thread *t, bool via)
{
	unsigned i, k;

	for (;;) {
		if (t->head == t->n) {
			if (t->draining ||
			    atomic_load_explicit(&t->sq_tail, memory_order_relaxed) == t->sq_head)
				break;
			/* all finished: the queue's calls go in from the top */
			t->n = t->head = 0;
			t->arena_used = 0;
			esca_sq_take(t);
			seal(t);
			continue;
		}
		i = t->head;
		switch (t->table[i].status) {
		case ESCA_ST_QUEUED:
			if (!esca_entry_runnable(t, i) && esca_held_behind(t, i)) {
				finish_entry(t, i);
				break;
			}
			k = via && t->ops ? t->ops->run(t, i) : 0;
			if (!k)
				esca_run_direct(t, i);
			break;
		case ESCA_ST_RUNNING:
		case ESCA_ST_LOST:
			resolve_unknown(t, i);
			break;
		case ESCA_ST_INFLIGHT:
			if (t->ops && t->ops->settle)
				t->ops->settle(t);
			else
				resolve_unknown(t, i);
			break;
		case ESCA_ST_FINISHED:
			t->head = i + 1;
			break;
		case ESCA_ST_REFUSED:
			/* a jump left the module's refusal unanswered: a plain call */
			esca_run_direct(t, i);
			break;
		default:	/* DONE */
			finish_entry(t, i);
			break;
		}
	}
}

/* Batch-size classes of the cost table: 2-3, 4-7, 8-15, 16-31, 32+. */
static unsigned size_class(unsigned n)
{
	unsigned c = n < 2 ? 0 : 30u - (unsigned)__builtin_clz(n);

	return c > 4 ? 4 : c;
}

/*
 * A timestamp for comparing two ways of flushing on this thread: only the
 * ratio matters, so on x86-64 the cycle counter (no syscall, even where the
 * vDSO clock is not usable, as under QEMU TCG), elsewhere the monotonic
 * clock.
 */
uint64_t esca_stamp(void)
{
#if defined(__x86_64__)
	return __builtin_ia32_rdtsc();
#else
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/*
 * Moving average of per-entry cost (stamp units): down fast (by half the difference), up
 * slowly (by an eighth, a sample counting at most double).  A cold first
 * flush (page faults, first ioctl) must not hide a cheap path for long, and
 * a flush that waited for a slow peer says little about the path.
 */
static void learn(uint32_t *avg, uint64_t sample)
{
	if (!*avg) {
		*avg = (uint32_t)(sample < UINT32_MAX ? sample : UINT32_MAX);
		return;
	}
	if (sample < *avg) {
		*avg -= (uint32_t)((*avg - sample) / 2);
		return;
	}
	if (sample > 2u * *avg)
		sample = 2u * *avg;
	*avg += (uint32_t)((sample - *avg) / 8);
}

bool esca_batch_pays(struct esca_thread *t, unsigned n)
{
	unsigned c = size_class(n);

	/* recording a call costs about a tenth of a small syscall: the backend
	 * must beat direct calls by more than that to pay for it */
	return !t->cost[c].backend || !t->cost[c].direct ||
	       (uint64_t)t->cost[c].backend * 8 < (uint64_t)t->cost[c].direct * 7;
}

/*
 * ESCA_ADAPT, a measured backend (io_uring): a batch goes through the
 * backend or is run as direct calls, whichever was measured cheaper per
 * entry for batches of its size.  Each way is measured once, then the other
 * one is tried one flush in 32 to follow changes, and one flush in 8 of the
 * chosen way is timed.
 */
static void run_measured(struct esca_thread *t)
{
	unsigned n = t->n - t->head, c = size_class(n), k = ++t->adapt_flushes;
	bool batch = t->cost[c].backend <= t->cost[c].direct, timed = (k & 7) == 0;
	uint64_t t0 = 0;

	if (!t->cost[c].backend || !t->cost[c].direct) {
		batch = !t->cost[c].backend;
		timed = true;
	} else if ((k & 31) == 0) {
		batch = !batch;
	}
	if (timed)
		t0 = esca_stamp();
	run_all(t, batch);
	if (timed)
		learn(batch ? &t->cost[c].backend : &t->cost[c].direct, (esca_stamp() - t0) / n);
	if (batch)
		t->st.batched_flushes++;
	else
		t->st.direct_flushes++;
}

/* What every complete flush of n entries leaves behind: an empty table of
 * a new generation (other threads see its entries are gone). */
static void flushed(struct esca_thread *t, unsigned n)
{
	t->st.flushes++;
	t->st.flushed_calls += n;
	t->seg_entries += n;
	esca_fd_filter_clear(t);
	t->n = t->head = 0;
	t->arena_used = 0;
	if (t->closes) {
		t->closes = 0;
		if (esca_multithreaded())
			atomic_fetch_sub(&esca_closes_elsewhere, 1);
	}
	atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
	t->flushing = false;
}

int esca_flush_thread(struct esca_thread *t)
{
	unsigned n = t->n - t->head;

	if (t->flushing ||
	    (!n && atomic_load_explicit(&t->sq_tail, memory_order_relaxed) == t->sq_head))
		return 0;
	t->flushing = true;
	seal(t);
	if (esca_cfg.adapt && n >= 2 && t->ops && t->ops->measured)
		run_measured(t);
	else
		run_all(t, true);
	flushed(t, n);
	return (int)n;
}

bool esca_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	unsigned n = t->n - t->head, i;
	bool ran;

	if (!n || t->flushing || !t->ops || !t->ops->run_wait) {
		esca_flush_thread(t);
		return false;
	}
	for (i = t->head; i < t->n; i++) {
		if (!esca_entry_runnable(t, i)) {
			esca_flush_thread(t);
			return false;
		}
	}
	t->flushing = true;
	seal(t);
	ran = t->ops->run_wait(t, w, res);
	run_all(t, true);
	flushed(t, n);
	return ran;
}

bool esca_flush_foreign(struct esca_thread *t)
{
	unsigned n = t->n - t->head, i;

	/* t's own flush may have been cut short by a jump: what it left in its
	 * ring only t can reap */
	for (i = t->head; i < t->n; i++)
		if (t->table[i].status == ESCA_ST_INFLIGHT)
			return false;
	t->flushing = true;
	seal(t);
	run_all(t, false);
	flushed(t, n);
	return true;
}
