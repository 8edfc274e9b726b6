// SPDX-License-Identifier: MIT
/*
 * The interposed libc entry points.
 *
 * Outside a batching segment of the calling thread every call goes straight
 * to libc.  Inside one, a call that can be deferred is checked the way the
 * kernel would check it first (a bad fd gives EBADF, a bad pointer EFAULT,
 * at once), its payload is copied into the thread's arena (the caller may
 * reuse its buffer as soon as we return), it is recorded, and the result a
 * successful call returns is returned.  A call that cannot be deferred
 * (too large, unusual flags, control messages ...) first flushes the pending
 * entries if any of them concern the same fd, then runs directly: program
 * order per fd is kept.  (The calls that create or close fds wholesale are
 * in fdcalls.c.)
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * The thread's segment, claimed for one interposed call: until leave(), a
 * signal handler that interrupts the call and makes one of its own sees no
 * segment and runs directly, so recording is never re-entered.
 */
static inline struct esca_thread *enter(void)
{
	struct esca_thread *t = esca_segment();

	if (t) {
		t->busy = true;
		return t;
	}
	/* a segment that passes its calls through still counts them, so that
	 * batching resumes as soon as segments grow (thread.c) */
	t = esca_self;
	if (t && t->passing)
		t->seg_calls++;
	return NULL;
}

static inline void leave(struct esca_thread *t)
{
	t->busy = false;
}

/* The exported entry point of an interposed call: libc's outside a segment,
 * seg_<name>() inside one, with the segment claimed around it. */
#define INTERPOSE(type, name, params, ...)				\
	ESCA_API type name params					\
	{								\
		struct esca_thread *t = enter();			\
		type r;							\
									\
		if (!t)							\
			return REAL(name)(__VA_ARGS__);			\
		r = seg_##name(t, __VA_ARGS__);				\
		leave(t);						\
		return r;						\
	}

void esca_direct_in_segment(struct esca_thread *t, int fd, int fd2)
{
	t->st.direct_in_segment++;
	if (t->n && (esca_fd_maybe_pending(t, fd) || (fd2 >= 0 && esca_fd_maybe_pending(t, fd2))))
		esca_flush_thread(t);
}

static bool close_pending(const struct esca_thread *t, int fd)
{
	unsigned i;

	if (!esca_fd_maybe_pending(t, fd))
		return false;
	for (i = t->n; i-- > 0;)
		if (t->table[i].nr == SYS_close && (int)t->table[i].args[0] == fd)
			return true;
	return false;
}

/* The kind of fd, or -1 with errno EBADF as the kernel would give (one of
 * libesca's own fds is not the program's: not open, as far as it knows). */
static int check_fd(struct esca_thread *t, int fd)
{
	int kind;

	if (fd < 0 || close_pending(t, fd))
		goto bad;
	kind = esca_fd_kind(fd);
	if (kind != ESCA_FD_OWN)
		return kind;
bad:
	errno = EBADF;
	return -1;
}

/* A free entry, with len bytes of arena; flushes first when full. */
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

/* Makes the entry reserved last part of the table. */
static void commit(struct esca_thread *t, enum esca_call_kind kind, int fd, size_t len)
{
	struct esca_meta *m = &t->meta[t->n];

	m->kind = (uint8_t)kind;
	m->fd = fd;
	esca_fd_mark_pending(t, fd);
	if (m->in_fd >= 0)
		esca_fd_mark_pending(t, m->in_fd);
	/* write payloads stay unaligned so that the next write can merge */
	t->arena_used += kind == ESCA_CALL_WRITE || kind == ESCA_CALL_WRITEV ||
			 (kind == ESCA_CALL_SEND && t->table[t->n].nr == SYS_write) ?
			 len : (len + 15) & ~(size_t)15;
	t->st.arena_bytes += len;
	t->st.deferred[kind]++;
	t->seg_calls++;
	t->n++;
}

/* ---- close, shutdown, setsockopt -------------------------------------- */

static int seg_close(struct esca_thread *t, int fd)
{
	struct esca_entry *e;
	void *unused;

	pthread_testcancel();
	if (check_fd(t, fd) < 0)
		return -1;
	e = reserve(t, 0, &unused);
	e->nr = SYS_close;
	e->args[0] = (uint64_t)fd;
	commit(t, ESCA_CALL_CLOSE, fd, 0);
	/* later calls on fd in this segment see EBADF (close_pending), others
	 * validate it anew */
	esca_fd_set(fd, ESCA_FD_UNKNOWN);
	return 0;
}

