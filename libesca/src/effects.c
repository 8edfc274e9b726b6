// SPDX-License-Identifier: MIT
/*
 * Calls that are never deferred and have an effect outside the process, or
 * wait for one: the calling thread's pending entries run first, so that
 * effects keep program order (docs/libesca.md, rule 2).  Without anything
 * pending each costs one test.
 *
 *   - waits: poll, select, epoll waits (which also wait for the sockets
 *     libesca holds bytes for: held.c), sleeps, signal waits, child waits,
 *     joins, semaphores, message queues, file locks, blocking reads;
 *   - write-like calls and file changes libesca does not defer;
 *   - process creation, signals sent, exec and exit (every thread's
 *     entries, and every held byte, before the image goes);
 *   - siglongjmp and friends out of a handler that interrupted libesca:
 *     what the handler left unfinished is picked up by the next flush;
 *   - syscall(): whatever the number, as the call it is.
 */
/*
 * This file defines longjmp, _longjmp, siglongjmp and __longjmp_chk, and
 * glibc's fortified <setjmp.h> (Debian builds with -D_FORTIFY_SOURCE=2)
 * renames the first three to the last: both would define one symbol.  Its
 * own calls need no fortification: they are all REAL() pointers.
 */
#undef _FORTIFY_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* glibc's fortified entry points (-D_FORTIFY_SOURCE), which its headers
 * declare only as redirections */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *alen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		size_t fdslen);
char *__fgets_chk(char *s, size_t size, int n, FILE *f);
size_t __fread_chk(void *p, size_t plen, size_t size, size_t n, FILE *f);
ssize_t __getdelim(char **line, size_t *n, int delim, FILE *f);
int _IO_getc(FILE *f);
int _IO_putc(int c, FILE *f);
int __isoc99_vfscanf(FILE *f, const char *fmt, va_list ap);
int __isoc99_vscanf(const char *fmt, va_list ap);
int __isoc99_fscanf(FILE *f, const char *fmt, ...);
int __isoc99_scanf(const char *fmt, ...);
int __vprintf_chk(int flag, const char *fmt, va_list ap);
int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap);
int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap);
int __printf_chk(int flag, const char *fmt, ...);
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);
int __dprintf_chk(int fd, int flag, const char *fmt, ...);

/* ---- waits and effects ----------------------------------------------------------- */

#define BEFORE(ret, name, params, args)					\
	ESCA_API ret name params						\
	{									\
		esca_before_effect();						\
		return REAL(name) args;						\
	}

BEFORE(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv),
       (n, r, w, e, tv))
BEFORE(int, pselect, (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		      const sigset_t *mask), (n, r, w, e, ts, mask))
BEFORE(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))
BEFORE(int, clock_nanosleep, (clockid_t c, int flags, const struct timespec *req,
			      struct timespec *rem), (c, flags, req, rem))
BEFORE(unsigned int, sleep, (unsigned int s), (s))
BEFORE(int, usleep, (useconds_t us), (us))
BEFORE(int, pause, (void), ())
BEFORE(int, sigsuspend, (const sigset_t *mask), (mask))
BEFORE(int, sigwaitinfo, (const sigset_t *set, siginfo_t *info), (set, info))
BEFORE(int, sigtimedwait, (const sigset_t *set, siginfo_t *info, const struct timespec *ts),
       (set, info, ts))
BEFORE(int, sigwait, (const sigset_t *set, int *sig), (set, sig))
BEFORE(pid_t, wait, (int *status), (status))
BEFORE(pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))
BEFORE(int, waitid, (idtype_t type, id_t id, siginfo_t *info, int options),
       (type, id, info, options))
BEFORE(pid_t, wait3, (int *status, int options, struct rusage *ru), (status, options, ru))
BEFORE(pid_t, wait4, (pid_t pid, int *status, int options, struct rusage *ru),
       (pid, status, options, ru))
/* a thread waiting for another one, which may wait for the batch */
BEFORE(int, pthread_join, (pthread_t th, void **ret), (th, ret))
BEFORE(int, pthread_timedjoin_np, (pthread_t th, void **ret, const struct timespec *ts),
       (th, ret, ts))
