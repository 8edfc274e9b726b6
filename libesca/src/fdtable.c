// SPDX-License-Identifier: MIT
/*
 * Process-wide knowledge of file descriptors: one 32-bit word per fd
 * (internal.h: kind, flags, the tag of a pending entry), written with
 * relaxed atomics, no lock.  Interposed calls that make an fd record what
 * it is; close() forgets it; an fd libesca did not see made is UNKNOWN and
 * never deferred on.  A vfork() child, which shares this memory but not
 * the fd table, changes nothing here.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ESCA_FD_LIMIT_MAX (1u << 22)

_Atomic uint32_t *esca_fd_words;
unsigned esca_fd_nwords;
/* highest fd ever recorded, and the span of libesca's own fds */
static _Atomic unsigned fd_top, own_lo = UINT32_MAX, own_hi;

static void raise_to(_Atomic unsigned *v, unsigned x)
{
	unsigned cur = atomic_load_explicit(v, memory_order_relaxed);

	while (x > cur && !atomic_compare_exchange_weak_explicit(v, &cur, x, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

static void lower_to(_Atomic unsigned *v, unsigned x)
{
	unsigned cur = atomic_load_explicit(v, memory_order_relaxed);

	while (x < cur && !atomic_compare_exchange_weak_explicit(v, &cur, x, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

__attribute__((constructor)) void esca_fd_init(void)
{
	struct rlimit rl;
	rlim_t n = 65536;
	void *p;

	if (esca_fd_words)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
		n = rl.rlim_max > n ? rl.rlim_max : n;
	if (n > ESCA_FD_LIMIT_MAX)
		n = ESCA_FD_LIMIT_MAX;
	/* untouched pages cost nothing: a 1M-fd limit maps 4 MiB of zeroes */
	p = mmap(NULL, n * sizeof(*esca_fd_words), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return;
	esca_fd_nwords = (unsigned)n;
	esca_fd_words = p;
}

static inline _Atomic uint32_t *slot(int fd)
{
	if (esca_fd_words && fd >= 0 && (unsigned)fd < esca_fd_nwords && !esca_vfork_child)
		return &esca_fd_words[fd];
	return NULL;
}

void esca_fdw_set(int fd, uint32_t w)
{
	_Atomic uint32_t *s = slot(fd);

	if (!s)
		return;
	atomic_store_explicit(s, w, memory_order_relaxed);
	if (unlikely((unsigned)fd > atomic_load_explicit(&fd_top, memory_order_relaxed)))
		raise_to(&fd_top, (unsigned)fd);
}

void esca_fdw_or(int fd, uint32_t flags)
{
	_Atomic uint32_t *s = slot(fd);

	if (s)
		atomic_fetch_or_explicit(s, flags, memory_order_relaxed);
}

void esca_fdw_clear(int fd, uint32_t flags)
{
	_Atomic uint32_t *s = slot(fd);

	if (s)
		atomic_fetch_and_explicit(s, ~flags, memory_order_relaxed);
}

void esca_fd_forget(int fd)
{
	_Atomic uint32_t *s = slot(fd);

	if (s && esca_fdw_kind(atomic_load_explicit(s, memory_order_relaxed)) != ESCA_FD_OWN)
		atomic_store_explicit(s, 0, memory_order_relaxed);
}

void esca_fd_closed(int fd)
{
	_Atomic uint32_t *s = slot(fd);
	uint32_t w;

	if (!s)
		return;
	/* only what the close left: another thread may have the number already */
	w = atomic_load_explicit(s, memory_order_relaxed);
	while ((w & ESCA_FDW_CLOSING) &&
	       !atomic_compare_exchange_weak_explicit(s, &w, 0, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

void esca_fd_forget_range(unsigned first, unsigned last)
{
	unsigned top = atomic_load_explicit(&fd_top, memory_order_relaxed), fd;

	if (!esca_fd_words || esca_vfork_child)
		return;
	for (fd = first; fd <= last && fd <= top && fd < esca_fd_nwords; fd++)
		if (esca_fdw_kind(atomic_load_explicit(&esca_fd_words[fd], memory_order_relaxed)) !=
		    ESCA_FD_OWN)
			atomic_store_explicit(&esca_fd_words[fd], 0, memory_order_relaxed);
}

void esca_fd_mark_all_shared(void)
{
	unsigned top = atomic_load_explicit(&fd_top, memory_order_relaxed), fd;

	if (!esca_fd_words || esca_vfork_child)
		return;
	for (fd = 0; fd <= top && fd < esca_fd_nwords; fd++)
		if (atomic_load_explicit(&esca_fd_words[fd], memory_order_relaxed))
			atomic_fetch_or_explicit(&esca_fd_words[fd], ESCA_FDW_SHARED, memory_order_relaxed);
}

/* ---- libesca's own fds -------------------------------------------------------- */

/* Own fds go above the soft limit while it is at most this (the kernel's
 * fd table grows to the highest fd: 4096 slots are 32 KiB), else here. */
#define ESCA_FD_HIGH	4096
#define ESCA_FD_SPAN	64

static int dupfd(int fd, int at)
{
	return (int)REAL(syscall)(SYS_fcntl, fd, F_DUPFD_CLOEXEC, at);
}

/* One placement at a time: two threads raising the soft limit at once
 * would leave it raised (the second one reads the first one's raise as the
 * program's limit and puts that back). */
static pthread_mutex_t place_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork(): no other thread is inside place() while the process is copied. */
void esca_fd_fork_prepare(void)
{
	pthread_mutex_lock(&place_lock);
}

void esca_fd_fork_done(void)
{
	pthread_mutex_unlock(&place_lock);
}

/*
 * Where fd goes: a number the program is never given.  RLIMIT_NOFILE bounds
 * the numbers of new fds only, so an fd above the soft limit is invisible to
 * the program's allocations: the soft limit is raised for the one
 * F_DUPFD_CLOEXEC (within the hard limit) and put back.  When the hard
 * limit leaves no room, or the soft one is high, the fd goes to the top of
 * the first ESCA_FD_HIGH numbers; failing that it stays where it is.
 */
static int place_locked(int fd)
{
	struct rlimit rl, up;
	rlim_t top;
	int nfd = -1;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur <= ESCA_FD_HIGH && rl.rlim_cur < rl.rlim_max) {
		up.rlim_max = rl.rlim_max;
		up.rlim_cur = rl.rlim_cur + ESCA_FD_SPAN < rl.rlim_max ? rl.rlim_cur + ESCA_FD_SPAN :
									 rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
			nfd = dupfd(fd, (int)rl.rlim_cur);
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (nfd < 0) {
		top = rl.rlim_cur < ESCA_FD_HIGH ? rl.rlim_cur : ESCA_FD_HIGH;
		top = top > 2 * ESCA_FD_SPAN ? top - ESCA_FD_SPAN : top / 2;
		if (top > (rlim_t)fd)
			nfd = dupfd(fd, (int)top);
	}
	return nfd;
}

/* place_locked() with no signal handler of this thread inside it (one
 * that sets up a held socket would wait for itself). */
static int place(int fd)
{
	sigset_t all, old;
	int nfd;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_mutex_lock(&place_lock);
	nfd = place_locked(fd);
	pthread_mutex_unlock(&place_lock);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return nfd;
}

int esca_own_fd(int fd)
{
	int nfd, saved = errno;

	if (fd < 0)
		return fd;
	nfd = place(fd);
	if (nfd >= 0) {
		REAL(syscall)(SYS_close, fd);
		fd = nfd;
	}
	errno = saved;
	esca_fdw_set(fd, ESCA_FD_OWN);
	lower_to(&own_lo, (unsigned)fd);
	raise_to(&own_hi, (unsigned)fd);
	return fd;
}

void esca_own_close(int fd)
{
	_Atomic uint32_t *s = slot(fd);

	if (s)
		atomic_store_explicit(s, 0, memory_order_relaxed);
	esca_raw(SYS_close, fd, 0, 0, 0, 0, 0);
}

/* The next own fd in [fd, last], or -1. */
static long next_own(unsigned fd, unsigned last)
{
	unsigned hi = atomic_load_explicit(&own_hi, memory_order_relaxed);
	unsigned lo = atomic_load_explicit(&own_lo, memory_order_relaxed);

	if (!esca_fd_words)
		return -1;
	if (fd < lo)
		fd = lo;
	for (; fd <= last && fd <= hi && fd < esca_fd_nwords; fd++)
		if (esca_fdw_kind(atomic_load_explicit(&esca_fd_words[fd], memory_order_relaxed)) ==
		    ESCA_FD_OWN)
			return fd;
	return -1;
}

int esca_close_range_keep_own(unsigned first, unsigned last, int flags)
{
	unsigned lo = first;
	long own;

	/* the kernel's EINVAL for a bad range or flags, as they are */
	if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return (int)REAL(syscall)(SYS_close_range, first, last, flags);
	while ((own = next_own(lo, last)) >= 0) {
		if ((unsigned)own > lo &&
		    REAL(syscall)(SYS_close_range, lo, (unsigned)own - 1, flags) < 0)
			return -1;
		lo = (unsigned)own + 1;
	}
	if (lo <= last && REAL(syscall)(SYS_close_range, lo, last, flags) < 0)
		return -1;
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		esca_fd_forget_range(first, last);
	return 0;
}
