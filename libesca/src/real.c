// SPDX-License-Identifier: MIT
/*
 * The real libc functions behind the interposed ones: REAL(name) (internal.h)
 * resolves each with dlsym(RTLD_NEXT) once, at its first use -- another
 * library's constructor may call write() before ours has run.  Inside
 * libesca every interposed function is called through REAL(): a plain call
 * would reach libesca's own definition again.
 */
#include "internal.h"

#include <dlfcn.h>

void *esca_real_next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		static const char msg[] = "cannot resolve a libc function; aborting";

		/* not through libc's write: it may be what we are resolving */
		esca_log("%s", msg);
		__builtin_trap();
	}
	return p;
}