BEFORE(int, pthread_clockjoin_np, (pthread_t th, void **ret, clockid_t c,
				   const struct timespec *ts), (th, ret, c, ts))
BEFORE(int, pthread_barrier_wait, (pthread_barrier_t *b), (b))
BEFORE(int, sem_wait, (sem_t *sem), (sem))
BEFORE(int, sem_timedwait, (sem_t *sem, const struct timespec *ts), (sem, ts))
BEFORE(int, sem_clockwait, (sem_t *sem, clockid_t c, const struct timespec *ts), (sem, c, ts))
BEFORE(int, sem_post, (sem_t *sem), (sem))
BEFORE(ssize_t, msgrcv, (int id, void *p, size_t n, long type, int flags), (id, p, n, type, flags))
BEFORE(int, msgsnd, (int id, const void *p, size_t n, int flags), (id, p, n, flags))
BEFORE(ssize_t, mq_receive, (mqd_t q, char *p, size_t n, unsigned int *prio), (q, p, n, prio))
BEFORE(ssize_t, mq_timedreceive, (mqd_t q, char *p, size_t n, unsigned int *prio,
				  const struct timespec *ts), (q, p, n, prio, ts))
BEFORE(int, mq_send, (mqd_t q, const char *p, size_t n, unsigned int prio), (q, p, n, prio))
BEFORE(int, mq_timedsend, (mqd_t q, const char *p, size_t n, unsigned int prio,
			   const struct timespec *ts), (q, p, n, prio, ts))
BEFORE(int, flock, (int fd, int op), (fd, op))
BEFORE(int, lockf, (int fd, int cmd, off_t len), (fd, cmd, len))
BEFORE(int, lockf64, (int fd, int cmd, off_t len), (fd, cmd, len))
BEFORE(int, eventfd_read, (int fd, eventfd_t *v), (fd, v))
BEFORE(int, eventfd_write, (int fd, eventfd_t v), (fd, v))
/* processes made (and waited for), signals sent */
BEFORE(int, system, (const char *cmd), (cmd))
BEFORE(int, posix_spawn, (pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
       (pid, path, fa, attr, argv, envp))
BEFORE(int, posix_spawnp, (pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[]),
       (pid, file, fa, attr, argv, envp))
BEFORE(int, kill, (pid_t pid, int sig), (pid, sig))
BEFORE(int, killpg, (pid_t pg, int sig), (pg, sig))
BEFORE(int, tgkill, (pid_t tgid, pid_t tid, int sig), (tgid, tid, sig))
BEFORE(int, pthread_kill, (pthread_t th, int sig), (th, sig))
BEFORE(int, sigqueue, (pid_t pid, int sig, const union sigval v), (pid, sig, v))
BEFORE(int, raise, (int sig), (sig))
/* write-like calls and file changes */
BEFORE(ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off), (fd, buf, n, off))
BEFORE(ssize_t, pwrite64, (int fd, const void *buf, size_t n, off_t off), (fd, buf, n, off))
BEFORE(ssize_t, pwritev, (int fd, const struct iovec *iov, int cnt, off_t off),
       (fd, iov, cnt, off))
BEFORE(ssize_t, pwritev64, (int fd, const struct iovec *iov, int cnt, off_t off),
       (fd, iov, cnt, off))
BEFORE(ssize_t, pwritev2, (int fd, const struct iovec *iov, int cnt, off_t off, int flags),
       (fd, iov, cnt, off, flags))
BEFORE(ssize_t, pwritev64v2, (int fd, const struct iovec *iov, int cnt, off_t off, int flags),
       (fd, iov, cnt, off, flags))
BEFORE(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags), (fd, v, n, flags))
BEFORE(ssize_t, splice, (int in, off_t *inoff, int out, off_t *outoff, size_t n,
			 unsigned int flags), (in, inoff, out, outoff, n, flags))
BEFORE(ssize_t, tee, (int in, int out, size_t n, unsigned int flags), (in, out, n, flags))
BEFORE(ssize_t, vmsplice, (int fd, const struct iovec *iov, size_t n, unsigned int flags),
       (fd, iov, n, flags))
