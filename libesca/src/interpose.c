// SPDX-License-Identifier: MIT
/*
 * The deferrable calls: close, shutdown, write, writev, send, sendto,
 * sendmsg, sendfile, setsockopt (TCP_CORK, TCP_NODELAY).
 *
 * Inside a batching segment of the calling thread, such a call is recorded
 * instead of run only when it concerns an fd that is provably the program's
 * alone and whose result libesca knows (docs/libesca.md, "What is
 * deferred"): a connected stream socket (TCP, AF_UNIX) that libesca saw
 * made and never aliased, not broken, not holding bytes for a slow reader;
 * for close, any fd libesca saw made and never aliased.  Its payload is
 * copied into the thread's arena (the caller may reuse its buffer as soon as
 * we return), and the result a successful call returns is returned.
 *
 * Every other call runs at once, after the pending entries (all of them:
 * effects keep program order across fds), and after the bytes libesca holds
 * for its socket, if any: a call that finds them unsent gets EAGAIN, the
 * truth of a full non-blocking socket.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A data call as the program made it. */
struct data_call {
	enum esca_call_kind kind;
	int fd;
	const struct iovec *iov;	/* the payload (validated and copied when recorded) */
	int iovcnt;
	size_t len;
	int flags;			/* send flags */
	const struct sockaddr *addr;
	socklen_t alen;
	const struct msghdr *msg;	/* sendmsg: the program's */
	int in_fd;			/* sendfile */
	off_t *offset;
	size_t count;
};

/* The call itself, in libc. */
static ssize_t data_real(const struct data_call *c)
{
	switch (c->kind) {
	case ESCA_CALL_WRITE:
		return REAL(write)(c->fd, c->iov[0].iov_base, c->len);
	case ESCA_CALL_WRITEV:
		return REAL(writev)(c->fd, c->iov, c->iovcnt);
	case ESCA_CALL_SEND:
		if (c->addr || c->alen)
			return REAL(sendto)(c->fd, c->iov[0].iov_base, c->len, c->flags, c->addr,
					    c->alen);
		return REAL(send)(c->fd, c->iov[0].iov_base, c->len, c->flags);
	case ESCA_CALL_SENDMSG:
		return REAL(sendmsg)(c->fd, c->msg, c->flags);
	case ESCA_CALL_SENDFILE:
		return REAL(sendfile)(c->fd, c->in_fd, c->offset, c->count);
	default:
		errno = EINVAL;
		return -1;
	}
}

/* ---- the table ------------------------------------------------------------------ */

/* A free entry with len bytes of arena; runs the batch first when full. */
static struct esca_entry *reserve(struct esca_thread *t, size_t len, void **data)
{
	size_t need = len + 32;
	struct esca_entry *e;

	if (unlikely(t->n == t->cap || t->arena_used + need > t->arena_cap))
		esca_flush_thread(t);
	/* start every entry's payload 16-byte aligned */
	t->arena_used = (t->arena_used + 15) & ~(size_t)15;
	*data = t->arena + t->arena_used;
	e = &t->table[t->n];
	memset(e, 0, sizeof(*e));
	memset(&t->meta[t->n], 0, sizeof(t->meta[0]));
	t->meta[t->n].in_fd = -1;
	t->meta[t->n].offset = -1;
	return e;
}

/* Makes the entry reserved last part of the batch: one store (n) is the
 * commit, so that a signal before it leaves nothing half-recorded. */
static void commit(struct esca_thread *t, enum esca_call_kind kind, int fd, size_t arena_len)
{
	struct esca_meta *m = &t->meta[t->n];

	m->kind = (uint8_t)kind;
	m->fd = fd;
	m->seq = ++t->seq;
	esca_fd_mark_pending(t, fd);
	esca_fd_tag(t, fd);
	if (m->in_fd >= 0) {
		esca_fd_mark_pending(t, m->in_fd);
		esca_fd_tag(t, m->in_fd);
	}
	t->arena_used += arena_len;
	t->st.arena_bytes += arena_len;
	t->st.deferred[kind]++;
	t->seg_calls++;
	atomic_signal_fence(memory_order_release);
	t->n++;
}

