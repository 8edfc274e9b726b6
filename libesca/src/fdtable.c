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
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define ESCA_FD_LIMIT_MAX (1u << 22)

static _Atomic uint8_t *kinds;
static unsigned nkinds;

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
	if (kinds && fd >= 0 && (unsigned)fd < nkinds)
		atomic_store_explicit(&kinds[fd], (uint8_t)kind, memory_order_relaxed);
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
