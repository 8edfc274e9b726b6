// SPDX-License-Identifier: MIT
/*
 * The interposed calls that make, alias or close fds, or change what
 * libesca knows of one (fdtable.c keeps it).
 *
 * Makers record the kind of the new fd and its flags; an fd is PRIVATE
 * (deferrable) only when libesca made it here and saw every alias and
 * close of it since.  A call that makes an fd runs a pending close first,
 * so that the kernel hands out the number it would without libesca.
 * dup2/dup3 and close_range/closefrom keep libesca's own fds out of the
 * program's way (docs/libesca.md, Transparency).  libc functions that close
 * an fd internally (fclose, pclose, closedir) or take one over (fdopen,
 * fdopendir) are interposed for what libesca must know.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <string.h>
#include <unistd.h>

/* ---- sockets -------------------------------------------------------------------- */

static uint32_t sock_word(int domain, int type, int proto)
{
	uint32_t w = ESCA_FDW_PRIVATE;

	if ((type & 0xf) != SOCK_STREAM)
		w |= ESCA_FD_SOCKET;
	else if ((domain == AF_INET || domain == AF_INET6) && (!proto || proto == IPPROTO_TCP))
		w |= ESCA_FD_TCP;
	else if (domain == AF_UNIX)
		w |= ESCA_FD_UNIX;
	else
		w |= ESCA_FD_SOCKET;
	if (type & SOCK_NONBLOCK)
		w |= ESCA_FDW_NONBLOCK;
	return w;
}

/* A listener libesca did not see made (inherited): learnt once. */
static uint32_t listener_word(int fd)
{
	uint32_t w = esca_fdw(fd);
	int domain = 0, type = 0, proto = 0;
	socklen_t len = sizeof(int);

	if (esca_fdw_kind(w) != ESCA_FD_UNKNOWN)
		return w;
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    REAL(getsockopt)(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0)
		return w;
	w = (sock_word(domain, type, proto) & ~ESCA_FDW_PRIVATE) | ESCA_FDW_LISTEN;
	esca_fdw_set(fd, w);
	return w;
}

/* What an accepted socket is: its listener's kind, connected. */
static void set_accepted(int fd, int listener, int flags)
{
	uint32_t lw = listener_word(listener);
	unsigned kind = esca_fdw_kind(lw);

	if (kind != ESCA_FD_TCP && kind != ESCA_FD_UNIX)
		kind = ESCA_FD_SOCKET;
	esca_fdw_set(fd, kind | ESCA_FDW_PRIVATE | ESCA_FDW_CONNECTED |
			     (flags & SOCK_NONBLOCK ? ESCA_FDW_NONBLOCK : 0));
}

/* A wait, unless fd is a non-blocking one of the program's. */
static void before_maybe_wait(int fd, int flags)
{
	if (!(flags & MSG_DONTWAIT) && !esca_fdw_nonblocking(esca_fdw(fd)))
		esca_before_effect();
}

ESCA_API int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	int r;

	(void)esca_fd_touch(fd);
	before_maybe_wait(fd, 0);
	esca_before_new_fd();
	r = REAL(accept)(fd, addr, alen);
	if (r >= 0)
		set_accepted(r, fd, 0);
	return r;
}

ESCA_API int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	int r;

	(void)esca_fd_touch(fd);
	before_maybe_wait(fd, 0);
	esca_before_new_fd();
	r = REAL(accept4)(fd, addr, alen, flags);
	if (r >= 0)
		set_accepted(r, fd, flags);
	return r;
}

ESCA_API int socket(int domain, int type, int proto)
{
	int r;

	esca_before_new_fd();
	r = REAL(socket)(domain, type, proto);
	if (r >= 0)
		esca_fdw_set(r, sock_word(domain, type, proto));
	return r;
}

ESCA_API int socketpair(int domain, int type, int proto, int sv[2])
{
	uint32_t w;
	int r;

	esca_before_new_fd();
	r = REAL(socketpair)(domain, type, proto, sv);
	if (r == 0) {
		w = sock_word(domain, type, proto);
		if (esca_fdw_stream(w))
			w |= ESCA_FDW_CONNECTED;
		esca_fdw_set(sv[0], w);
		esca_fdw_set(sv[1], w);
	}
	return r;
}

