// SPDX-License-Identifier: MIT
/*
 * The io_uring backend: one ring per thread; a run is one io_uring_enter()
 * that submits a round of the batch and reaps its completions.
 *
 * Order.  A round is the batch's entries, from the table's head, as one
 * IOSQE_IO_LINK chain in program order, across fds: each op starts when the
 * one before it completed in full.  Every data op is non-blocking
 * (RWF_NOWAIT / MSG_DONTWAIT) so the whole round completes inside the one
 * enter, and a short or failed op breaks the chain: the rest comes back
 * -ECANCELED and runs in the next round (flush.c finishes the short one
 * first).  An op io_uring would not break a chain on when short (a SEND with
 * the program's flags) ends its round; an op the ring does not run
 * (setsockopt before Linux 6.7, a sendfile without an offset or larger than
 * ESCA_URING_COPY_MAX) runs directly between rounds.  A round of fewer ring
 * ops than ESCA_URING_MIN_OPS runs directly: a one-op ring round trip costs
 * more than the syscall.
 *
 * Lifetime.  A ring is never torn down while its thread lives on.  When the
 * last reference to a ring goes, the kernel's teardown (io_ring_exit_work)
 * queues task work with TWA_SIGNAL on every task on the ring's task list --
 * and the creating task is on it from io_uring_setup() on.  That task work
 * interrupts whatever the thread is blocked in at the moment: epoll_wait()
 * fails with EINTR although no signal was sent (issue 10).  So:
 *   - no throwaway ring: uring_probe() asks io_uring_setup() for an
 *     EFAULT instead of setting a ring up;
 *   - the thread's ring fd is registered (IORING_REGISTER_RING_FDS, Linux
 *     5.18) and closed at once: the ring holds no fd number, and the
 *     kernel drops it in io_uring_files_cancel() / io_uring_task_cancel()
 *     when the thread exits or execs, after taking the thread off the
 *     ring's task list: no task work, nobody interrupted;
 *   - the rings are io_uring_ring_dontfork()ed: a forked child has neither
 *     the memory nor (registered) an fd of them, and drops nothing;
 *   - libesca only unmaps a ring's memory (thread exit, a ring found
 *     unusable); without ring registration the fd is kept among libesca's
 *     own fds (esca_own_fd()) and closed when the thread exits.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <string.h>
#include <sys/mman.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

enum op {
	OP_DIRECT,
	OP_WRITE,	/* a send without flags: WRITE (SEND when it ends the round) */
	OP_SEND,	/* a send with the program's flags: SEND, ends its round */
	OP_CLOSE,
	OP_SHUTDOWN,
	OP_COPYFILE,	/* sendfile as READ + WRITE through the arena */
	OP_SOCKOPT,	/* setsockopt as SOCKET_URING_OP_SETSOCKOPT (Linux 6.7) */
};

/* The socket command of IORING_OP_URING_CMD (Linux 6.7): not in the
 * headers of older liburing releases. */
#define ESCA_SOCKET_URING_OP_SETSOCKOPT	3

/* IORING_OP_EPOLL_WAIT (Linux 6.15): not in the headers of older liburing
 * releases (bookworm has 2.3); probed on each ring, never assumed. */
#define ESCA_IORING_OP_EPOLL_WAIT	59

/* user_data of the carried wait and of its cancellation (entries use i * 2
 * and i * 2 + 1) */
#define WAIT_TAG	(~0ULL)
#define CANCEL_TAG	(~0ULL - 1)
#define TIMEOUT_TAG	(~0ULL - 2)

struct esca_uring {
	struct io_uring ring;
	bool has_shutdown;
	bool has_epoll_wait;	/* EPOLL_WAIT op and IORING_FEAT_EXT_ARG */
	bool has_sockopt;	/* URING_CMD and a kernel with socket commands */
	bool broken;	/* an enter failed: the ring is not used again */
	/* the round in the ring: its entries, the CQEs still to come (a jump
	 * out of a signal handler may leave it for settle()) */
	unsigned round_first, round_end;
	unsigned inflight;
	uint8_t *op;	/* per entry, sized by the table */
	size_t map_size;
};