BEFORE(ssize_t, copy_file_range, (int in, off_t *inoff, int out, off_t *outoff, size_t n,
				  unsigned int flags), (in, inoff, out, outoff, n, flags))
BEFORE(int, ftruncate, (int fd, off_t len), (fd, len))
BEFORE(int, ftruncate64, (int fd, off_t len), (fd, len))
BEFORE(int, truncate, (const char *path, off_t len), (path, len))
BEFORE(int, truncate64, (const char *path, off_t len), (path, len))
BEFORE(int, fsync, (int fd), (fd))
BEFORE(int, fdatasync, (int fd), (fd))
BEFORE(int, syncfs, (int fd), (fd))
BEFORE(int, sync_file_range, (int fd, off_t off, off_t n, unsigned int flags),
       (fd, off, n, flags))
BEFORE(int, fallocate, (int fd, int mode, off_t off, off_t len), (fd, mode, off, len))
BEFORE(int, fallocate64, (int fd, int mode, off_t off, off_t len), (fd, mode, off, len))
BEFORE(int, posix_fallocate, (int fd, off_t off, off_t len), (fd, off, len))
BEFORE(int, posix_fallocate64, (int fd, off_t off, off_t len), (fd, off, len))
BEFORE(int, rename, (const char *a, const char *b), (a, b))
BEFORE(int, renameat, (int da, const char *a, int db, const char *b), (da, a, db, b))
BEFORE(int, renameat2, (int da, const char *a, int db, const char *b, unsigned int flags),
       (da, a, db, b, flags))
BEFORE(int, unlink, (const char *path), (path))
BEFORE(int, unlinkat, (int dir, const char *path, int flags), (dir, path, flags))
BEFORE(int, link, (const char *a, const char *b), (a, b))
BEFORE(int, linkat, (int da, const char *a, int db, const char *b, int flags),
       (da, a, db, b, flags))
BEFORE(int, symlink, (const char *a, const char *b), (a, b))
BEFORE(int, symlinkat, (const char *a, int d, const char *b), (a, d, b))
BEFORE(int, mkdir, (const char *path, mode_t mode), (path, mode))
BEFORE(int, mkdirat, (int d, const char *path, mode_t mode), (d, path, mode))
BEFORE(int, rmdir, (const char *path), (path))

/* a lock or a condition another thread may release only once this
 * thread's calls had their effect: an uncontended lock does not wait */
#define LOCK(name, params, args, trylock, targs)				\
	ESCA_API int name params						\
	{									\
		if (unlikely(esca_pending() != NULL) && REAL(trylock) targs == 0)	\
			return 0;						\
		esca_before_effect();						\
		return REAL(name) args;						\
	}

LOCK(pthread_mutex_lock, (pthread_mutex_t *m), (m), pthread_mutex_trylock, (m))
LOCK(pthread_mutex_timedlock, (pthread_mutex_t *m, const struct timespec *ts), (m, ts),
     pthread_mutex_trylock, (m))
LOCK(pthread_mutex_clocklock, (pthread_mutex_t *m, clockid_t c, const struct timespec *ts),
     (m, c, ts), pthread_mutex_trylock, (m))
LOCK(pthread_rwlock_rdlock, (pthread_rwlock_t *l), (l), pthread_rwlock_tryrdlock, (l))
LOCK(pthread_rwlock_wrlock, (pthread_rwlock_t *l), (l), pthread_rwlock_trywrlock, (l))
LOCK(pthread_rwlock_timedrdlock, (pthread_rwlock_t *l, const struct timespec *ts), (l, ts),
     pthread_rwlock_tryrdlock, (l))
LOCK(pthread_rwlock_timedwrlock, (pthread_rwlock_t *l, const struct timespec *ts), (l, ts),
     pthread_rwlock_trywrlock, (l))
/*
 * Condition variables: glibc's current ones (GLIBC_2.3.2 on x86-64, the
 * default version dlsym() finds).  An interposer cannot tell which version
 * a caller bound to; the compat one (GLIBC_2.2.5) serves only programs
 * linked before glibc 2.3.2 (2003), which libesca does not support.
 */