ESCA_API int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	sa_family_t family = AF_UNSPEC;
	int r, err;

	(void)esca_fd_touch(fd);
	esca_before_effect();
	r = REAL(connect)(fd, addr, len);
	err = errno;
	if (addr && len >= sizeof(family))
		(void)esca_copy(&family, &addr->sa_family, sizeof(family));
	if (family == AF_UNSPEC)	/* a disconnect, whatever it returned */
		esca_fdw_clear(fd, ESCA_FDW_CONNECTED | ESCA_FDW_CONNECTING);
	else if (r == 0)
		esca_fdw_or(fd, ESCA_FDW_CONNECTED);
	else if (err == EINPROGRESS || err == EALREADY)
		esca_fdw_or(fd, ESCA_FDW_CONNECTING);
	errno = err;
	return r;
}

/* How a program learns that its non-blocking connect() completed. */
ESCA_API int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int r = REAL(getsockopt)(fd, level, name, val, len);
	int v;

	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR &&
	    (esca_fdw(fd) & ESCA_FDW_CONNECTING) && esca_copy(&v, val, sizeof(v)) == 0) {
		esca_fdw_clear(fd, ESCA_FDW_CONNECTING);
		if (v == 0)
			esca_fdw_or(fd, ESCA_FDW_CONNECTED);
	}
	return r;
}

/* ---- pipes and files -------------------------------------------------------------- */

ESCA_API int pipe(int fds[2])
{
	int r;

	esca_before_new_fd();
	r = REAL(pipe)(fds);
	if (r == 0) {
		esca_fdw_set(fds[0], ESCA_FD_PIPE | ESCA_FDW_PRIVATE);
		esca_fdw_set(fds[1], ESCA_FD_PIPE | ESCA_FDW_PRIVATE);
	}
	return r;
}

ESCA_API int pipe2(int fds[2], int flags)
{
	uint32_t w = ESCA_FD_PIPE | ESCA_FDW_PRIVATE | (flags & O_NONBLOCK ? ESCA_FDW_NONBLOCK : 0);
	int r;

	esca_before_new_fd();
	r = REAL(pipe2)(fds, flags);
	if (r == 0) {
		esca_fdw_set(fds[0], w);
		esca_fdw_set(fds[1], w);
	}
	return r;
}

static int open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

static int file_made(int r, int flags)
{
	if (r >= 0)
		esca_fdw_set(r, ESCA_FD_FILE | ESCA_FDW_PRIVATE |
				(flags & O_NONBLOCK ? ESCA_FDW_NONBLOCK : 0));
	return r;
}

/*
 * An open after a close pending in this thread (nginx closes a request's
 * file and opens the next one's): the batch and the open in one kernel
 * entry where the module runs an openat after a batch (its number is the
 * one the close freed, as with plain calls).  True when it ran there, its
 * result in *r.
 */
static bool open_with_batch(int dirfd, const char *path, int flags, int mode, int *r)
{
	struct esca_thread *t = esca_self;
	struct esca_entry w;
	long res = 0;
	bool ran;

	if (!t || !t->closes || !t->can_open || t->busy ||
	    atomic_load_explicit(&esca_closes_elsewhere, memory_order_relaxed) > 1 ||
	    !esca_claim_self(t))
		return false;
	memset(&w, 0, sizeof(w));
	w.nr = SYS_openat;
	w.args[0] = (uint64_t)(int64_t)dirfd;
	w.args[1] = (uint64_t)(uintptr_t)path;
	w.args[2] = (uint64_t)(unsigned)flags;
	w.args[3] = (uint64_t)(unsigned)mode;
	ran = esca_flush_wait(t, &w, &res);
	esca_release_self(t);
	if (!ran)
		return false;
	if (res < 0) {
		errno = (int)-res;
		*r = -1;
	} else {
		*r = (int)res;
	}
	return true;
}

ESCA_API int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	int mode, r;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (open_with_batch(dirfd, path, flags, mode, &r))
		return file_made(r, flags);
	esca_before_new_fd();
	return file_made(REAL(openat)(dirfd, path, flags, mode), flags);
}