/*
 * Whether the running kernel is at least major.minor.  The socket commands
 * of URING_CMD (6.7) have no opcode of their own to probe; a kernel that
 * still lacks one answers the op with -EOPNOTSUPP, and the call then runs
 * directly (ring_flush()), so a wrong answer here costs time, not results.
 */
static bool kernel_at_least(unsigned major, unsigned minor)
{
	static int known;	/* 0: not read; 1: no; 2: yes (benign race) */
	struct utsname u;
	unsigned a = 0, b = 0;

	if (!known) {
		known = uname(&u) == 0 && sscanf(u.release, "%u.%u", &a, &b) == 2 &&
				(a > major || (a == major && b >= minor)) ? 2 : 1;
	}
	return known == 2;
}

static bool probe_ops(struct io_uring *ring, bool *has_shutdown, bool *has_epoll_wait,
		      bool *has_sockopt)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool ok;

	if (!p)
		return false;
	ok = io_uring_opcode_supported(p, IORING_OP_WRITE) &&
	     io_uring_opcode_supported(p, IORING_OP_SEND) &&
	     io_uring_opcode_supported(p, IORING_OP_READ) &&
	     io_uring_opcode_supported(p, IORING_OP_SENDMSG) &&
	     io_uring_opcode_supported(p, IORING_OP_CLOSE);
	if (has_shutdown)
		*has_shutdown = io_uring_opcode_supported(p, IORING_OP_SHUTDOWN);
	*has_sockopt = io_uring_opcode_supported(p, IORING_OP_URING_CMD) && kernel_at_least(6, 7);
	*has_epoll_wait = p->last_op >= ESCA_IORING_OP_EPOLL_WAIT &&
			  io_uring_opcode_supported(p, ESCA_IORING_OP_EPOLL_WAIT) &&
			  (ring->features & IORING_FEAT_EXT_ARG);
	io_uring_free_probe(p);
	return ok;
}

/*
 * Whether io_uring_setup() is allowed here, without setting a ring up (see
 * Lifetime above): with a NULL params pointer it fails with EFAULT after
 * every check that would refuse it (sysctl kernel.io_uring_disabled,
 * seccomp, LSM).  The ops are probed on each thread's real ring.
 */
static int uring_probe(void)
{
	long r = REAL(syscall)(__NR_io_uring_setup, 0, NULL);

	if (r >= 0) {		/* cannot happen; do not leak it */
		REAL(syscall)(SYS_close, r);
		return 0;
	}
	return errno == EFAULT ? 0 : -errno;
}

static int ring_init(struct io_uring *ring, unsigned entries)
{
	unsigned want = esca_cfg.uring_setup;
	unsigned flag_sets[3], nsets = 0, k;
	struct io_uring_params p;
	int err = -EINVAL;

	/* newest features first (as ESCA_URING_SETUP allows); older kernels
	 * reject unknown flags */
	if ((want & ESCA_RING_DEFER) && (want & ESCA_RING_COOP))
		flag_sets[nsets++] = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
				     IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	else if (want & ESCA_RING_DEFER)
		flag_sets[nsets++] = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (want & ESCA_RING_COOP)
		flag_sets[nsets++] = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	flag_sets[nsets++] = 0;
	for (k = 0; k < nsets; k++) {
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[k];
		err = io_uring_queue_init_params(entries, ring, &p);
		if (err != -EINVAL)
			return err;
	}
	return err;
}

static void uring_thread_fini(struct esca_thread *t, bool after_fork);