BEFORE(int, pthread_cond_wait, (pthread_cond_t *c, pthread_mutex_t *m), (c, m))
BEFORE(int, pthread_cond_timedwait, (pthread_cond_t *c, pthread_mutex_t *m,
				     const struct timespec *ts), (c, m, ts))
BEFORE(int, pthread_cond_clockwait, (pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
				     const struct timespec *ts), (c, m, clk, ts))

/* stdio: its buffers go out, or fill from, the fd through glibc's own
 * calls, which libesca does not see (the scanf family of C99 and later,
 * which glibc's headers name __isoc99_*) */
BEFORE(int, fgetc, (FILE *f), (f))
BEFORE(int, getc, (FILE *f), (f))
BEFORE(int, _IO_getc, (FILE *f), (f))
BEFORE(int, getchar, (void), ())
BEFORE(char *, fgets, (char *s, int n, FILE *f), (s, n, f))
BEFORE(char *, __fgets_chk, (char *s, size_t size, int n, FILE *f), (s, size, n, f))
BEFORE(size_t, fread, (void *p, size_t size, size_t n, FILE *f), (p, size, n, f))
BEFORE(size_t, __fread_chk, (void *p, size_t plen, size_t size, size_t n, FILE *f),
       (p, plen, size, n, f))
BEFORE(ssize_t, getline, (char **line, size_t *n, FILE *f), (line, n, f))
BEFORE(ssize_t, getdelim, (char **line, size_t *n, int delim, FILE *f), (line, n, delim, f))
BEFORE(ssize_t, __getdelim, (char **line, size_t *n, int delim, FILE *f), (line, n, delim, f))
BEFORE(int, __isoc99_vfscanf, (FILE *f, const char *fmt, va_list ap), (f, fmt, ap))
BEFORE(int, __isoc99_vscanf, (const char *fmt, va_list ap), (fmt, ap))
BEFORE(int, fputc, (int c, FILE *f), (c, f))
BEFORE(int, putc, (int c, FILE *f), (c, f))
BEFORE(int, _IO_putc, (int c, FILE *f), (c, f))
BEFORE(int, putchar, (int c), (c))
BEFORE(int, fputs, (const char *s, FILE *f), (s, f))
BEFORE(int, puts, (const char *s), (s))
BEFORE(size_t, fwrite, (const void *p, size_t size, size_t n, FILE *f), (p, size, n, f))
BEFORE(int, vprintf, (const char *fmt, va_list ap), (fmt, ap))
BEFORE(int, vfprintf, (FILE *f, const char *fmt, va_list ap), (f, fmt, ap))
BEFORE(int, vdprintf, (int fd, const char *fmt, va_list ap), (fd, fmt, ap))
BEFORE(int, __vprintf_chk, (int flag, const char *fmt, va_list ap), (flag, fmt, ap))
BEFORE(int, __vfprintf_chk, (FILE *f, int flag, const char *fmt, va_list ap), (f, flag, fmt, ap))
BEFORE(int, __vdprintf_chk, (int fd, int flag, const char *fmt, va_list ap), (fd, flag, fmt, ap))

/* The variadic ones, through their va_list forms above. */
#define VARIADIC(name, vname, params, last, args)				\
	ESCA_API int name params						\
	{									\
		va_list ap;							\
		int r;								\
										\
		va_start(ap, last);						\
		r = vname args;							\
		va_end(ap);							\
		return r;							\
	}

VARIADIC(__isoc99_fscanf, __isoc99_vfscanf, (FILE *f, const char *fmt, ...), fmt, (f, fmt, ap))
VARIADIC(__isoc99_scanf, __isoc99_vscanf, (const char *fmt, ...), fmt, (fmt, ap))
VARIADIC(printf, vprintf, (const char *fmt, ...), fmt, (fmt, ap))
VARIADIC(fprintf, vfprintf, (FILE *f, const char *fmt, ...), fmt, (f, fmt, ap))
VARIADIC(dprintf, vdprintf, (int fd, const char *fmt, ...), fmt, (fd, fmt, ap))
VARIADIC(__printf_chk, __vprintf_chk, (int flag, const char *fmt, ...), fmt, (flag, fmt, ap))
VARIADIC(__fprintf_chk, __vfprintf_chk, (FILE *f, int flag, const char *fmt, ...), fmt,
	 (f, flag, fmt, ap))