ESCA_API int open(const char *path, int flags, ...)
{
	va_list ap;
	int mode, r;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (open_with_batch(AT_FDCWD, path, flags, mode, &r))
		return file_made(r, flags);
	esca_before_new_fd();
	return file_made(REAL(open)(path, flags, mode), flags);
}

ESCA_API int open64(const char *path, int flags, ...) __attribute__((alias("open")));
ESCA_API int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

ESCA_API int creat(const char *path, mode_t mode)
{
	esca_before_new_fd();
	return file_made(REAL(creat)(path, mode), 0);
}

ESCA_API int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

ESCA_API int mkstemp(char *tmpl)
{
	esca_before_new_fd();
	return file_made(REAL(mkstemp)(tmpl), 0);
}

ESCA_API int mkostemp(char *tmpl, int flags)
{
	esca_before_new_fd();
	return file_made(REAL(mkostemp)(tmpl, flags), flags);
}

ESCA_API int mkstemps(char *tmpl, int suffixlen)
{
	esca_before_new_fd();
	return file_made(REAL(mkstemps)(tmpl, suffixlen), 0);
}

ESCA_API int mkostemps(char *tmpl, int suffixlen, int flags)
{
	esca_before_new_fd();
	return file_made(REAL(mkostemps)(tmpl, suffixlen, flags), flags);
}

ESCA_API int mkstemp64(char *tmpl) __attribute__((alias("mkstemp")));

ESCA_API int memfd_create(const char *name, unsigned int flags)
{
	esca_before_new_fd();
	return file_made(REAL(memfd_create)(name, flags), 0);
}

/* fds of other kinds: known made here, never deferred on but closed. */
static int other_made(int r, bool nonblock)
{
	if (r >= 0)
		esca_fdw_set(r, ESCA_FD_OTHER | ESCA_FDW_PRIVATE | (nonblock ? ESCA_FDW_NONBLOCK : 0));
	return r;
}

ESCA_API int epoll_create(int size)
{
	esca_before_new_fd();
	return other_made(REAL(epoll_create)(size), false);
}

ESCA_API int epoll_create1(int flags)
{
	esca_before_new_fd();
	return other_made(REAL(epoll_create1)(flags), false);
}

ESCA_API int eventfd(unsigned int initval, int flags)
{
	esca_before_new_fd();
	return other_made(REAL(eventfd)(initval, flags), flags & EFD_NONBLOCK);
}

ESCA_API int timerfd_create(int clockid, int flags)
{
	esca_before_new_fd();
	return other_made(REAL(timerfd_create)(clockid, flags), flags & TFD_NONBLOCK);
}

ESCA_API int signalfd(int fd, const sigset_t *mask, int flags)
{
	if (fd != -1)
		return REAL(signalfd)(fd, mask, flags);
	esca_before_new_fd();
	return other_made(REAL(signalfd)(fd, mask, flags), flags & SFD_NONBLOCK);
}

ESCA_API int inotify_init(void)
{
	esca_before_new_fd();
	return other_made(REAL(inotify_init)(), false);
}

ESCA_API int inotify_init1(int flags)
{
	esca_before_new_fd();
	return other_made(REAL(inotify_init1)(flags), flags & IN_NONBLOCK);
}

ESCA_API int posix_openpt(int flags)
{
	esca_before_new_fd();
	return other_made(REAL(posix_openpt)(flags), flags & O_NONBLOCK);
}

/* ---- aliases --------------------------------------------------------------------- */

/* newfd (from dup) aliases oldfd: neither is the program's alone any more. */
static int aliased(int oldfd, int newfd)
{
	uint32_t w;

	if (newfd < 0 || newfd == oldfd)
		return newfd;
	w = esca_fdw(oldfd) & ((1u << ESCA_FDW_TAG_SHIFT) - 1) &
	    ~(ESCA_FDW_PRIVATE | ESCA_FDW_CLOSING | ESCA_FDW_HELD);
	if (esca_fdw_kind(w) == ESCA_FD_OWN)
		w = 0;
	esca_fdw_clear(oldfd, ESCA_FDW_PRIVATE);
	esca_fdw_set(newfd, w);
	return newfd;
}