/*
 * Takes the ring's fd out of the program's way: registered with the thread
 * and closed, so that the ring holds no fd number at all and the kernel
 * drops it when the thread exits or execs; where rings cannot be
 * registered (before Linux 5.18, or the thread's 16 slots taken), the fd
 * moves among libesca's own fds.  liburing enters a registered ring through
 * enter_ring_fd; nothing else uses ring_fd after set-up.
 */
static void hide_ring_fd(struct io_uring *ring)
{
	if ((esca_cfg.uring_setup & ESCA_RING_REGISTER) && io_uring_register_ring_fd(ring) == 1) {
		REAL(syscall)(SYS_close, ring->ring_fd);
		ring->ring_fd = -1;
		return;
	}
	ring->ring_fd = esca_own_fd(ring->ring_fd);
	ring->enter_ring_fd = ring->ring_fd;
}

static int uring_thread_init(struct esca_thread *t)
{
	struct esca_uring *u;
	size_t sz;
	bool usable;
	int err;

	/* io_uring_setup() installs the ring's fd last, after putting this
	 * thread on the ring's task list: failing there (EMFILE: the program
	 * uses every fd it may have) tears the new ring down with task work on
	 * this thread (Lifetime, above).  Make sure a number is free first. */
	err = (int)REAL(syscall)(SYS_openat, AT_FDCWD, "/", O_PATH | O_CLOEXEC);
	if (err < 0 && (errno == EMFILE || errno == ENFILE))
		return -errno;
	if (err >= 0)
		REAL(syscall)(SYS_close, err);

	sz = sizeof(*u) + t->cap + 64;
	u = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u == MAP_FAILED)
		return -errno;
	u->op = (uint8_t *)(u + 1);
	u->map_size = sz;

	/* two SQEs per entry at most (read + write of an emulated sendfile),
	 * and the wait with its timeout */
	err = ring_init(&u->ring, 2 * t->cap + 2);
	if (err < 0)
		goto fail;	/* nothing was set up */
	/* a forked child must not share the rings with us */
	io_uring_ring_dontfork(&u->ring);
	usable = probe_ops(&u->ring, &u->has_shutdown, &u->has_epoll_wait, &u->has_sockopt);
	hide_ring_fd(&u->ring);
	t->uring = u;
	/* measured here: one enter with the batch and an EPOLL_WAIT op costs
	 * more CPU than the flush and a plain epoll_wait (docs/libesca.md), so
	 * only where every batch goes to the ring anyway (ESCA_ADAPT=0) */
	t->can_wait = usable && u->has_epoll_wait && esca_cfg.flush_wait && !esca_cfg.adapt;
	if (!usable) {
		/* its memory goes now; a registered ring stays with the thread
		 * until it exits, an unregistered one goes with its fd (kernels
		 * that lack these ops, before 5.6, queue no task work) */
		uring_thread_fini(t, false);
		return -EOPNOTSUPP;
	}
	return 0;
fail:
	munmap(u, sz);
	return err;
}

static void uring_thread_fini(struct esca_thread *t, bool after_fork)
{
	struct esca_uring *u = t->uring;
	struct io_uring *ring;

	if (!u)
		return;
	ring = &u->ring;
	/* after fork: the ring's memory was not inherited (dontfork) and a
	 * registered ring belongs to the parent's thread; an unregistered
	 * one's fd is the child's copy (closing it tears nothing down) */
	if (!after_fork) {
		munmap(ring->sq.sqes, sizeof(struct io_uring_sqe) * ring->sq.ring_entries);
		munmap(ring->sq.ring_ptr, ring->sq.ring_sz);
		if (ring->cq.ring_ptr && ring->cq.ring_ptr != ring->sq.ring_ptr)
			munmap(ring->cq.ring_ptr, ring->cq.ring_sz);
	}
	if (ring->ring_fd >= 0)
		esca_own_close(ring->ring_fd);
	munmap(u, u->map_size);
	t->uring = NULL;
}

static int uring_own_fd(const struct esca_thread *t)
{
	const struct esca_uring *u = t->uring;

	return u ? u->ring.ring_fd : -1;
}