/* Gathers iov (validated, copied) into dst: 0, or -1 with EFAULT. */
static int copy_iov(char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; dst += iov[i].iov_len, i++)
		if (esca_copy(dst, iov[i].iov_base, iov[i].iov_len) < 0)
			return -1;
	return 0;
}

/*
 * A send of len bytes that directly follows a send with the same flags to
 * the same socket is appended to that entry: one call sends both, and the
 * byte stream is the same.  Its length (args[2]) is the commit.  Returns
 * the entry to extend, or NULL.
 */
static struct esca_entry *mergeable(struct esca_thread *t, int fd, int flags, size_t len)
{
	struct esca_entry *prev;
	struct esca_meta *m;

	if (t->n == t->head || t->arena_used + len > t->arena_cap)
		return NULL;
	prev = &t->table[t->n - 1];
	m = &t->meta[t->n - 1];
	if (prev->nr != SYS_sendto || m->fd != fd || m->sock_flags != flags ||
	    prev->status != ESCA_ST_QUEUED ||
	    (char *)(uintptr_t)prev->args[1] + prev->args[2] != t->arena + t->arena_used ||
	    prev->args[2] + len > esca_cfg.defer_max * 4)
		return NULL;
	return prev;
}

/* ESCA_DEFER_MSG_FLAGS: the send flags a deferred send may carry. */
#define ESCA_DEFER_MSG_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE)

/*
 * Records a send of c's payload (gathered into one buffer) as
 * sendto(fd, data, len, flags | MSG_NOSIGNAL): libesca raises SIGPIPE
 * itself when the program's call would have (flush.c).
 */
static ssize_t record_send(struct esca_thread *t, const struct data_call *c)
{
	struct esca_entry *e = mergeable(t, c->fd, c->flags, c->len);
	char *data;

	if (e) {
		data = t->arena + t->arena_used;
		if (copy_iov(data, c->iov, c->iovcnt) < 0)
			return -1;
		t->arena_used += c->len;	/* unaligned on purpose: the next may merge too */
		t->st.arena_bytes += c->len;
		t->st.deferred[c->kind]++;
		t->seg_calls++;
		atomic_signal_fence(memory_order_release);
		e->args[2] += c->len;	/* the commit */
		return (ssize_t)c->len;
	}
	e = reserve(t, c->len, (void **)&data);
	if (copy_iov(data, c->iov, c->iovcnt) < 0)
		return -1;	/* nothing recorded */
	e->nr = SYS_sendto;
	e->flags = ESCA_ENTRY_EXPECT;
	e->args[0] = (uint64_t)c->fd;
	e->args[1] = (uint64_t)(uintptr_t)data;
	e->args[2] = c->len;
	e->args[3] = (uint64_t)(unsigned)(c->flags | MSG_NOSIGNAL);
	t->meta[t->n].data = data;
	t->meta[t->n].sock_flags = c->flags;
	commit(t, c->kind, c->fd, c->len);	/* unaligned: the next send may merge */
	return (ssize_t)c->len;
}

static ssize_t record_sendfile(struct esca_thread *t, const struct data_call *c)
{
	struct esca_entry *e;
	struct esca_meta *m;
	off_t off = -1;
	size_t len;
	char *data;

	if (c->offset && esca_copy(&off, c->offset, sizeof(off)) < 0)
		return -1;
	/* the offset the kernel updates, and with the uring backend room to
	 * read the file into when the send is emulated by read + write */
	len = 16;
	if (t->ops == &esca_uring_ops && c->offset && c->count <= esca_cfg.uring_copy_max)
		len += c->count;
	e = reserve(t, len, (void **)&data);
	memcpy(data, &off, sizeof(off));
	m = &t->meta[t->n];
	m->in_fd = c->in_fd;
	m->offset = c->offset ? off : -1;
	m->data = len > 16 ? data + 16 : NULL;
	m->flags = ESCA_META_KERNEL_SIGPIPE;
	e->nr = SYS_sendfile;
	e->flags = ESCA_ENTRY_EXPECT;
	e->args[0] = (uint64_t)c->fd;
	e->args[1] = (uint64_t)c->in_fd;
	e->args[2] = c->offset ? (uint64_t)(uintptr_t)data : 0;
	e->args[3] = c->count;
	if (c->offset) {
		off += (off_t)c->count;
		if (esca_copy(c->offset, &off, sizeof(off)) < 0)
			return -1;
	}
	commit(t, ESCA_CALL_SENDFILE, c->fd, (len + 15) & ~(size_t)15);
	return (ssize_t)c->count;
}

