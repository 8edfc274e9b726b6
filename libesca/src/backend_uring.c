// SPDX-License-Identifier: MIT
/*
 * The io_uring backend: one ring per thread; a flush is one
 * io_uring_enter() that submits the batch and reaps its completions.
 *
 * Order.  Entries that share a file descriptor form a group (union-find over
 * fds), and each group is submitted as one IOSQE_IO_LINK chain in program
 * order; different groups are independent.  Every data op is non-blocking
 * (RWF_NOWAIT / MSG_DONTWAIT) so the whole batch completes inside the one
 * enter, and a short or failed op breaks its chain: the rest of that group
 * comes back -ECANCELED and runs directly, after the short write is
 * completed.  An op io_uring would not break a chain on when short (SENDMSG)
 * may only end a group.  setsockopt, sendfile without an offset or larger
 * than ESCA_URING_COPY_MAX, and writes to regular files run directly with
 * their group.  A batch of fewer ring ops than ESCA_URING_MIN_OPS runs
 * directly: a one-op ring round trip costs more than the syscall.
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
	OP_WRITE,	/* write, writev, send without flags */
	OP_SENDMSG,	/* send with flags / address (SEND or SENDMSG): may only end a group */
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
	/* per-entry scratch, sized by the table */
	uint8_t *op;
	int *parent;	/* union-find */
	int *next;	/* next entry of the same group */
	int *tail;	/* last entry of a group (valid at its root) */
	int *fdslot;	/* hash fd -> entry, 2 * cap slots */
	int *fdkey;
	unsigned *fdgen;	/* slot valid when equal to gen: no clearing per flush */
	unsigned gen;
	struct msghdr *msg;
	struct iovec *iov;
	unsigned hmask;
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
	long r = syscall(__NR_io_uring_setup, 0, NULL);

	if (r >= 0) {		/* cannot happen; do not leak it */
		syscall(SYS_close, r);
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
		syscall(SYS_close, ring->ring_fd);
		ring->ring_fd = -1;
		return;
	}
	ring->ring_fd = esca_own_fd(ring->ring_fd);
	ring->enter_ring_fd = ring->ring_fd;
}