static void uring_fd_moved(struct esca_thread *t, int fd)
{
	struct esca_uring *u = t->uring;

	u->ring.ring_fd = fd;
	u->ring.enter_ring_fd = fd;
}

/* The ring op of entry i (QUEUED, runnable), as the last of its round or not. */
static enum op classify(const struct esca_uring *u, const struct esca_thread *t, unsigned i)
{
	const struct esca_entry *e = &t->table[i];
	const struct esca_meta *m = &t->meta[i];

	if (m->flags & ESCA_META_DIRECT)
		return OP_DIRECT;
	switch (e->nr) {
	case SYS_sendto:
		/* WRITE ends the chain when short; the flags of a send (MSG_MORE,
		 * MSG_NOSIGNAL) need SEND, which does not: it ends the round */
		return m->sock_flags & ~MSG_DONTWAIT ? OP_SEND : OP_WRITE;
	case SYS_close:
		return OP_CLOSE;
	case SYS_shutdown:
		return u->has_shutdown ? OP_SHUTDOWN : OP_DIRECT;
	case SYS_sendfile:
		return m->data ? OP_COPYFILE : OP_DIRECT;
	case SYS_setsockopt:
		return u->has_sockopt && esca_cfg.uring_sockopt ? OP_SOCKOPT : OP_DIRECT;
	default:
		return OP_DIRECT;
	}
}

static void prep(struct esca_uring *u, struct esca_thread *t, unsigned i, bool link)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	int fd = (int)e->args[0];

	switch (u->op[i]) {
	case OP_WRITE:
		/* SEND is the shorter path into a socket, but a short SEND does
		 * not break a chain: only the last op of a round may use it */
		if (!link) {
			io_uring_prep_send(sqe, fd, (void *)(uintptr_t)e->args[1], (size_t)e->expect,
					   MSG_DONTWAIT | MSG_NOSIGNAL);
			break;
		}
		io_uring_prep_write(sqe, fd, (void *)(uintptr_t)e->args[1], (unsigned)e->expect, -1);
		sqe->rw_flags = RWF_NOWAIT;
		break;
	case OP_SEND:
		io_uring_prep_send(sqe, fd, (void *)(uintptr_t)e->args[1], (size_t)e->expect,
				   m->sock_flags | MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case OP_CLOSE:
		io_uring_prep_close(sqe, fd);
		break;
	case OP_SOCKOPT:
		/* cmd_op in off, level and optname in addr, optlen in
		 * splice_fd_in, optval in addr3 (the 6.7 layout) */
		io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
		sqe->off = ESCA_SOCKET_URING_OP_SETSOCKOPT;
		sqe->addr = (uint64_t)(uint32_t)e->args[1] | (uint64_t)(uint32_t)e->args[2] << 32;
		sqe->splice_fd_in = (int32_t)e->args[4];
		sqe->addr3 = e->args[3];
		break;
	case OP_SHUTDOWN:
		io_uring_prep_shutdown(sqe, fd, (int)e->args[1]);
		break;
	case OP_COPYFILE:
		io_uring_prep_read(sqe, m->in_fd, m->data, (unsigned)e->expect, (uint64_t)m->offset);
		sqe->rw_flags = RWF_NOWAIT;
		sqe->flags |= IOSQE_IO_LINK;
		io_uring_sqe_set_data64(sqe, (uint64_t)i * 2 + 1);
		sqe = io_uring_get_sqe(&u->ring);
		io_uring_prep_write(sqe, fd, m->data, (unsigned)e->expect, -1);
		sqe->rw_flags = RWF_NOWAIT;
		break;
	}
	if (link)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, (uint64_t)i * 2);
	e->status = ESCA_ST_INFLIGHT;
}

/*
 * The round from `first`: the runnable entries the ring can run, in
 * program order, to be one link chain.  It ends before an entry that runs
 * directly and after one whose short result would not break the chain
 * (SEND).  Returns its end; *nsqe the SQEs it takes.
 */