VARIADIC(__dprintf_chk, __vdprintf_chk, (int fd, int flag, const char *fmt, ...), fmt,
	 (fd, flag, fmt, ap))

ESCA_API void sync(void)
{
	esca_before_effect();
	REAL(sync)();
}

/* ---- reads: a wait, unless the fd cannot block ------------------------------------ */

/*
 * A read on fd waits (and may wait for what a pending call makes happen)
 * unless the program made fd non-blocking or asked for MSG_DONTWAIT, or fd
 * is a file; a read of an fd whose close is pending must meet EBADF.
 */
static void before_read(int fd, int flags)
{
	uint32_t w = esca_fd_touch(fd);
	struct esca_thread *t = esca_pending();

	if (!t)
		return;
	if ((w & ESCA_FDW_CLOSING) ||
	    (esca_fdw_kind(w) == ESCA_FD_FILE && esca_fd_maybe_pending(t, fd)) ||
	    (!(flags & MSG_DONTWAIT) && !esca_fdw_nonblocking(w) &&
	     esca_fdw_kind(w) != ESCA_FD_FILE))
		esca_before_effect_slow(t);
}

/* A file position a pending sendfile without offset moves. */
ESCA_API off_t lseek(int fd, off_t off, int whence)
{
	struct esca_thread *t = esca_pending();

	(void)esca_fd_touch(fd);
	if (t && esca_fd_maybe_pending(t, fd))
		esca_before_effect_slow(t);
	return REAL(lseek)(fd, off, whence);
}

ESCA_API off_t lseek64(int fd, off_t off, int whence) __attribute__((alias("lseek")));

/* The peer is gone, and the program knows it: later writes run at once
 * and fail as the plain ones. */
static ssize_t after_read(int fd, ssize_t r)
{
	int err;

	if (unlikely(r < 0)) {
		err = errno;
		if (err == ECONNRESET || err == EPIPE)
			esca_fdw_or(fd, ESCA_FDW_BROKEN);
		errno = err;
	}
	return r;
}

ESCA_API ssize_t read(int fd, void *buf, size_t len)
{
	before_read(fd, 0);
	return after_read(fd, REAL(read)(fd, buf, len));
}

ESCA_API ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	before_read(fd, 0);
	return after_read(fd, REAL(__read_chk)(fd, buf, len, buflen));
}

ESCA_API ssize_t readv(int fd, const struct iovec *iov, int n)
{
	before_read(fd, 0);
	return after_read(fd, REAL(readv)(fd, iov, n));
}

ESCA_API ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	before_read(fd, flags);
	return after_read(fd, REAL(recv)(fd, buf, len, flags));
}

ESCA_API ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	before_read(fd, flags);
	return after_read(fd, REAL(__recv_chk)(fd, buf, len, buflen, flags));
}

ESCA_API ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			  socklen_t *alen)
{
	before_read(fd, flags);
	return after_read(fd, REAL(recvfrom)(fd, buf, len, flags, addr, alen));
}

ESCA_API ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
				struct sockaddr *addr, socklen_t *alen)
{
	before_read(fd, flags);
	return after_read(fd, REAL(__recvfrom_chk)(fd, buf, len, buflen, flags, addr, alen));
}

/* May receive fds (SCM_RIGHTS): the numbers the kernel would give. */
static void before_recvmsg(int fd, const struct msghdr *msg, int flags)
{
	struct msghdr mh;

	before_read(fd, flags);
	if (esca_copy(&mh, msg, sizeof(mh)) < 0 || (mh.msg_control && mh.msg_controllen))
		esca_before_new_fd();
}

ESCA_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	before_recvmsg(fd, msg, flags);
	return after_read(fd, REAL(recvmsg)(fd, msg, flags));
}

ESCA_API int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
		      struct timespec *ts)
{
	before_read(fd, flags);
	if (n)
		before_recvmsg(fd, &v[0].msg_hdr, flags | MSG_DONTWAIT);
	return (int)after_read(fd, REAL(recvmmsg)(fd, v, n, flags, ts));
}