static int uring_thread_init(struct esca_thread *t)
{
	struct esca_uring *u;
	unsigned cap = t->cap, h = 1;
	size_t sz;
	bool usable;
	char *p;
	int err;

	/* io_uring_setup() installs the ring's fd last, after putting this
	 * thread on the ring's task list: failing there (EMFILE: the program
	 * uses every fd it may have) tears the new ring down with task work on
	 * this thread (Lifetime, above).  Make sure a number is free first. */
	err = (int)syscall(SYS_openat, AT_FDCWD, "/", O_PATH | O_CLOEXEC);
	if (err < 0 && (errno == EMFILE || errno == ENFILE))
		return -errno;
	if (err >= 0)
		syscall(SYS_close, err);

	while (h < 2 * cap)
		h <<= 1;
	sz = sizeof(*u) + cap * (sizeof(uint8_t) + 3 * sizeof(int) + sizeof(struct msghdr) +
				 sizeof(struct iovec)) + 3 * h * sizeof(int) + 64;
	p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	u = (struct esca_uring *)p;
	p += sizeof(*u);
	u->msg = (struct msghdr *)p;
	p += cap * sizeof(struct msghdr);
	u->iov = (struct iovec *)p;
	p += cap * sizeof(struct iovec);
	u->parent = (int *)p;
	p += cap * sizeof(int);
	u->next = (int *)p;
	p += cap * sizeof(int);
	u->tail = (int *)p;
	p += cap * sizeof(int);
	u->fdslot = (int *)p;
	p += h * sizeof(int);
	u->fdkey = (int *)p;
	p += h * sizeof(int);
	u->fdgen = (unsigned *)p;
	p += h * sizeof(unsigned);
	u->op = (uint8_t *)p;
	u->hmask = h - 1;
	u->map_size = sz;

	/* two SQEs per entry at most (read + write of an emulated sendfile) */
	err = ring_init(&u->ring, 2 * cap);
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
	t->can_carry = usable && u->has_epoll_wait && esca_cfg.flush_wait && !esca_cfg.adapt;
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

static int find(int *parent, int i)
{
	while (parent[i] != i) {
		parent[i] = parent[parent[i]];
		i = parent[i];
	}
	return i;
}

/* Joins entry i to the group of the last earlier entry on fd. */
static void join_fd(struct esca_uring *u, int i, int fd)
{
	unsigned h = ((unsigned)fd * 2654435761u) & u->hmask;

	while (u->fdgen[h] == u->gen && u->fdkey[h] != fd)
		h = (h + 1) & u->hmask;
	if (u->fdgen[h] == u->gen) {
		int a = find(u->parent, u->fdslot[h]), b = find(u->parent, i);

		/* the smaller index is the root: a group's root is its first entry */
		if (a < b)
			u->parent[b] = a;
		else if (b < a)
			u->parent[a] = b;
	} else {
		u->fdkey[h] = fd;
		u->fdgen[h] = u->gen;
	}
	u->fdslot[h] = i;
}

static enum op classify(struct esca_uring *u, struct esca_thread *t, unsigned i)
{
	struct esca_entry *e = &t->table[i];
	struct esca_meta *m = &t->meta[i];

	switch (e->nr) {
	case SYS_write:
		return esca_fd_is_socket(m->fd_kind) || m->fd_kind == ESCA_FD_PIPE ? OP_WRITE :
										      OP_DIRECT;
	case SYS_sendto:
		if (!e->args[4] && !(m->sock_flags & ~MSG_DONTWAIT))
			return OP_WRITE;
		return OP_SENDMSG;
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
		 * not break a chain: only the last op of a group may use it */
		if (!link && esca_fd_is_socket(m->fd_kind)) {
			io_uring_prep_send(sqe, fd, (void *)(uintptr_t)e->args[1],
					   (size_t)e->expect, MSG_DONTWAIT);
			break;
		}
		io_uring_prep_write(sqe, fd, (void *)(uintptr_t)e->args[1], (unsigned)e->expect, -1);
		sqe->rw_flags = RWF_NOWAIT;
		break;
	case OP_SENDMSG:
		if (!e->args[4]) {
			io_uring_prep_send(sqe, fd, (void *)(uintptr_t)e->args[1],
					   (size_t)e->expect, m->sock_flags | MSG_DONTWAIT);
			break;
		}
		memset(&u->msg[i], 0, sizeof(u->msg[i]));
		u->iov[i].iov_base = (void *)(uintptr_t)e->args[1];
		u->iov[i].iov_len = e->expect;
		u->msg[i].msg_iov = &u->iov[i];
		u->msg[i].msg_iovlen = 1;
		u->msg[i].msg_name = (void *)(uintptr_t)e->args[4];
		u->msg[i].msg_namelen = (socklen_t)e->args[5];
		io_uring_prep_sendmsg(sqe, fd, &u->msg[i], m->sock_flags | MSG_DONTWAIT);
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
}

/*
 * Groups t's entries by the fds they touch and decides each entry's op;
 * returns the number of SQEs the ring ops need.  A group with a direct op,
 * or a SENDMSG that is not its last entry, runs directly as a whole.
 */
static unsigned group(struct esca_thread *t, struct esca_uring *u)
{
	unsigned n = t->n, i, nsqe = 0;

	if (++u->gen == 0) {
		memset(u->fdgen, 0, (u->hmask + 1) * sizeof(unsigned));
		u->gen = 1;
	}
	for (i = 0; i < n; i++) {
		u->parent[i] = (int)i;
		u->next[i] = -1;
		u->op[i] = (uint8_t)classify(u, t, i);
		join_fd(u, (int)i, t->meta[i].fd);
		if (t->meta[i].in_fd >= 0)
			join_fd(u, (int)i, t->meta[i].in_fd);
	}
	/* build each group's list */
	for (i = 0; i < n; i++) {
		int root = find(u->parent, (int)i);

		if ((unsigned)root == i)
			u->tail[i] = (int)i;
		else {
			u->next[u->tail[root]] = (int)i;
			u->tail[root] = (int)i;
		}
	}
	for (i = 0; i < n; i++) {
		int root = find(u->parent, (int)i);

		if (u->op[i] == OP_DIRECT || (u->op[i] == OP_SENDMSG && u->next[i] >= 0))
			u->op[root] = OP_DIRECT;	/* marks the group (root is first) */
	}
	for (i = 0; i < n; i++) {
		if ((unsigned)find(u->parent, (int)i) != i)
			continue;
		if (u->op[i] == OP_DIRECT) {
			for (int j = u->next[i]; j >= 0; j = u->next[j])
				u->op[j] = OP_DIRECT;
			continue;
		}
		for (int j = (int)i; j >= 0; j = u->next[j])
			nsqe += u->op[j] == OP_COPYFILE ? 2 : 1;
	}
	return nsqe;
}

static void ring_flush(struct esca_thread *t, struct esca_uring *u, unsigned nsqe);

static void uring_flush(struct esca_thread *t)
{
	struct esca_uring *u = t->uring;
	unsigned n = t->n, i, nsqe;

	if (n < esca_cfg.uring_min_ops || unlikely(u->broken)) {
		for (i = 0; i < n; i++)
			esca_run_direct(t, i);
		return;
	}
	nsqe = group(t, u);
	if (nsqe < esca_cfg.uring_min_ops) {
		for (i = 0; i < n; i++)
			esca_run_direct(t, i);
		return;
	}
	ring_flush(t, u, nsqe);
}

/* Submits the grouped batch in one io_uring_enter() and finishes it. */
struct carried {
	bool done;		/* the wait's CQE came */
	bool cancel_done;	/* the CQE of its cancellation came */
	bool timeout_done;	/* the CQE of its LINK_TIMEOUT came */
	int res, timeout_res;
};

/*
 * Takes every CQE there is: entries' results into the table (the read half
 * of an emulated sendfile into meta), a carried wait's into w.  Returns
 * how many entries' CQEs it took.
 */
static unsigned reap(struct esca_thread *t, struct esca_uring *u, struct carried *w)
{
	struct io_uring_cqe *cqe;
	unsigned got = 0, seen = 0, head;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);

		got++;
		if (d == WAIT_TAG && w) {
			w->done = true;
			w->res = cqe->res;
			continue;
		}
		if (d == CANCEL_TAG && w) {
			w->cancel_done = true;
			continue;
		}
		if (d == TIMEOUT_TAG && w) {
			w->timeout_done = true;
			w->timeout_res = cqe->res;
			continue;
		}
		if (d & 1)
			t->meta[d >> 1].aux_result = cqe->res;
		else
			t->table[d >> 1].result = cqe->res;
		seen++;
	}
	io_uring_cq_advance(&u->ring, got);
	return seen;
}