static unsigned round_end(struct esca_uring *u, struct esca_thread *t, unsigned first,
			  unsigned *nsqe)
{
	unsigned end = first;

	*nsqe = 0;
	while (end < t->n && esca_entry_runnable(t, end)) {
		enum op op = classify(u, t, end);

		if (op == OP_DIRECT)
			break;
		u->op[end] = (uint8_t)op;
		*nsqe += op == OP_COPYFILE ? 2 : 1;
		end++;
		if (op == OP_SEND)
			break;
	}
	return end;
}

/*
 * Takes every CQE there is: entries' results into the table (the read half
 * of an emulated sendfile into meta), a carried wait's into w.
 */
struct carried {
	bool done;		/* the wait's CQE came */
	bool cancel_done;	/* the CQE of its cancellation came */
	bool timeout_done;	/* the CQE of its LINK_TIMEOUT came */
	int res, timeout_res;
};

static void reap(struct esca_thread *t, struct esca_uring *u, struct carried *w)
{
	struct io_uring_cqe *cqe;
	unsigned got = 0, head;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);

		got++;
		if (d == WAIT_TAG || d == CANCEL_TAG || d == TIMEOUT_TAG) {
			if (!w)
				continue;
			if (d == WAIT_TAG) {
				w->done = true;
				w->res = cqe->res;
			} else if (d == CANCEL_TAG) {
				w->cancel_done = true;
			} else {
				w->timeout_done = true;
				w->timeout_res = cqe->res;
			}
			continue;
		}
		if (d & 1)
			t->meta[d >> 1].aux_result = cqe->res;
		else
			t->table[d >> 1].result = cqe->res;
		u->inflight--;
	}
	io_uring_cq_advance(&u->ring, got);
}

/*
 * Entries [first, end) came back: each is DONE, or QUEUED again to run
 * directly when the ring did not run it (a broken chain cancelled it, the
 * ring refused it, an emulated sendfile could not read its file at once).
 */
static void round_results(struct esca_thread *t, unsigned first, unsigned end)
{
	for (unsigned i = first; i < end; i++) {
		struct esca_entry *e = &t->table[i];
		struct esca_meta *m = &t->meta[i];
		bool copy = e->nr == SYS_sendfile;

		if (e->result == -ECANCELED || e->result == -EOPNOTSUPP || e->result == -EINVAL ||
		    (copy && m->aux_result != (int64_t)e->expect)) {
			m->flags |= ESCA_META_DIRECT;
			e->status = ESCA_ST_QUEUED;
			continue;
		}
		if (copy) {
			/* the bytes are in the arena: it finishes as a send of them */
			e->nr = SYS_sendto;
			e->args[1] = (uint64_t)(uintptr_t)m->data;
			e->args[2] = e->expect;
			e->args[3] = MSG_NOSIGNAL;
			m->sock_flags = MSG_NOSIGNAL;
		}
		e->status = ESCA_ST_DONE;
	}
}

/* What a jump out of a handler left in the ring: its CQEs, now. */
static void uring_settle(struct esca_thread *t)
{
	struct esca_uring *u = t->uring;
	struct io_uring_cqe *cqe;

	if (u && u->round_end > u->round_first) {
		/* SQEs prepared but never submitted are submitted now */
		if (io_uring_sq_ready(&u->ring))
			io_uring_submit(&u->ring);
		while (u->inflight > 0) {
			reap(t, u, NULL);
			if (u->inflight > 0 && io_uring_wait_cqe(&u->ring, &cqe) < 0)
				break;
		}
		round_results(t, u->round_first, u->round_end);
		u->round_first = u->round_end = 0;
	}
	/* whatever is still INFLIGHT (a ring that failed) runs directly */
	for (unsigned i = t->head; i < t->n; i++)
		if (t->table[i].status == ESCA_ST_INFLIGHT) {
			t->meta[i].flags |= ESCA_META_DIRECT;
			t->table[i].status = ESCA_ST_QUEUED;
		}
}