/*
 * Whether fd (word w) takes deferred data: a connected stream socket of the
 * program's alone, whose peer is not known gone and whose bytes all went
 * out so far, while the process holds little for slow readers.
 */
static bool data_fd_ok(uint32_t w)
{
	return esca_fdw_stream(w) &&
	       (w & (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED | ESCA_FDW_BROKEN | ESCA_FDW_HELD |
		     ESCA_FDW_SLOW | ESCA_FDW_CLOSING)) == (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED) &&
	       atomic_load_explicit(&esca_held_bytes, memory_order_relaxed) <= esca_cfg.held_max / 2;
}

/* Whether c, on fd (word w), may be recorded; its payload length in c. */
static bool data_deferrable(const struct data_call *c, uint32_t w)
{
	if (!data_fd_ok(w))
		return false;
	if (c->kind == ESCA_CALL_SENDFILE) {
		uint32_t in = esca_fdw(c->in_fd);

		/* from a file of the program's (libesca sees its close) */
		return c->count > 0 && c->count <= esca_cfg.sendfile_max &&
		       esca_fdw_kind(in) == ESCA_FD_FILE &&
		       (in & (ESCA_FDW_PRIVATE | ESCA_FDW_CLOSING)) == ESCA_FDW_PRIVATE &&
		       esca_drainer_ready();
	}
	return c->len > 0 && c->len <= esca_cfg.defer_max && !(c->flags & ~ESCA_DEFER_MSG_FLAGS) &&
	       !c->addr && !c->alen && esca_drainer_ready();
}

/*
 * A data call that runs now (not recorded): after the pending entries, and
 * after the bytes held for its socket.
 */
static ssize_t data_now(struct esca_thread *t, const struct data_call *c)
{
	uint32_t w;
	ssize_t r;

	if (t && t->in_segment)
		t->st.direct_in_segment++;
	if (t && (t->n != t->head ||
		  atomic_load_explicit(&t->sq_tail, memory_order_relaxed) != t->sq_head))
		esca_before_effect_slow(t);
	/* (read after the pending entries ran: they may have left bytes held) */
	w = esca_fdw(c->fd);
	if (unlikely(w & ESCA_FDW_HELD) && esca_held_push_fd(c->fd, c->flags) < 0)
		return -1;
	r = data_real(c);
	/* a non-blocking connect() completed: the socket takes deferred data */
	if (unlikely(w & ESCA_FDW_CONNECTING) && r >= 0)
		esca_fdw_or(c->fd, ESCA_FDW_CONNECTED);
	return r;
}

/*
 * Whether a handler's call on fd, while its thread is inside libesca, must
 * queue behind what the program did before: entries in the table that may
 * be on fd, calls of earlier handlers in the queue, or one of them on its
 * way from the queue into the table (sq_drain() takes a slot before it
 * records its call: in between, neither shows it).
 */
static bool handler_behind(const struct esca_thread *t, int fd)
{
	return (t->n != t->head && esca_fd_maybe_pending(t, fd)) || t->draining ||
	       atomic_load_explicit(&t->sq_tail, memory_order_relaxed) != t->sq_head;
}