ESCA_API int close(int fd)
{
	struct esca_thread *t;
	int r;

	if (unlikely(esca_fd_is_own(fd))) {
		errno = EBADF;
		return -1;
	}
	t = enter();
	if (!t) {
		esca_fd_set(fd, ESCA_FD_UNKNOWN);
		return REAL(close)(fd);
	}
	r = seg_close(t, fd);
	leave(t);
	return r;
}

static int seg_shutdown(struct esca_thread *t, int fd, int how)
{
	struct esca_entry *e;
	void *unused;
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (!esca_fd_is_socket(kind) || how < SHUT_RD || how > SHUT_RDWR) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(shutdown)(fd, how);	/* the kernel's ENOTSOCK / EINVAL */
	}
	e = reserve(t, 0, &unused);
	e->nr = SYS_shutdown;
	e->args[0] = (uint64_t)fd;
	e->args[1] = (uint64_t)how;
	commit(t, ESCA_CALL_SHUTDOWN, fd, 0);
	return 0;
}

INTERPOSE(int, shutdown, (int fd, int how), fd, how)

static int seg_setsockopt(struct esca_thread *t, int fd, int level, int name, const void *val,
			  socklen_t len)
{
	struct esca_entry *e;
	void *data;
	int v, kind;

	if (level != IPPROTO_TCP || (name != TCP_CORK && name != TCP_NODELAY) ||
	    len != sizeof(int) || !val) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(setsockopt)(fd, level, name, val, len);
	}
	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (!esca_fd_is_socket(kind)) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(setsockopt)(fd, level, name, val, len);
	}
	if (esca_copy(&v, val, sizeof(v)) < 0)
		return -1;
	e = reserve(t, sizeof(v), &data);
	memcpy(data, &v, sizeof(v));
	e->nr = SYS_setsockopt;
	e->args[0] = (uint64_t)fd;
	e->args[1] = (uint64_t)level;
	e->args[2] = (uint64_t)name;
	e->args[3] = (uint64_t)(uintptr_t)data;
	e->args[4] = sizeof(v);
	commit(t, ESCA_CALL_SETSOCKOPT, fd, sizeof(v));
	return 0;
}

INTERPOSE(int, setsockopt, (int fd, int level, int name, const void *val, socklen_t len),
	  fd, level, name, val, len)

/* ---- writes ------------------------------------------------------------ */

/*
 * A write to a stream socket that directly follows a write to the same
 * socket is appended to that entry: one call sends both, and the byte
 * stream is the same.  Returns the entry to extend, or NULL.
 */
static struct esca_entry *mergeable(struct esca_thread *t, int fd, int fdkind, size_t len)
{
	struct esca_entry *prev;
	struct esca_meta *m;

	if (!t->n || t->arena_used + len > t->arena_cap)
		return NULL;
	prev = &t->table[t->n - 1];
	m = &t->meta[t->n - 1];
	if (fdkind != ESCA_FD_STREAM || prev->nr != SYS_write || m->fd != fd ||
	    (char *)(uintptr_t)prev->args[1] + prev->args[2] != t->arena + t->arena_used ||
	    prev->args[2] + len > esca_cfg.defer_max * 4)
		return NULL;
	return prev;
}

/* Gathers iov (validated, copied) into dst: 0, or -1 with EFAULT. */
static int copy_iov(char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; dst += iov[i].iov_len, i++)
		if (esca_copy(dst, iov[i].iov_base, iov[i].iov_len) < 0)
			return -1;
	return 0;
}

/* Records a write of len bytes gathered from iov (already validated). */
static ssize_t record_write(struct esca_thread *t, enum esca_call_kind kind, int fd, int fdkind,
			    const struct iovec *iov, int iovcnt, size_t len)
{
	struct esca_entry *e = mergeable(t, fd, fdkind, len);
	char *data;

	if (e) {
		data = t->arena + t->arena_used;
		if (copy_iov(data, iov, iovcnt) < 0)
			return -1;
		e->args[2] += len;
		e->expect += len;
		t->arena_used += len;	/* unaligned on purpose: the next may merge too */
		t->st.arena_bytes += len;
		t->st.deferred[kind]++;
		t->seg_calls++;
		return (ssize_t)len;
	}
	e = reserve(t, len, (void **)&data);
	if (copy_iov(data, iov, iovcnt) < 0)
		return -1;	/* nothing recorded */
	e->nr = SYS_write;
	e->flags = ESCA_ENTRY_EXPECT;
	e->args[0] = (uint64_t)fd;
	e->args[1] = (uint64_t)(uintptr_t)data;
	e->args[2] = len;
	e->expect = len;
	t->meta[t->n].data = data;
	/* known (the fd was just validated); kept because a close recorded
	 * later in the segment makes libesca forget it */
	t->meta[t->n].fd_kind = (uint8_t)fdkind;
	commit(t, kind, fd, len);
	return (ssize_t)len;
}