/* The ring failed under us (its fd closed or replaced behind libesca's
 * back ...): this thread's calls run directly from now on. */
static void ring_broken(struct esca_uring *u, int err)
{
	esca_log("thread %d: io_uring_enter failed (%s); this thread runs its calls directly",
		 (int)gettid(), strerror(-err));
	u->broken = true;
	u->inflight = 0;
}

static unsigned uring_run(struct esca_thread *t, unsigned first)
{
	struct esca_uring *u = t->uring;
	struct io_uring_cqe *cqe;
	unsigned end, nsqe, i;
	int r;

	if (unlikely(u->broken))
		return 0;
	end = round_end(u, t, first, &nsqe);
	if (end == first || nsqe < esca_cfg.uring_min_ops)
		return 0;
	u->round_first = first;
	u->round_end = end;
	u->inflight = nsqe;
	for (i = first; i < end; i++)
		prep(u, t, i, i + 1 < end);
	do
		r = io_uring_submit_and_wait(&u->ring, nsqe);
	while (r == -EINTR);
	t->st.kernel_entries++;
	if (unlikely(r < 0)) {
		ring_broken(u, r);
		for (i = first; i < end; i++)
			t->table[i].status = ESCA_ST_QUEUED;
		u->round_first = u->round_end = 0;
		return 0;
	}
	/* every op is non-blocking, so all completions are there; wait for
	 * any straggler rather than reuse memory it may still read */
	while (u->inflight > 0) {
		reap(t, u, NULL);
		if (u->inflight > 0 && io_uring_wait_cqe(&u->ring, &cqe) < 0)
			break;
	}
	round_results(t, first, end);
	u->round_first = u->round_end = 0;
	return end - first;
}

/*
 * The wait's timeout as io_uring_enter() takes it: false when the ring
 * cannot carry this wait the plain call's way (timeout 0, which must not
 * block at all).  *ts NULL: no timeout.
 */
static bool wait_timeout(const struct esca_entry *w, struct __kernel_timespec *buf,
			 struct __kernel_timespec **ts)
{
	int ms = (int)w->args[3];

	*ts = NULL;
	if (ms < 0)
		return true;
	if (ms == 0)
		return false;
	buf->tv_sec = ms / 1000;
	buf->tv_nsec = (long long)(ms % 1000) * 1000000;
	*ts = buf;
	return true;
}

/*
 * The batch and the wait in one io_uring_enter(): every pending entry in
 * one IOSQE_IO_LINK chain in program order, then the EPOLL_WAIT op, then
 * (with a timeout) a LINK_TIMEOUT for it.  The wait starts only when every
 * op of the batch completed in full: a short or failed op breaks the chain,
 * the wait comes back -ECANCELED, and the caller makes it itself after the
 * batch is finished.  A batch with an op the ring cannot run in the chain
 * is not carried: it runs the plain way.
 *
 * The enter waits for every CQE.  io_uring_enter() returns the number it
 * submitted even when a signal cut its wait short, so the signal shows as
 * CQEs missing: the wait is then cancelled and reaped -- if it completed
 * meanwhile its events are the result, never lost; else -EINTR, as
 * epoll_wait.  The timeout is an op (LINK_TIMEOUT), never the enter's, so
 * that nothing else ends the enter early.
 */