/* A handler's data call while its thread is inside libesca. */
static ssize_t data_in_handler(struct esca_thread *t, const struct data_call *c, uint32_t w)
{
	struct esca_entry e;
	struct esca_meta m;
	char buf[4096];

	if (!handler_behind(t, c->fd))
		return data_real(c);
	/* queued behind the entries it must follow: sends the program's own
	 * data of a size the queue takes, else (a sendfile, a large write) at
	 * once */
	if (!data_deferrable(c, w) || c->kind == ESCA_CALL_SENDFILE || c->len > sizeof(buf) ||
	    copy_iov(buf, c->iov, c->iovcnt) < 0)
		return data_real(c);
	memset(&e, 0, sizeof(e));
	memset(&m, 0, sizeof(m));
	e.nr = SYS_sendto;
	e.flags = ESCA_ENTRY_EXPECT;
	e.args[0] = (uint64_t)c->fd;
	e.args[2] = c->len;
	e.args[3] = (uint64_t)(unsigned)(c->flags | MSG_NOSIGNAL);
	m.kind = (uint8_t)c->kind;
	m.fd = c->fd;
	m.in_fd = -1;
	m.offset = -1;
	m.sock_flags = c->flags;
	if (!esca_sq_push(t, &e, &m, buf, c->len))
		return data_real(c);
	return (ssize_t)c->len;
}

/* An fd that is closing in this segment is not open, as far as the
 * program knows: EBADF. */
static bool closing(uint32_t w)
{
	return w & ESCA_FDW_CLOSING;
}

static ssize_t data_call(struct data_call *c)
{
	struct esca_thread *t = esca_self;
	uint32_t w = esca_fd_touch(c->fd);
	ssize_t r;

	if (unlikely(!t))
		goto now;
	if (unlikely(t->busy))
		return data_in_handler(t, c, w);
	if (!t->in_segment) {
		if (t->passing)
			t->seg_calls++;
		goto now;
	}
	if (unlikely(closing(w))) {
		/* a close of it is pending in this segment: run it, then the call
		 * meets the kernel's EBADF (or whatever took the number) */
		esca_before_effect_slow(t);
		goto now;
	}
	if (!data_deferrable(c, w))
		goto now;
	pthread_testcancel();
	t = esca_enter();
	if (!t)
		goto now;
	r = c->kind == ESCA_CALL_SENDFILE ? record_sendfile(t, c) : record_send(t, c);
	esca_leave(t);
	return r;
now:
	return data_now(t, c);
}

ESCA_API ssize_t write(int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct data_call c = { .kind = ESCA_CALL_WRITE, .fd = fd, .iov = &iov, .iovcnt = 1,
			       .len = len };

	return data_call(&c);
}

/* Sum of iov lengths, or (size_t)-1 when the call is not for deferring. */
static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	int i;

	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > esca_cfg.defer_max)
			return (size_t)-1;
		total += iov[i].iov_len;
	}
	return total;
}

#define ESCA_IOV_MAX 64

ESCA_API ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec local[ESCA_IOV_MAX];
	struct data_call c = { .kind = ESCA_CALL_WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt,
			       .len = (size_t)-1 };

	struct esca_thread *t = esca_self;

	/* a vector libesca may take (a thread recording, or a handler's call
	 * inside libesca, on an fd that takes deferred data): copied first (the
	 * kernel's EFAULT for a bad one comes from the direct call) */
	if (t && (t->in_segment || t->busy) && data_fd_ok(esca_fdw(fd)) && iovcnt > 0 &&
	    iovcnt <= ESCA_IOV_MAX && esca_copy(local, iov, sizeof(*iov) * (size_t)iovcnt) == 0) {
		c.iov = local;
		c.len = iov_total(local, iovcnt);
	}
	if (c.len == (size_t)-1) {
		c.iov = iov;
		c.len = 0;	/* not deferrable */
	}
	return data_call(&c);
}

ESCA_API ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct data_call c = { .kind = ESCA_CALL_SEND, .fd = fd, .iov = &iov, .iovcnt = 1,
			       .len = len, .flags = flags };

	return data_call(&c);
}