static ssize_t seg_write(struct esca_thread *t, int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (len == 0 || len > esca_cfg.defer_max) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(write)(fd, buf, len);
	}
	pthread_testcancel();
	return record_write(t, ESCA_CALL_WRITE, fd, kind, &iov, 1, len);
}

INTERPOSE(ssize_t, write, (int fd, const void *buf, size_t len), fd, buf, len)

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

static ssize_t seg_writev(struct esca_thread *t, int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec local[64];
	size_t total;
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	/* invalid counts, long vectors: the kernel gives the answer */
	if (iovcnt <= 0 || iovcnt > (int)(sizeof(local) / sizeof(local[0])))
		goto direct;
	if (esca_copy(local, iov, sizeof(*iov) * (size_t)iovcnt) < 0)
		return -1;
	total = iov_total(local, iovcnt);
	if (total == 0 || total > esca_cfg.defer_max)
		goto direct;
	pthread_testcancel();
	return record_write(t, ESCA_CALL_WRITEV, fd, kind, local, iovcnt, total);
direct:
	esca_direct_in_segment(t, fd, -1);
	return REAL(writev)(fd, iov, iovcnt);
}

INTERPOSE(ssize_t, writev, (int fd, const struct iovec *iov, int iovcnt), fd, iov, iovcnt)

#define ESCA_DEFER_MSG_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE)

/* sendto / send / sendmsg without control data: a sendto of one buffer. */
static ssize_t record_send(struct esca_thread *t, enum esca_call_kind kind, int fd,
			   const struct iovec *iov, int iovcnt, size_t len, int flags,
			   const struct sockaddr *addr, socklen_t alen)
{
	struct sockaddr_storage ss;
	struct esca_entry *e;
	size_t aoff = (len + 15) & ~(size_t)15;
	char *data;

	if (addr && esca_copy(&ss, addr, alen) < 0)
		return -1;
	e = reserve(t, aoff + (addr ? alen : 0), (void **)&data);
	if (copy_iov(data, iov, iovcnt) < 0)
		return -1;
	if (addr)
		memcpy(data + aoff, &ss, alen);
	e->nr = SYS_sendto;
	e->flags = ESCA_ENTRY_EXPECT;
	e->args[0] = (uint64_t)fd;
	e->args[1] = (uint64_t)(uintptr_t)data;
	e->args[2] = len;
	e->args[3] = (uint64_t)(unsigned)flags;
	e->args[4] = addr ? (uint64_t)(uintptr_t)(data + aoff) : 0;
	e->args[5] = addr ? alen : 0;
	e->expect = len;
	t->meta[t->n].data = data;
	t->meta[t->n].sock_flags = flags;
	commit(t, kind, fd, aoff + (addr ? alen : 0));
	return (ssize_t)len;
}

static bool send_deferrable(struct esca_thread *t, int fd, size_t len, int flags,
			    socklen_t alen, int kind)
{
	(void)t;
	(void)fd;
	return esca_fd_is_socket(kind) && len > 0 && len <= esca_cfg.defer_max &&
	       !(flags & ~ESCA_DEFER_MSG_FLAGS) && alen <= sizeof(struct sockaddr_storage);
}

static ssize_t seg_sendto(struct esca_thread *t, int fd, const void *buf, size_t len, int flags,
			const struct sockaddr *addr, socklen_t alen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (!send_deferrable(t, fd, len, flags, addr ? alen : 0, kind)) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(sendto)(fd, buf, len, flags, addr, alen);
	}
	pthread_testcancel();
	return record_send(t, ESCA_CALL_SEND, fd, &iov, 1, len, flags, addr, addr ? alen : 0);
}

INTERPOSE(ssize_t, sendto, (int fd, const void *buf, size_t len, int flags,
			const struct sockaddr *addr, socklen_t alen), fd, buf, len, flags, addr, alen)

static ssize_t seg_send(struct esca_thread *t, int fd, const void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (!send_deferrable(t, fd, len, flags, 0, kind)) {
		esca_direct_in_segment(t, fd, -1);
		return REAL(send)(fd, buf, len, flags);
	}
	pthread_testcancel();
	/* on a connected socket send(.., 0) is write() */
	if (!flags)
		return record_write(t, ESCA_CALL_SEND, fd, kind, &iov, 1, len);
	return record_send(t, ESCA_CALL_SEND, fd, &iov, 1, len, flags, NULL, 0);
}

INTERPOSE(ssize_t, send, (int fd, const void *buf, size_t len, int flags), fd, buf, len, flags)