/* ---- the event loop's waits ------------------------------------------------------- */

BEFORE(int, epoll_wait, (int epfd, struct epoll_event *events, int maxevents, int timeout),
       (epfd, events, maxevents, timeout))
BEFORE(int, epoll_pwait, (int epfd, struct epoll_event *events, int maxevents, int timeout,
			  const sigset_t *sigmask), (epfd, events, maxevents, timeout, sigmask))
BEFORE(int, epoll_pwait2, (int epfd, struct epoll_event *events, int maxevents,
			   const struct timespec *timeout, const sigset_t *sigmask),
       (epfd, events, maxevents, timeout, sigmask))
BEFORE(int, poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
BEFORE(int, __poll_chk, (struct pollfd *fds, nfds_t n, int timeout, size_t fdslen),
       (fds, n, timeout, fdslen))
BEFORE(int, ppoll, (struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask), (fds, n, ts, mask))
BEFORE(int, __ppoll_chk, (struct pollfd *fds, nfds_t n, const struct timespec *ts,
			  const sigset_t *mask, size_t fdslen), (fds, n, ts, mask, fdslen))

/* ---- the end of the process or of its image -------------------------------------- */

/* Every thread's entries and every held byte, before the image goes. */
static void before_image_ends(void)
{
	if (esca_vfork_child)
		return;
	esca_flush_all_threads();
	esca_held_drain_all();
}

/*
 * _exit() skips the destructors that would run the batches.  It is what
 * glibc's is, exit_group(2), called directly: a vfork() child that calls it
 * after a failed exec must not run dlsym() in its parent's memory.
 */
ESCA_API void _exit(int status)
{
	before_image_ends();
	for (;;)
		REAL(syscall)(SYS_exit_group, status);
}

ESCA_API void _Exit(int status)
{
	before_image_ends();
	for (;;)
		REAL(syscall)(SYS_exit_group, status);
}

ESCA_API void quick_exit(int status)
{
	before_image_ends();
	REAL(quick_exit)(status);
	__builtin_unreachable();
}

ESCA_API void abort(void)
{
	before_image_ends();
	REAL(abort)();
	__builtin_unreachable();
}

/*
 * exec: the new image replaces this one without running its destructors,
 * so every thread's pending entries run first (without libesca they would
 * have run already) and every held byte goes out, and the live stats file,
 * which would outlive the process image that counts into it, is unlinked;
 * it comes back if the exec fails.  Every entry point is interposed:
 * glibc's execvp, execl ... call execve internally, not through the PLT.
 * libesca's fds are O_CLOEXEC and a registered ring goes with the old
 * image: nothing leaks into the new one.  A vfork() child runs none of its
 * parent's entries.
 */
static void exec_prepare(void)
{
	if (esca_vfork_child)
		return;
	before_image_ends();
	esca_stats_exec(getpid(), false);
}

/* The exec failed: this image goes on. */
static int exec_failed(int r)
{
	int saved = errno;

	if (!esca_vfork_child)
		esca_stats_exec(getpid(), true);
	errno = saved;
	return r;
}

ESCA_API int execve(const char *path, char *const argv[], char *const envp[])
{
	exec_prepare();
	return exec_failed(REAL(execve)(path, argv, envp));
}

ESCA_API int execv(const char *path, char *const argv[])
{
	exec_prepare();
	return exec_failed(REAL(execve)(path, argv, environ));
}

ESCA_API int execvpe(const char *file, char *const argv[], char *const envp[])
{
	exec_prepare();
	return exec_failed(REAL(execvpe)(file, argv, envp));
}

ESCA_API int execvp(const char *file, char *const argv[])
{
	exec_prepare();
	return exec_failed(REAL(execvpe)(file, argv, environ));
}

ESCA_API int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		      int flags)
{
	exec_prepare();
	return exec_failed(REAL(execveat)(dirfd, path, argv, envp, flags));
}

ESCA_API int fexecve(int fd, char *const argv[], char *const envp[])
{
	exec_prepare();
	return exec_failed(REAL(fexecve)(fd, argv, envp));
}