ESCA_API int dup(int oldfd)
{
	if (esca_fd_is_own(oldfd)) {
		errno = EBADF;
		return -1;
	}
	(void)esca_fd_touch(oldfd);
	esca_before_new_fd();
	return aliased(oldfd, REAL(dup)(oldfd));
}

/* Putting a file at newfd: what was there is closed, as close() would
 * (pending entries first, held bytes in the background), and libesca's
 * own fd there moves away first. */
static int dup_prepare(int oldfd, int newfd)
{
	uint32_t w;

	if (esca_fd_is_own(oldfd)) {
		errno = EBADF;
		return -1;
	}
	(void)esca_fd_touch(oldfd);
	w = esca_fd_touch(newfd);
	esca_before_effect();
	if (unlikely(esca_fd_is_own(newfd)) && oldfd != newfd)
		esca_own_fd_evict(newfd);
	else if (unlikely(w & ESCA_FDW_HELD) && oldfd != newfd)
		esca_held_detach(newfd);
	return 0;
}

ESCA_API int dup2(int oldfd, int newfd)
{
	if (dup_prepare(oldfd, newfd) < 0)
		return -1;
	return aliased(oldfd, REAL(dup2)(oldfd, newfd));
}

ESCA_API int dup3(int oldfd, int newfd, int flags)
{
	if (dup_prepare(oldfd, newfd) < 0)
		return -1;
	return aliased(oldfd, REAL(dup3)(oldfd, newfd, flags));
}

/* fcntl: duplicates, O_NONBLOCK, locks. */
static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
	long flags;
	int r;

	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		if (esca_fd_is_own(fd)) {
			errno = EBADF;
			return -1;
		}
		(void)esca_fd_touch(fd);
		esca_before_new_fd();
		return aliased(fd, real(fd, cmd, arg));
	case F_SETFL:
		flags = (long)(intptr_t)arg;
		r = real(fd, cmd, arg);
		if (r == 0) {
			if (flags & O_NONBLOCK)
				esca_fdw_or(fd, ESCA_FDW_NONBLOCK);
			else
				esca_fdw_clear(fd, ESCA_FDW_NONBLOCK);
		}
		return r;
	case F_GETFD:
	case F_SETFD:
	case F_GETFL:
	case F_GETOWN:
	case F_SETOWN:
	case F_GETSIG:
	case F_SETSIG:
	case F_GETPIPE_SZ:
	case F_SETPIPE_SZ:
		return real(fd, cmd, arg);
	default:
		/* locks (a lock taken or given up, or a wait for one), leases ... */
		esca_before_effect();
		return real(fd, cmd, arg);
	}
}

ESCA_API int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(REAL(fcntl), fd, cmd, arg);
}

ESCA_API int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(REAL(fcntl64), fd, cmd, arg);
}

/* ioctl: FIONBIO sets O_NONBLOCK; any other request may wait on or
 * observe the pending calls' effects (FIONREAD in a loop). */
ESCA_API int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	int r, on;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (request != FIONBIO) {
		esca_before_effect();
		return REAL(ioctl)(fd, request, arg);
	}
	r = REAL(ioctl)(fd, request, arg);
	if (r == 0 && esca_copy(&on, arg, sizeof(on)) == 0) {
		if (on)
			esca_fdw_or(fd, ESCA_FDW_NONBLOCK);
		else
			esca_fdw_clear(fd, ESCA_FDW_NONBLOCK);
	}
	return r;
}

/* ---- closing many fds ----------------------------------------------------------- */

/*
 * close_range, closefrom: pending entries of this thread run first -- they
 * may concern fds about to close, and without libesca they would have run
 * already -- held sockets among them go on in the background, and
 * libesca's own fds stay open, as fds the program never had.
 */
ESCA_API int close_range(unsigned first, unsigned last, int flags)
{
	esca_before_effect();
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		esca_held_detach_range(first, last);
	return esca_close_range_keep_own(first, last, flags);
}

ESCA_API void closefrom(int lowfd)
{
	esca_before_effect();
	if (lowfd < 0)
		lowfd = 0;
	esca_held_detach_range((unsigned)lowfd, ~0u);
	/* before Linux 5.9 (no close_range), glibc's own closefrom walks
	 * /proc/self/fd, and closes libesca's fds too */
	if (esca_close_range_keep_own((unsigned)lowfd, ~0u, 0) < 0 && errno == ENOSYS)
		REAL(closefrom)(lowfd);
}