static void finish_results(struct esca_thread *t, struct esca_uring *u);

static void ring_flush(struct esca_thread *t, struct esca_uring *u, unsigned nsqe)
{
	unsigned n = t->n, i, seen = 0;
	struct io_uring_cqe *cqe;
	int r;

	for (i = 0; i < n; i++) {
		if ((unsigned)find(u->parent, (int)i) != i || u->op[i] == OP_DIRECT)
			continue;
		for (int j = (int)i; j >= 0; j = u->next[j])
			prep(u, t, (unsigned)j, u->next[j] >= 0);
	}
	do
		r = io_uring_submit_and_wait(&u->ring, nsqe);
	while (r == -EINTR);
	t->st.kernel_entries++;
	if (unlikely(r < 0)) {
		/* nothing was submitted (the ring's fd closed or replaced
		 * behind libesca's back ...): the results in the table are
		 * stale, every entry runs directly, and so does every later
		 * batch of this thread (the SQEs stay queued in the ring) */
		esca_log("thread %d: io_uring_enter failed (%s); this thread runs its calls "
			 "directly", (int)gettid(), strerror(-r));
		u->broken = true;
		for (i = 0; i < n; i++)
			esca_run_direct(t, i);
		return;
	}

	/* every op is non-blocking, so all completions are there; wait for
	 * any straggler rather than reuse memory it may still read */
	while (seen < nsqe) {
		seen += reap(t, u, NULL);
		if (seen < nsqe && io_uring_wait_cqe(&u->ring, &cqe) < 0)
			break;
	}
	finish_results(t, u);
}

/* The results of a flushed batch, in program order. */
static void finish_results(struct esca_thread *t, struct esca_uring *u)
{
	unsigned n = t->n, i;

	for (i = 0; i < n; i++) {
		struct esca_entry *e = &t->table[i];
		struct esca_meta *m = &t->meta[i];

		/* cancelled by a broken chain, or refused by io_uring itself
		 * (no NOWAIT support on this file): the direct call decides */
		if (u->op[i] == OP_DIRECT || e->result == -ECANCELED ||
		    e->result == -EOPNOTSUPP || e->result == -EINVAL) {
			esca_run_direct(t, i);
			continue;
		}
		e->status = ESCA_ST_DONE;
		if (u->op[i] == OP_COPYFILE) {
			if (m->aux_result != (int64_t)e->expect) {
				/* the read was short or would block: plain sendfile */
				esca_run_direct(t, i);
				continue;
			}
			/* the bytes are in the arena: finish as a write */
			e->nr = SYS_write;
			e->args[1] = (uint64_t)(uintptr_t)m->data;
			e->args[2] = e->expect;
		}
		esca_finish_entry(t, i);
	}
}

