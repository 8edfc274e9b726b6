// SPDX-License-Identifier: MIT
/*
 * Flush with the wait: a batch that batch_flush() closed enters the kernel
 * with the thread's next epoll wait, in one entry (docs/libesca.md, "Flush
 * with the wait").
 *
 * batch_flush() leaves the batch pending (t->carrying) only on a thread
 * whose backend can run a batch and a wait together and that has shown,
 * ESCA_CARRY_STREAK times in a row, that its next interposed call after
 * batch_flush() is an epoll wait, soon.  Then:
 *  - an epoll wait made within ESCA_CARRY_CYCLES takes the batch with it;
 *  - a later one runs the batch first, as today, then waits;
 *  - any other interposed call runs the batch before it (esca_touch(),
 *    esca_segment()), and the thread must show the pattern again.
 * The calls interposed only for that last rule are below: the ones a
 * thread blocks in while waiting for something else than its epoll set.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * An epoll wait later than this after batch_flush() (TSC cycles: 2^26 is
 * 20-30 ms at 2-3 GHz) says the thread did something else in between: the
 * batch runs on its own and the pattern is to be shown again.
 */
#define ESCA_CARRY_CYCLES	(1ULL << 26)

/* Kernel sigset size, as glibc passes it. */
#define ESCA_SIGSET_BYTES	8

/*
 * The first interposed call after batch_flush() is the epoll wait w:
 * true when it ran with the batch (its result in *res).
 */
static bool wait_carried(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	bool soon;
	int saved;

	/* a signal handler that interrupted libesca itself: a plain wait */
	if (t->flushing || t->busy)
		return false;
	soon = esca_stamp() - t->flush_stamp < ESCA_CARRY_CYCLES;
	t->wait_streak = soon ? t->wait_streak + (t->wait_streak < UINT32_MAX) : 0;
	if (!t->carrying) {
		t->await_wait = false;
		return false;
	}
	/*
	 * The wait is a cancellation point: a cancellation already pending
	 * acts here, before anything runs, with the batch still carried, so
	 * that cleanup handlers' calls (or the thread's exit) run it first.
	 */
	pthread_testcancel();
	t->await_wait = false;
	saved = errno;
	if (!soon) {
		esca_flush_thread(t);
		errno = saved;
		return false;
	}
	if (!esca_flush_wait(t, w, res)) {
		errno = saved;
		return false;
	}
	errno = saved;
	/* a cancellation that came during the wait ended it (SIGCANCEL) */
	if (*res == -EINTR)
		pthread_testcancel();
	return true;
}

static int wait_result(long res)
{
	if (res < 0) {
		errno = (int)-res;
		return -1;
	}
	return (int)res;
}

static void wait_entry(struct esca_entry *w, unsigned nr, int epfd, const void *events,
		       int maxevents, uint64_t timeout, const void *sigmask)
{
	memset(w, 0, sizeof(*w));
	w->nr = nr;
	w->args[0] = (uint64_t)epfd;
	w->args[1] = (uint64_t)(uintptr_t)events;
	w->args[2] = (uint64_t)maxevents;
	w->args[3] = timeout;
	w->args[4] = (uint64_t)(uintptr_t)sigmask;
	w->args[5] = ESCA_SIGSET_BYTES;
}

/* The next definition of name, resolved once (benign race: same value). */
#define NEXT(name)								\
	({									\
		static __typeof__(&name) next_;					\
		__typeof__(&name) f_ = __atomic_load_n(&next_, __ATOMIC_RELAXED); \
		if (unlikely(!f_)) {						\
			f_ = (__typeof__(&name))esca_real_next(#name);		\
			__atomic_store_n(&next_, f_, __ATOMIC_RELAXED);		\
		}								\
		f_;								\
	})

static inline bool awaited(struct esca_thread *t)
{
	return t && unlikely(t->await_wait);
}

ESCA_API int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	struct esca_thread *t = esca_self;
	struct esca_entry w;
	long res;

	if (awaited(t)) {
		wait_entry(&w, SYS_epoll_wait, epfd, events, maxevents, (uint64_t)(int64_t)timeout,
			   NULL);
		if (wait_carried(t, &w, &res))
			return wait_result(res);
	}
	return NEXT(epoll_wait)(epfd, events, maxevents, timeout);
}