/* ---- stdio and directories: fds libc closes itself -------------------------------- */

/* fd now belongs to a FILE or DIR: libc may write it and close it without
 * libesca seeing it.  Its pending entries run first. */
static void taken_over(int fd)
{
	if (fd < 0)
		return;
	(void)esca_fd_touch(fd);
	esca_before_effect();
	esca_fdw_clear(fd, ESCA_FDW_PRIVATE);
}

ESCA_API FILE *fdopen(int fd, const char *mode)
{
	taken_over(fd);
	return REAL(fdopen)(fd, mode);
}

ESCA_API DIR *fdopendir(int fd)
{
	taken_over(fd);
	return REAL(fdopendir)(fd);
}

/* A FILE or DIR libc opened: its fd is libc's. */
static void libc_made(int fd, uint32_t kind)
{
	if (fd >= 0)
		esca_fdw_set(fd, kind);
}

ESCA_API FILE *fopen(const char *path, const char *mode)
{
	FILE *f;

	esca_before_new_fd();
	f = REAL(fopen)(path, mode);
	if (f)
		libc_made(fileno(f), ESCA_FD_FILE);
	return f;
}

ESCA_API FILE *fopen64(const char *path, const char *mode) __attribute__((alias("fopen")));

/*
 * The descriptor under a stream, or -1.  glibc 2.41 declares fclose(),
 * freopen() and fileno() __nonnull, so the NULL test lives here, where the
 * parameter carries no such promise: a NULL stream still reaches the real
 * function and fails there as it would without libesca.
 */
static int stream_fd(FILE *f)
{
	return f ? fileno(f) : -1;
}

ESCA_API FILE *freopen(const char *path, const char *mode, FILE *f)
{
	int fd = stream_fd(f);

	if (fd >= 0)
		taken_over(fd);
	esca_before_new_fd();
	if (fd >= 0)
		esca_fd_forget(fd);
	f = REAL(freopen)(path, mode, f);
	if (f)
		libc_made(fileno(f), ESCA_FD_FILE);
	return f;
}

ESCA_API FILE *freopen64(const char *path, const char *mode, FILE *f)
	__attribute__((alias("freopen")));

ESCA_API FILE *tmpfile(void)
{
	FILE *f;

	esca_before_new_fd();
	f = REAL(tmpfile)();
	if (f)
		libc_made(fileno(f), ESCA_FD_FILE);
	return f;
}

ESCA_API FILE *tmpfile64(void) __attribute__((alias("tmpfile")));

ESCA_API DIR *opendir(const char *name)
{
	DIR *d;

	esca_before_new_fd();
	d = REAL(opendir)(name);
	if (d)
		libc_made(dirfd(d), ESCA_FD_OTHER);
	return d;
}

ESCA_API FILE *popen(const char *cmd, const char *type)
{
	FILE *f;

	/* a process is made, and a pipe */
	esca_before_effect();
	esca_before_new_fd();
	f = REAL(popen)(cmd, type);
	if (f)
		libc_made(fileno(f), ESCA_FD_PIPE);
	return f;
}

ESCA_API int fclose(FILE *f)
{
	int fd = stream_fd(f);
	int r;

	/* its buffer goes out: a write */
	esca_before_effect();
	if (fd >= 0 && (esca_fdw(fd) & ESCA_FDW_HELD))
		esca_held_detach(fd);
	r = REAL(fclose)(f);
	if (fd >= 0)
		esca_fd_forget(fd);
	return r;
}

ESCA_API int pclose(FILE *f)
{
	int fd = stream_fd(f);
	int r;

	esca_before_effect();	/* and it waits for the child */
	r = REAL(pclose)(f);
	if (fd >= 0)
		esca_fd_forget(fd);
	return r;
}

ESCA_API int closedir(DIR *d)
{
	int fd = dirfd(d);
	int r;

	r = REAL(closedir)(d);
	if (fd >= 0)
		esca_fd_forget(fd);
	return r;
}

ESCA_API int fflush(FILE *f)
{
	esca_before_effect();
	return REAL(fflush)(f);
}
