// SPDX-License-Identifier: MIT
/*
 * The real libc functions behind the interposed ones, resolved once with
 * dlsym(RTLD_NEXT) into process-wide pointers.  Every entry point checks
 * lazily (REAL()), because another library's constructor may call write()
 * before ours has run.
 */
#include "internal.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct esca_real esca_real;

static void *lookup(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		static const char msg[] = "libesca: cannot resolve a libc function; aborting\n";

		/* raw write: the interposed one may be what we are resolving */
		(void)!syscall(SYS_write, STDERR_FILENO, msg, sizeof(msg) - 1);
		abort();
	}
	return p;
}

void *esca_real_next(const char *name)
{
	return lookup(name);
}

void esca_resolve_real(void)
{
	static _Atomic int resolving;

	/* dlsym() may itself call an interposed function on some libcs: the
	 * guard makes such a nested call see the pointers being filled in. */
	if (atomic_exchange(&resolving, 1))
		return;
#define R(fn) esca_real.fn = lookup(#fn)
	R(close);
	R(shutdown);
	R(write);
	R(writev);
	R(send);
	R(sendto);
	R(sendmsg);
	R(sendfile);
	R(setsockopt);
	R(accept);
	R(accept4);
	R(socket);
	R(socketpair);
	R(pipe);
	R(pipe2);
	R(open);
	R(openat);
	R(dup2);
	R(dup3);
	R(lseek);
	R(read);
	R(closefrom);
	R(execve);
	R(execvpe);
	R(execveat);
	R(fexecve);
#undef R
	atomic_store(&resolving, 0);
}
