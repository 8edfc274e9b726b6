// SPDX-License-Identifier: MIT
/*
 * Flushing a thread's table, and what happens to each result.
 *
 * Every real result is checked.  A write that sent fewer bytes than the
 * caller was told is completed here (the rest is sent, waiting for the fd
 * to become writable, at most ESCA_WRITE_TIMEOUT_MS in all).  An error on a
 * socket whose peer is gone is counted and dropped; any other error is
 * counted, and reported when ESCA_DEBUG is set.  Bytes that could not be
 * sent are counted in bytes_lost: nothing is lost without a count.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
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
	return syscall((long)e->nr, e->args[0], e->args[1], e->args[2], e->args[3], e->args[4],
		       e->args[5]);
}

void esca_run_direct(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	long r;

	do
		r = raw6(e);
	while (r < 0 && errno == EINTR && e->nr != SYS_close);
	e->result = r < 0 ? -errno : r;
	e->status = ESCA_ST_DONE;
	t->st.direct_calls++;
	esca_finish_entry(t, i);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends bytes [done, expect) of a data entry, as the same kind of call. */
static long send_rest(const struct esca_entry *e, const struct esca_meta *m, uint64_t done)
{
	uint64_t rest = e->expect - done;
	off_t off;

	switch (e->nr) {
	case SYS_write:
		return syscall(SYS_write, e->args[0], e->args[1] + done, rest);
	case SYS_sendto:
		return syscall(SYS_sendto, e->args[0], e->args[1] + done, rest, e->args[3],
			       e->args[4], e->args[5]);
	case SYS_sendfile:
		if (m->offset < 0)
			return syscall(SYS_sendfile, e->args[0], e->args[1], NULL, rest);
		off = (off_t)(m->offset + (int64_t)done);
		return syscall(SYS_sendfile, e->args[0], e->args[1], &off, rest);
	default:
		errno = EINVAL;
		return -1;
	}
}

/* Completes a data entry of which `done` bytes went out. */
static void complete_write(struct esca_thread *t, unsigned i, uint64_t done)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	int64_t deadline = now_ms() + esca_cfg.write_timeout_ms;
	int fd = (int)e->args[0];
	uint64_t start = done;
	long r;

	while (done < e->expect) {
		r = send_rest(e, m, done);
		if (r > 0) {
			done += (uint64_t)r;
			continue;
		}
		if (r == 0) {
			/* sendfile at end of file: the file is shorter than the
			 * count the caller was told was sent */
			count_error(t, i, ENODATA, e->expect - done);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int64_t left = deadline - now_ms();

			if (left <= 0 || poll(&p, 1, (int)left) == 0) {
				esca_log("deferred %s(fd=%d): peer did not read for %d ms; %llu bytes "
					 "not sent", call_name(m->kind), fd,
					 esca_cfg.write_timeout_ms,
					 (unsigned long long)(e->expect - done));
				t->st.errors_other++;
				t->st.bytes_lost += e->expect - done;
				return;
			}
			continue;
		}
		count_error(t, i, errno, e->expect - done);
		return;
	}
	t->st.short_writes_completed++;
	t->st.bytes_completed += done - start;
}

void esca_finish_entry(struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	int64_t res = e->result;

	if (e->flags & ESCA_ENTRY_EXPECT) {
		if (res >= 0 && (uint64_t)res == e->expect)
			return;
		if (res >= 0) {
			complete_write(t, i, (uint64_t)res);
			return;
		}
		if (res == -EAGAIN || res == -EINTR) {
			complete_write(t, i, 0);
			return;
		}
		count_error(t, i, (int)-res, e->expect);
		return;
	}
	if (res < 0)
		count_error(t, i, (int)-res, 0);
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

static void flush_backend(struct esca_thread *t)
{
	unsigned i;

	if (t->ops) {
		t->ops->flush(t);
		return;
	}
	for (i = 0; i < t->n; i++)
		esca_run_direct(t, i);
}

/*
 * ESCA_ADAPT, a measured backend (io_uring): a batch goes through the
 * backend or is run as direct calls, whichever was measured cheaper per
 * entry for batches of its size.  Each
 * way is measured once, then the other one is tried one flush in 32 to
 * follow changes, and one flush in 8 of the chosen way is timed.
 */
static void flush_measured(struct esca_thread *t)
{
	unsigned n = t->n, c = size_class(n), i, k = ++t->adapt_flushes;
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
	if (batch) {
		flush_backend(t);
		if (timed)
			learn(&t->cost[c].backend, (esca_stamp() - t0) / n);
		t->st.batched_flushes++;
	} else {
		for (i = 0; i < n; i++)
			esca_run_direct(t, i);
		if (timed)
			learn(&t->cost[c].direct, (esca_stamp() - t0) / n);
		t->st.direct_flushes++;
	}
}

/* What every flush of t's n entries leaves behind. */
static void flushed(struct esca_thread *t, unsigned n)
{
	unsigned i;

	t->st.flushes++;
	t->st.flushed_calls += n;
	t->seg_entries += n;
	for (i = 0; i < n; i++) {
		t->fd_filter[esca_fd_hash(t->meta[i].fd) >> 6] = 0;
		if (t->meta[i].in_fd >= 0)
			t->fd_filter[esca_fd_hash(t->meta[i].in_fd) >> 6] = 0;
	}
	t->n = 0;
	t->arena_used = 0;
	t->carrying = false;
	t->flushing = false;
}

int esca_flush_thread(struct esca_thread *t)
{
	unsigned n = t->n;

	if (!n || t->flushing)
		return 0;
	t->flushing = true;
	if (esca_cfg.adapt && n >= 2 && t->ops && t->ops->measured)
		flush_measured(t);
	else
		flush_backend(t);
	flushed(t, n);
	return (int)n;
}

bool esca_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	unsigned n = t->n;
	bool ran;

	if (!n || t->flushing || !t->ops || !t->ops->flush_wait) {
		esca_flush_thread(t);
		return false;
	}
	t->flushing = true;
	ran = t->ops->flush_wait(t, w, res);
	t->st.waits_carried += ran;
	flushed(t, n);
	return ran;
}