static ssize_t seg_sendmsg(struct esca_thread *t, int fd, const struct msghdr *msg, int flags)
{
	struct iovec local[64];
	struct msghdr mh;
	size_t total;
	int kind;

	kind = check_fd(t, fd);
	if (kind < 0)
		return -1;
	if (esca_copy(&mh, msg, sizeof(mh)) < 0)
		return -1;
	if (mh.msg_controllen || mh.msg_iovlen == 0 ||
	    mh.msg_iovlen > sizeof(local) / sizeof(local[0]) || (mh.msg_name && !mh.msg_namelen))
		goto direct;
	if (esca_copy(local, mh.msg_iov, sizeof(*local) * mh.msg_iovlen) < 0)
		return -1;
	total = iov_total(local, (int)mh.msg_iovlen);
	if (!send_deferrable(t, fd, total, flags, mh.msg_name ? mh.msg_namelen : 0, kind))
		goto direct;
	pthread_testcancel();
	return record_send(t, ESCA_CALL_SENDMSG, fd, local, (int)mh.msg_iovlen, total, flags,
			   mh.msg_name, mh.msg_name ? mh.msg_namelen : 0);
direct:
	esca_direct_in_segment(t, fd, -1);
	return REAL(sendmsg)(fd, msg, flags);
}

INTERPOSE(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), fd, msg, flags)

static ssize_t seg_sendfile(struct esca_thread *t, int out_fd, int in_fd, off_t *offset,
			    size_t count)
{
	struct esca_entry *e;
	struct esca_meta *m;
	off_t off = -1;
	size_t len;
	char *data;
	int kind;

	if (check_fd(t, out_fd) < 0)
		return -1;
	kind = check_fd(t, in_fd);
	if (kind < 0)
		return -1;
	if (count == 0 || count > esca_cfg.sendfile_max || esca_fd_is_socket(kind))
		goto direct;
	if (offset && (esca_copy(&off, offset, sizeof(off)) < 0 || off < 0))
		goto direct;	/* the kernel's EFAULT / EINVAL */
	pthread_testcancel();
	/* the offset the kernel updates, and with the uring backend room to
	 * read the file into when the send is emulated by read + write */
	len = 16;
	if (t->ops == &esca_uring_ops && offset && count <= esca_cfg.uring_copy_max)
		len += count;
	e = reserve(t, len, (void **)&data);
	memcpy(data, &off, sizeof(off));
	m = &t->meta[t->n];
	m->in_fd = in_fd;
	m->offset = offset ? off : -1;
	m->data = len > 16 ? data + 16 : NULL;
	e->nr = SYS_sendfile;
	e->flags = ESCA_ENTRY_EXPECT;
	e->args[0] = (uint64_t)out_fd;
	e->args[1] = (uint64_t)in_fd;
	e->args[2] = offset ? (uint64_t)(uintptr_t)data : 0;
	e->args[3] = count;
	e->expect = count;
	if (offset) {
		off += (off_t)count;
		if (esca_copy(offset, &off, sizeof(off)) < 0)
			return -1;
	}
	commit(t, ESCA_CALL_SENDFILE, out_fd, len);
	return (ssize_t)count;
direct:
	esca_direct_in_segment(t, out_fd, in_fd);
	return REAL(sendfile)(out_fd, in_fd, offset, count);
}

INTERPOSE(ssize_t, sendfile, (int out_fd, int in_fd, off_t *offset, size_t count),
	  out_fd, in_fd, offset, count)

ESCA_API ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
	__attribute__((alias("sendfile")));

/* ---- calls that must see the effect of pending entries ----------------- */

/* A file position moved by a pending sendfile (without offset) or write. */
ESCA_API off_t lseek(int fd, off_t off, int whence)
{
	struct esca_thread *t = esca_segment();

	if (t && t->n && esca_fd_maybe_pending(t, fd))
		esca_flush_thread(t);
	return REAL(lseek)(fd, off, whence);
}

ESCA_API off_t lseek64(int fd, off_t off, int whence) __attribute__((alias("lseek")));

/* Reading a file (or a pipe to ourselves) after a pending write to it.  A
 * socket's two directions are independent: reading one needs no flush,
 * unless its close is pending (then the read must see EBADF). */
ESCA_API ssize_t read(int fd, void *buf, size_t len)
{
	struct esca_thread *t = esca_segment();

	if (t && t->n && esca_fd_maybe_pending(t, fd) &&
	    (!esca_fd_is_socket(esca_fd_peek(fd)) || close_pending(t, fd)))
		esca_flush_thread(t);
	return REAL(read)(fd, buf, len);
}
