// SPDX-License-Identifier: MIT
/*
 * Process-wide knowledge of file descriptors: one byte per fd, written with
 * relaxed atomics (no locks).  Creators we interpose (accept, socket, open,
 * pipe ...) record the kind; close() forgets it; an fd we have not seen is
 * checked once with fstat(), which also gives EBADF for a bad fd at the
 * moment of the call, as libc would.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ESCA_FD_LIMIT_MAX (1u << 22)

static _Atomic uint8_t *kinds;
static unsigned nkinds;
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

	if (kinds)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
		n = rl.rlim_max > n ? rl.rlim_max : n;
	if (n > ESCA_FD_LIMIT_MAX)
		n = ESCA_FD_LIMIT_MAX;
	/* untouched pages cost nothing: a 1M-fd limit maps 1 MiB of zeroes */
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return;
	nkinds = (unsigned)n;
	kinds = p;
}

void esca_fd_set(int fd, enum esca_fd_kind kind)
{
	if (kinds && fd >= 0 && (unsigned)fd < nkinds) {
		atomic_store_explicit(&kinds[fd], (uint8_t)kind, memory_order_relaxed);
		if (unlikely((unsigned)fd > atomic_load_explicit(&fd_top, memory_order_relaxed)))
			raise_to(&fd_top, (unsigned)fd);
	}
}

void esca_fd_forget_range(unsigned first, unsigned last)
{
	unsigned top = atomic_load_explicit(&fd_top, memory_order_relaxed), fd;

	if (!kinds)
		return;
	for (fd = first; fd <= last && fd <= top && fd < nkinds; fd++)
		if (atomic_load_explicit(&kinds[fd], memory_order_relaxed) != ESCA_FD_OWN)
			atomic_store_explicit(&kinds[fd], ESCA_FD_UNKNOWN, memory_order_relaxed);
}

enum esca_fd_kind esca_fd_peek(int fd)
{
	if (kinds && fd >= 0 && (unsigned)fd < nkinds)
		return atomic_load_explicit(&kinds[fd], memory_order_relaxed);
	return ESCA_FD_UNKNOWN;
}

static enum esca_fd_kind kind_of_mode(mode_t m)
{
	if (S_ISSOCK(m))
		return ESCA_FD_SOCKET;
	if (S_ISFIFO(m))
		return ESCA_FD_PIPE;
	if (S_ISREG(m))
		return ESCA_FD_FILE;
	return ESCA_FD_OTHER;
}

int esca_fd_kind(int fd)
{
	struct stat sb;
	enum esca_fd_kind k;

	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (kinds && (unsigned)fd < nkinds) {
		k = atomic_load_explicit(&kinds[fd], memory_order_relaxed);
		if (k != ESCA_FD_UNKNOWN)
			return k;
	}
	if (fstat(fd, &sb) < 0)
		return -1;
	k = kind_of_mode(sb.st_mode);
	esca_fd_set(fd, k);
	return k;
}

/* ---- libesca's own fds ---------------------------------------------------- */

/* Own fds go above the soft limit while it is at most this (the kernel's
 * fd table grows to the highest fd: 4096 slots are 32 KiB), else here. */
#define ESCA_FD_HIGH	4096
#define ESCA_FD_SPAN	64

/*
 * Where fd goes: a number the program is never given.  RLIMIT_NOFILE bounds
 * the numbers of new fds only, so an fd above the soft limit is invisible to
 * the program's allocations: the soft limit is raised for the one
 * F_DUPFD_CLOEXEC (within the hard limit) and put back.  When the hard
 * limit leaves no room, or the soft one is high, the fd goes to the top of
 * the first ESCA_FD_HIGH numbers; failing that it stays where it is.
 */
static int place(int fd)
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
			nfd = fcntl(fd, F_DUPFD_CLOEXEC, (int)rl.rlim_cur);
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (nfd < 0) {
		top = rl.rlim_cur < ESCA_FD_HIGH ? rl.rlim_cur : ESCA_FD_HIGH;
		top = top > 2 * ESCA_FD_SPAN ? top - ESCA_FD_SPAN : top / 2;
		if (top > (rlim_t)fd)
			nfd = fcntl(fd, F_DUPFD_CLOEXEC, (int)top);
	}
	return nfd;
}

int esca_own_fd(int fd)
{
	int nfd, saved = errno;

	if (fd < 0)
		return fd;
	nfd = place(fd);
	if (nfd >= 0) {
		syscall(SYS_close, fd);
		fd = nfd;
	}
	errno = saved;
	esca_fd_set(fd, ESCA_FD_OWN);
	lower_to(&own_lo, (unsigned)fd);
	raise_to(&own_hi, (unsigned)fd);
	return fd;
}

void esca_own_close(int fd)
{
	esca_fd_set(fd, ESCA_FD_UNKNOWN);
	syscall(SYS_close, fd);
}

/* The next own fd in [fd, last], or -1. */
static long next_own(unsigned fd, unsigned last)
{
	unsigned hi = atomic_load_explicit(&own_hi, memory_order_relaxed);
	unsigned lo = atomic_load_explicit(&own_lo, memory_order_relaxed);

	if (!kinds)
		return -1;
	if (fd < lo)
		fd = lo;
	for (; fd <= last && fd <= hi && fd < nkinds; fd++)
		if (atomic_load_explicit(&kinds[fd], memory_order_relaxed) == ESCA_FD_OWN)
			return fd;
	return -1;
}

int esca_close_range_keep_own(unsigned first, unsigned last, int flags)
{
	unsigned lo = first;
	long own;

	/* the kernel's EINVAL for a bad range or flags, as they are */
	if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return (int)syscall(SYS_close_range, first, last, flags);
	while ((own = next_own(lo, last)) >= 0) {
		if ((unsigned)own > lo &&
		    syscall(SYS_close_range, lo, (unsigned)own - 1, flags) < 0)
			return -1;
		lo = (unsigned)own + 1;
	}
	if (lo <= last && syscall(SYS_close_range, lo, last, flags) < 0)
		return -1;
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		esca_fd_forget_range(first, last);
	return 0;
}