ESCA_API int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
			 const sigset_t *sigmask)
{
	struct esca_thread *t = esca_self;
	struct esca_entry w;
	long res;

	if (awaited(t)) {
		wait_entry(&w, SYS_epoll_pwait, epfd, events, maxevents,
			   (uint64_t)(int64_t)timeout, sigmask);
		if (wait_carried(t, &w, &res))
			return wait_result(res);
	}
	return NEXT(epoll_pwait)(epfd, events, maxevents, timeout, sigmask);
}

ESCA_API int epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
			  const struct timespec *timeout, const sigset_t *sigmask)
{
	struct esca_thread *t = esca_self;
	struct esca_entry w;
	long res;

	if (awaited(t)) {
		wait_entry(&w, SYS_epoll_pwait2, epfd, events, maxevents,
			   (uint64_t)(uintptr_t)timeout, sigmask);
		if (wait_carried(t, &w, &res))
			return wait_result(res);
	}
	return NEXT(epoll_pwait2)(epfd, events, maxevents, timeout, sigmask);
}

/*
 * Calls where a thread blocks on something other than its epoll set (or
 * ends): a batch carried for the next epoll wait runs before them.
 */
#define BREAKS(ret, name, params, args)					\
	ESCA_API ret name params						\
	{									\
		esca_touch();							\
		return NEXT(name) args;				\
	}

BREAKS(int, poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
BREAKS(int, ppoll, (struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask), (fds, n, ts, mask))
BREAKS(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv),
       (n, r, w, e, tv))
BREAKS(int, pselect, (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		      const sigset_t *mask), (n, r, w, e, ts, mask))
BREAKS(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))
BREAKS(int, clock_nanosleep, (clockid_t c, int flags, const struct timespec *req,
			      struct timespec *rem), (c, flags, req, rem))
BREAKS(unsigned int, sleep, (unsigned int s), (s))
BREAKS(int, usleep, (useconds_t us), (us))
BREAKS(ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags))
BREAKS(ssize_t, recvfrom, (int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			   socklen_t *alen), (fd, buf, len, flags, addr, alen))
BREAKS(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), (fd, msg, flags))
BREAKS(ssize_t, readv, (int fd, const struct iovec *iov, int n), (fd, iov, n))
BREAKS(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), (fd, addr, len))
BREAKS(int, pause, (void), ())
BREAKS(int, sigsuspend, (const sigset_t *mask), (mask))
BREAKS(int, sigwaitinfo, (const sigset_t *set, siginfo_t *info), (set, info))
BREAKS(int, sigtimedwait, (const sigset_t *set, siginfo_t *info, const struct timespec *ts),
       (set, info, ts))
BREAKS(int, sigwait, (const sigset_t *set, int *sig), (set, sig))
BREAKS(pid_t, wait, (int *status), (status))
BREAKS(pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))
BREAKS(int, waitid, (idtype_t type, id_t id, siginfo_t *info, int options),
       (type, id, info, options))
/* a thread waiting for another one, which may wait for the batch */
BREAKS(int, pthread_join, (pthread_t th, void **ret), (th, ret))
BREAKS(int, pthread_timedjoin_np, (pthread_t th, void **ret, const struct timespec *ts),
       (th, ret, ts))
BREAKS(int, pthread_barrier_wait, (pthread_barrier_t *b), (b))
BREAKS(int, sem_wait, (sem_t *sem), (sem))
BREAKS(int, sem_timedwait, (sem_t *sem, const struct timespec *ts), (sem, ts))

/*
 * _exit() skips the destructors that would run a carried batch.  It is what
 * glibc's is, exit_group(2), called directly: a vfork() child that calls it
 * after a failed exec must not run dlsym() in its parent's memory.
 */
ESCA_API void _exit(int status)
{
	esca_touch();
	for (;;)
		syscall(SYS_exit_group, status);
}

ESCA_API void _Exit(int status)
{
	esca_touch();
	for (;;)
		syscall(SYS_exit_group, status);
}
