// SPDX-License-Identifier: MIT
/*
 * exec: the new image replaces this one without running its destructors,
 * so the calling thread's pending entries run first (without libesca they
 * would have run already), and the live stats file, which would outlive
 * the process image that counts into it, is unlinked; both come back if
 * the exec fails.  Every entry point is interposed: glibc's execvp, execl
 * ... call execve internally, not through the PLT.  libesca's fds are
 * O_CLOEXEC and a registered ring goes with the old image: nothing leaks
 * into the new one.
 *
 * A vfork() child shares the parent's memory, this thread's state
 * included: it must not flush the parent's table (the calls would run in
 * the child's fd table, and the parent would lose them).  It is recognised
 * by its pid.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <unistd.h>

extern char **environ;

static void exec_prepare(void)
{
	struct esca_thread *t = esca_segment();
	pid_t pid = getpid();

	if (t && t->n && t->pid == pid)
		esca_flush_thread(t);
	esca_stats_exec(pid, false);
}

/* The exec failed: this image goes on. */
static int exec_failed(int r)
{
	int saved = errno;

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
