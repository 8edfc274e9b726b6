// SPDX-License-Identifier: MIT
/*
 * The interposed calls that make, copy or close fds wholesale: what
 * libesca learns of each fd (the table itself, and libesca's own fds, are
 * fdtable.c).  Creators record the kind of the new fd; dup2/dup3 and
 * close_range/closefrom keep libesca's own fds out of the program's way
 * (docs/libesca.md, Transparency).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- fd creators: remember what each new fd is ------------------------- */

/* An accepted socket has its listener's type. */
static enum esca_fd_kind accepted_kind(int listener)
{
	int k = esca_fd_kind(listener);

	return k == ESCA_FD_STREAM ? ESCA_FD_STREAM : ESCA_FD_SOCKET;
}

static enum esca_fd_kind socket_kind(int type)
{
	return (type & 0xf) == SOCK_STREAM ? ESCA_FD_STREAM : ESCA_FD_SOCKET;
}

ESCA_API int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	int r;

	esca_touch();
	r = REAL(accept)(fd, addr, alen);
	if (r >= 0)
		esca_fd_set(r, accepted_kind(fd));
	return r;
}

ESCA_API int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	int r;

	esca_touch();
	r = REAL(accept4)(fd, addr, alen, flags);
	if (r >= 0)
		esca_fd_set(r, accepted_kind(fd));
	return r;
}

ESCA_API int socket(int domain, int type, int proto)
{
	int r;

	esca_touch();
	r = REAL(socket)(domain, type, proto);
	esca_fd_set(r, socket_kind(type));
	return r;
}

ESCA_API int socketpair(int domain, int type, int proto, int sv[2])
{
	int r;

	esca_touch();
	r = REAL(socketpair)(domain, type, proto, sv);
	if (r == 0) {
		esca_fd_set(sv[0], socket_kind(type));
		esca_fd_set(sv[1], socket_kind(type));
	}
	return r;
}

ESCA_API int pipe(int fds[2])
{
	int r;

	esca_touch();
	r = REAL(pipe)(fds);
	if (r == 0) {
		esca_fd_set(fds[0], ESCA_FD_PIPE);
		esca_fd_set(fds[1], ESCA_FD_PIPE);
	}
	return r;
}

ESCA_API int pipe2(int fds[2], int flags)
{
	int r;

	esca_touch();
	r = REAL(pipe2)(fds, flags);
	if (r == 0) {
		esca_fd_set(fds[0], ESCA_FD_PIPE);
		esca_fd_set(fds[1], ESCA_FD_PIPE);
	}
	return r;
}

static int open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

/* An fd from open() is not a socket: that is all the backends need to know
 * (a FIFO or a device marked FILE only loses the io_uring fast path). */
ESCA_API int open(const char *path, int flags, ...)
{
	va_list ap;
	int mode, r;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	esca_touch();
	r = REAL(open)(path, flags, mode);
	esca_fd_set(r, ESCA_FD_FILE);
	return r;
}

ESCA_API int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	int mode, r;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	esca_touch();
	r = REAL(openat)(dirfd, path, flags, mode);
	esca_fd_set(r, ESCA_FD_FILE);
	return r;
}

ESCA_API int open64(const char *path, int flags, ...) __attribute__((alias("open")));
ESCA_API int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

/* Putting a file at newfd: libesca's own fd there moves away first, and
 * one of them is no file to copy. */
static int dup_prepare(int oldfd, int newfd)
{
	struct esca_thread *t = esca_segment();

	if (esca_fd_is_own(oldfd)) {
		errno = EBADF;
		return -1;
	}
	if (t)
		esca_direct_in_segment(t, newfd, oldfd);
	if (unlikely(esca_fd_is_own(newfd)) && oldfd != newfd)
		esca_own_fd_evict(newfd);
	return 0;
}

ESCA_API int dup2(int oldfd, int newfd)
{
	int r;

	if (dup_prepare(oldfd, newfd) < 0)
		return -1;
	r = REAL(dup2)(oldfd, newfd);
	esca_fd_set(r, ESCA_FD_UNKNOWN);
	return r;
}

ESCA_API int dup3(int oldfd, int newfd, int flags)
{
	int r;

	if (dup_prepare(oldfd, newfd) < 0)
		return -1;
	r = REAL(dup3)(oldfd, newfd, flags);
	esca_fd_set(r, ESCA_FD_UNKNOWN);
	return r;
}

/*
 * Closing many fds at once (close_range, closefrom): pending entries of this
 * thread's segment run first -- they may concern fds about to close, and
 * without libesca they would have run already -- and libesca's own fds stay
 * open, as fds the program never had.
 */
ESCA_API int close_range(unsigned first, unsigned last, int flags)
{
	struct esca_thread *t = esca_segment();

	if (t && t->n)
		esca_flush_thread(t);
	return esca_close_range_keep_own(first, last, flags);
}

ESCA_API void closefrom(int lowfd)
{
	struct esca_thread *t = esca_segment();

	if (t && t->n)
		esca_flush_thread(t);
	if (lowfd < 0)
		lowfd = 0;
	/* before Linux 5.9 (no close_range), glibc's own closefrom walks
	 * /proc/self/fd, and closes libesca's fds too */
	if (esca_close_range_keep_own((unsigned)lowfd, ~0u, 0) < 0 && errno == ENOSYS)
		REAL(closefrom)(lowfd);
}