/*
 * The wait's timeout as io_uring_enter() takes it: false when the ring
 * cannot carry this wait the plain call's way (timeout 0, which must not
 * block at all; a timespec that cannot be read or is invalid, which the
 * plain call reports).  *ts NULL: no timeout.
 */
static bool wait_timeout(const struct esca_entry *w, struct __kernel_timespec *buf,
			 struct __kernel_timespec **ts)
{
	struct timespec t;

	*ts = NULL;
	if (w->nr != SYS_epoll_pwait2) {
		int ms = (int)w->args[3];

		if (ms < 0)
			return true;
		if (ms == 0)
			return false;
		buf->tv_sec = ms / 1000;
		buf->tv_nsec = (long long)(ms % 1000) * 1000000;
		*ts = buf;
		return true;
	}
	if (!w->args[3])
		return true;
	if (esca_copy(&t, (const void *)(uintptr_t)w->args[3], sizeof(t)) < 0 || t.tv_sec < 0 ||
	    t.tv_nsec < 0 || t.tv_nsec >= 1000000000 || (!t.tv_sec && !t.tv_nsec))
		return false;
	buf->tv_sec = t.tv_sec;
	buf->tv_nsec = t.tv_nsec;
	*ts = buf;
	return true;
}

/*
 * The batch and the wait in one io_uring_enter(): every ring op in one
 * IOSQE_IO_LINK chain in program order, then the EPOLL_WAIT op, then (with
 * a timeout) a LINK_TIMEOUT for it.  The wait starts only when every op of
 * the batch completed in full: a short or failed op breaks the chain, the
 * wait comes back -ECANCELED, and the caller makes it itself after the
 * batch is finished.  A batch with an op the ring cannot run (setsockopt,
 * a file write ...) is not carried: those run only after the enter, and the
 * wait would hold them back.  Nor is a wait with a signal mask (epoll_pwait
 * with one) or a zero timeout: they go the plain way.
 *
 * The enter waits for every CQE.  io_uring_enter() returns the number it
 * submitted even when a signal cut its wait short, so the signal shows as
 * CQEs missing: the wait is then cancelled and reaped -- if it completed
 * meanwhile its events are the result, never lost; else -EINTR, as
 * epoll_wait.  The timeout is an op (LINK_TIMEOUT), never the enter's, so
 * that nothing else ends the enter early.
 */
static bool uring_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	struct esca_uring *u = t->uring;
	struct __kernel_timespec tsbuf, *ts;
	struct carried cw = { .done = false };
	unsigned n = t->n, i, nsqe, seen = 0, extra;
	struct io_uring_sqe *sqe;
	bool cancelled = false;
	int r;

	if (unlikely(u->broken) || (int)w->args[2] <= 0 || w->args[4] ||
	    !wait_timeout(w, &tsbuf, &ts)) {
		uring_flush(t);
		return false;
	}
	nsqe = group(t, u);
	for (i = 0; i < n; i++) {
		if (u->op[i] == OP_DIRECT || u->op[i] == OP_SENDMSG) {
			if (nsqe < esca_cfg.uring_min_ops) {
				for (i = 0; i < n; i++)
					esca_run_direct(t, i);
			} else {
				ring_flush(t, u, nsqe);
			}
			return false;
		}
	}
	for (i = 0; i < n; i++)
		prep(u, t, i, true);
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
		/* nothing was submitted: as in ring_flush() */
		esca_log("thread %d: io_uring_enter failed (%s); this thread runs its calls "
			 "directly", (int)gettid(), strerror(-r));
		u->broken = true;
		for (i = 0; i < n; i++)
			esca_run_direct(t, i);
		return false;
	}
	for (;;) {
		seen += reap(t, u, &cw);
		if (seen >= nsqe && cw.done && (!ts || cw.timeout_done) &&
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
	finish_results(t, u);
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
	.flush = uring_flush,
	.flush_wait = uring_flush_wait,
	.own_fd = uring_own_fd,
	.fd_moved = uring_fd_moved,
};