/* execl, execle, execlp: the list becomes a vector on the stack, as glibc
 * builds it (E2BIG for more arguments than an int counts). */
enum execl_kind { EXECL, EXECLE, EXECLP };

static int execl_list(enum execl_kind kind, const char *path, const char *arg, va_list ap)
{
	char **envp = environ;
	size_t argc = 1, i;
	va_list count;

	va_copy(count, ap);
	while (va_arg(count, char *) && argc < (size_t)INT_MAX)
		argc++;
	va_end(count);
	if (argc >= (size_t)INT_MAX) {
		errno = E2BIG;
		return -1;
	}
	char *argv[argc + 1];

	argv[0] = (char *)arg;
	for (i = 1; i <= argc; i++)
		argv[i] = va_arg(ap, char *);
	if (kind == EXECLE)
		envp = va_arg(ap, char **);
	exec_prepare();
	if (kind == EXECLP)
		return exec_failed(REAL(execvpe)(path, argv, envp));
	return exec_failed(REAL(execve)(path, argv, envp));
}

#define EXECL(name, kind)						\
	ESCA_API int name(const char *path, const char *arg, ...)	\
	{								\
		va_list ap;						\
		int r;							\
									\
		va_start(ap, arg);					\
		r = execl_list(kind, path, arg, ap);			\
		va_end(ap);						\
		return r;						\
	}

EXECL(execl, EXECL)
EXECL(execle, EXECLE)
EXECL(execlp, EXECLP)

/* ---- leaving a signal handler by a jump -------------------------------------------- */

/*
 * A handler that interrupted libesca and jumps out never lets it finish
 * what it was doing: the interrupted record is dropped (it never
 * committed), an interrupted flush is picked up by the next one (entries
 * say what ran), and the thread is libesca's own again.
 */
static void jump_out(void)
{
	esca_thread_jumped_out(esca_self);
}

ESCA_API void longjmp(jmp_buf env, int val)
{
	jump_out();
	REAL(longjmp)(env, val);
	__builtin_unreachable();
}

ESCA_API void _longjmp(jmp_buf env, int val)
{
	jump_out();
	REAL(_longjmp)(env, val);
	__builtin_unreachable();
}

ESCA_API void siglongjmp(sigjmp_buf env, int val)
{
	jump_out();
	REAL(siglongjmp)(env, val);
	__builtin_unreachable();
}

void __longjmp_chk(jmp_buf env, int val);

ESCA_API void __longjmp_chk(jmp_buf env, int val)
{
	jump_out();
	REAL(__longjmp_chk)(env, val);
	__builtin_unreachable();
}

/* ---- syscall(): the call it is ------------------------------------------------------ */

ESCA_API long syscall(long nr, ...)
{
	long a[6], r;
	va_list ap;
	int err;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	switch (nr) {
	case SYS_close:
		return close((int)a[0]);
	case SYS_close_range:
		return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
	case SYS_dup:
		return dup((int)a[0]);
	case SYS_dup2:
		return dup2((int)a[0], (int)a[1]);
	case SYS_dup3:
		return dup3((int)a[0], (int)a[1], (int)a[2]);
	case SYS_gettid:
	case SYS_getpid:
	case SYS_futex:
	case SYS_clock_gettime:
	case SYS_gettimeofday:
	case SYS_sched_yield:
	case SYS_getrandom:
		break;
	default:
		/* anything else may have an effect outside, make an fd, or wait */
		esca_before_effect();
		esca_before_new_fd();
		break;
	}
	r = REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (r >= 0 && (nr == SYS_socket || nr == SYS_open || nr == SYS_openat || nr == SYS_accept ||
		       nr == SYS_accept4 || nr == SYS_pipe || nr == SYS_pipe2)) {
		/* a new fd libesca did not see made: never deferred on */
		err = errno;
		if (nr == SYS_pipe || nr == SYS_pipe2) {
			int fds[2];

			if (esca_copy(fds, (void *)a[0], sizeof(fds)) == 0) {
				esca_fd_forget(fds[0]);
				esca_fd_forget(fds[1]);
			}
		} else {
			esca_fd_forget((int)r);
		}
		errno = err;
	}
	return r;
}