static bool uring_run_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	struct esca_uring *u = t->uring;
	struct __kernel_timespec tsbuf, *ts;
	struct carried cw = { .done = false };
	unsigned first = t->head, n = t->n, i, nsqe = 0, extra;
	struct io_uring_sqe *sqe;
	bool cancelled = false;
	int r;

	if (unlikely(u->broken) || (int)w->args[2] <= 0 || !wait_timeout(w, &tsbuf, &ts))
		return false;
	for (i = first; i < n; i++) {
		enum op op = classify(u, t, i);

		if (op == OP_DIRECT || op == OP_SEND)
			return false;
		u->op[i] = (uint8_t)op;
		nsqe += op == OP_COPYFILE ? 2 : 1;
	}
	u->round_first = first;
	u->round_end = n;
	u->inflight = nsqe;
	for (i = first; i < n; i++) {
		/* a WRITE even last: a short one must stop the wait */
		if (u->op[i] == OP_WRITE) {
			struct esca_entry *e = &t->table[i];

			sqe = io_uring_get_sqe(&u->ring);
			io_uring_prep_write(sqe, (int)e->args[0], (void *)(uintptr_t)e->args[1],
					    (unsigned)e->expect, -1);
			sqe->rw_flags = RWF_NOWAIT;
			sqe->flags |= IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, (uint64_t)i * 2);
			e->status = ESCA_ST_INFLIGHT;
			continue;
		}
		prep(u, t, i, true);
	}
	sqe = io_uring_get_sqe(&u->ring);
	io_uring_prep_rw(ESCA_IORING_OP_EPOLL_WAIT, sqe, (int)w->args[0],
			 (void *)(uintptr_t)w->args[1], (unsigned)w->args[2], 0);
	io_uring_sqe_set_data64(sqe, WAIT_TAG);
	extra = 1;
	if (ts) {
		sqe->flags |= IOSQE_IO_LINK;
		sqe = io_uring_get_sqe(&u->ring);
		io_uring_prep_link_timeout(sqe, ts, 0);
		io_uring_sqe_set_data64(sqe, TIMEOUT_TAG);
		extra = 2;
	}

	r = io_uring_submit_and_wait(&u->ring, nsqe + extra);
	t->st.kernel_entries++;
	if (unlikely(r < 0 && io_uring_sq_ready(&u->ring))) {
		ring_broken(u, r);
		for (i = first; i < n; i++)
			t->table[i].status = ESCA_ST_QUEUED;
		u->round_first = u->round_end = 0;
		return false;
	}
	for (;;) {
		reap(t, u, &cw);
		if (u->inflight == 0 && cw.done && (!ts || cw.timeout_done) &&
		    (!cancelled || cw.cancel_done))
			break;
		if (!cw.done && !cancelled) {
			/* the enter came back before the wait: a signal, whose
			 * handler has run; the wait is still armed */
			sqe = io_uring_get_sqe(&u->ring);
			io_uring_prep_cancel64(sqe, WAIT_TAG, 0);
			io_uring_sqe_set_data64(sqe, CANCEL_TAG);
			cancelled = true;
		}
		/* what is missing comes at once */
		do
			r = io_uring_submit_and_wait(&u->ring, 1);
		while (r == -EINTR);
		t->st.kernel_entries++;
		if (r < 0)
			break;
	}
	round_results(t, first, n);
	u->round_first = u->round_end = 0;
	if (!cw.done)
		return false;	/* the ring failed under us: the caller waits */
	if (cw.res == -ECANCELED) {
		if (cancelled) {
			*res = -EINTR;
			return true;
		}
		if (ts && cw.timeout_res == -ETIME) {
			*res = 0;
			return true;
		}
		return false;	/* the chain broke: the batch stopped before the wait */
	}
	*res = cw.res;
	return true;
}

const struct esca_backend_ops esca_uring_ops = {
	.id = ESCA_BACKEND_URING,
	.name = "uring",
	.what = "io_uring",
	.fix = "check sysctl kernel.io_uring_disabled and seccomp",
	.measured = true,
	.probe = uring_probe,
	.thread_init = uring_thread_init,
	.thread_fini = uring_thread_fini,
	.run = uring_run,
	.run_wait = uring_run_wait,
	.settle = uring_settle,
	.own_fd = uring_own_fd,
	.fd_moved = uring_fd_moved,
};