ESCA_API ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			const struct sockaddr *addr, socklen_t alen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct data_call c = { .kind = ESCA_CALL_SEND, .fd = fd, .iov = &iov, .iovcnt = 1,
			       .len = len, .flags = flags, .addr = addr, .alen = alen };

	return data_call(&c);
}

ESCA_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct iovec local[ESCA_IOV_MAX];
	struct data_call c = { .kind = ESCA_CALL_SENDMSG, .fd = fd, .msg = msg, .flags = flags,
			       .len = 0 };
	struct esca_thread *t = esca_self;
	struct msghdr mh;

	/* control data (fd passing), a name, a long vector: at once, and the
	 * kernel answers; only a call libesca may take is looked at */
	if (t && (t->in_segment || t->busy) && data_fd_ok(esca_fdw(fd)) &&
	    esca_copy(&mh, msg, sizeof(mh)) == 0 && !mh.msg_controllen && !mh.msg_name &&
	    mh.msg_iovlen > 0 && mh.msg_iovlen <= ESCA_IOV_MAX &&
	    esca_copy(local, mh.msg_iov, sizeof(*local) * mh.msg_iovlen) == 0) {
		c.iov = local;
		c.iovcnt = (int)mh.msg_iovlen;
		c.len = iov_total(local, c.iovcnt);
		if (c.len == (size_t)-1)
			c.len = 0;
	}
	return data_call(&c);
}

ESCA_API ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct data_call c = { .kind = ESCA_CALL_SENDFILE, .fd = out_fd, .in_fd = in_fd,
			       .offset = offset, .count = count };

	(void)esca_fd_touch(in_fd);
	return data_call(&c);
}

ESCA_API ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
	__attribute__((alias("sendfile")));

/* ---- close, shutdown, setsockopt -------------------------------------------- */

/* A close, shutdown or setsockopt entry without payload beyond val. */
static void record_plain(struct esca_thread *t, enum esca_call_kind kind, long nr, int fd,
			 uint64_t a1, uint64_t a2, const void *val, size_t vlen)
{
	struct esca_entry *e;
	void *data;

	e = reserve(t, vlen, &data);
	if (vlen)
		memcpy(data, val, vlen);
	e->nr = (uint32_t)nr;
	e->args[0] = (uint64_t)fd;
	e->args[1] = a1;
	e->args[2] = a2;
	if (vlen) {
		e->args[3] = (uint64_t)(uintptr_t)data;
		e->args[4] = vlen;
	}
	commit(t, kind, fd, (vlen + 15) & ~(size_t)15);
}

/* close(fd) of the program: the number is free when it returns. */
static int close_now(int fd)
{
	esca_before_effect();
	/* (after the pending entries: they may have left bytes held) */
	if (unlikely(esca_fdw(fd) & ESCA_FDW_HELD))
		return esca_held_close(fd);
	esca_fd_forget(fd);
	return REAL(close)(fd);
}

ESCA_API int close(int fd)
{
	struct esca_thread *t = esca_self;
	uint32_t w;

	if (unlikely(esca_fd_is_own(fd))) {
		errno = EBADF;
		return -1;
	}
	w = esca_fd_touch(fd);
	if (unlikely(!t))
		return close_now(fd);
	if (unlikely(t->busy)) {
		struct esca_entry e = { .nr = SYS_close, .args = { (uint64_t)fd } };
		struct esca_meta m = { .kind = ESCA_CALL_CLOSE, .fd = fd, .in_fd = -1, .offset = -1 };

		if (handler_behind(t, fd) && !closing(w) && (w & ESCA_FDW_PRIVATE) &&
		    esca_sq_push(t, &e, &m, NULL, 0)) {
			esca_fdw_or(fd, ESCA_FDW_CLOSING);
			return 0;
		}
		return close_now(fd);
	}
	if (!t->in_segment || !(w & ESCA_FDW_PRIVATE) || (w & ESCA_FDW_HELD)) {
		if (t->passing)
			t->seg_calls++;
		if (closing(w)) {
			esca_before_effect();
			errno = EBADF;
			return -1;
		}
		return close_now(fd);
	}
	if (closing(w)) {
		errno = EBADF;
		return -1;
	}
	pthread_testcancel();
	t = esca_enter();
	if (!t)
		return close_now(fd);
	record_plain(t, ESCA_CALL_CLOSE, SYS_close, fd, 0, 0, NULL, 0);
	if (!t->closes++ && esca_multithreaded())
		atomic_fetch_add(&esca_closes_elsewhere, 1);
	/* later calls on fd see EBADF; the number stays taken until the close
	 * runs, and a call that makes an fd runs it first */
	esca_fdw_or(fd, ESCA_FDW_CLOSING);
	esca_leave(t);
	return 0;
}

ESCA_API int shutdown(int fd, int how)
{
	struct esca_thread *t = esca_self;
	uint32_t w = esca_fd_touch(fd);

	if (t && !t->busy && t->in_segment && esca_fdw_stream(w) && !closing(w) &&
	    (w & (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED | ESCA_FDW_HELD | ESCA_FDW_BROKEN)) ==
		    (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED) &&
	    how >= SHUT_RD && how <= SHUT_RDWR) {
		t = esca_enter();
		if (t) {
			record_plain(t, ESCA_CALL_SHUTDOWN, SYS_shutdown, fd, (uint64_t)how, 0,
				     NULL, 0);
			esca_leave(t);
			return 0;
		}
	}
	if (t && t->passing)
		t->seg_calls++;
	if (!t || !t->busy)
		esca_before_effect();
	if (unlikely(esca_fdw(fd) & ESCA_FDW_HELD))
		return esca_held_shutdown(fd, how);
	return REAL(shutdown)(fd, how);
}

ESCA_API int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct esca_thread *t = esca_self;
	uint32_t w = esca_fd_touch(fd);
	int v;

	if (t && !t->busy && t->in_segment && level == IPPROTO_TCP &&
	    (name == TCP_CORK || name == TCP_NODELAY) && len == sizeof(int) && val &&
	    esca_fdw_kind(w) == ESCA_FD_TCP && !closing(w) &&
	    (w & (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED | ESCA_FDW_BROKEN)) ==
		    (ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED) &&
	    esca_copy(&v, val, sizeof(v)) == 0) {
		t = esca_enter();
		if (t) {
			record_plain(t, ESCA_CALL_SETSOCKOPT, SYS_setsockopt, fd,
				     (uint64_t)level, (uint64_t)name, &v, sizeof(v));
			esca_leave(t);
			return 0;
		}
	}
	if (t && t->passing)
		t->seg_calls++;
	/* a socket option is no effect outside the process, but it must apply
	 * after the pending entries of its socket */
	if (t && !t->busy && t->n != t->head && esca_fd_maybe_pending(t, fd))
		esca_before_effect_slow(t);
	return REAL(setsockopt)(fd, level, name, val, len);
}

/* The handler queue's entry joins the table (thread.c: the drain). */
bool esca_record_queued(struct esca_thread *t, const struct esca_entry *qe,
			const struct esca_meta *qm, const void *data, size_t len)
{
	struct esca_entry *e;
	void *dst;

	e = reserve(t, len, &dst);
	*e = *qe;
	e->status = ESCA_ST_QUEUED;
	t->meta[t->n] = *qm;
	if (len) {
		memcpy(dst, data, len);
		e->args[1] = (uint64_t)(uintptr_t)dst;
		t->meta[t->n].data = dst;
	}
	if (qe->nr == SYS_close) {
		if (!t->closes++ && esca_multithreaded())
			atomic_fetch_add(&esca_closes_elsewhere, 1);
	}
	commit(t, qm->kind, qm->fd, (len + 15) & ~(size_t)15);
	if (!t->in_segment && !t->flushing)
		esca_flush_thread(t);
	return true;
}
