// SPDX-License-Identifier: MIT
/*
 * exec of a program that is not hooked, from inside a segment: what the
 * segment wrote comes out first (the pending entries run before the exec),
 * and no fd of libesca's reaches the new image (it lists its own fds).
 *
 *   t_exec HOW    HOW: execve execv execvp execvpe execl execle execlp
 *                 execveat fexecve: the new image is
 *                   /bin/sh -c 'echo after the exec; ls /proc/$$/fd'
 *                 fail: an exec that fails (ENOENT): the segment goes on
 *                 vfork: a vfork()ed child execs /bin/true while the parent's
 *                   segment holds a write and a close: they stay the parent's
 */
#include <fcntl.h>
#include <sys/wait.h>

#include "esca_test.h"

extern char **environ;

static char *const script_argv[] = {
	"sh", "-c", "echo after the exec; ls /proc/$$/fd", NULL,
};
#define SCRIPT script_argv[0], script_argv[1], script_argv[2], (char *)NULL

static int run(const char *how)
{
	if (!strcmp(how, "execve"))
		return execve("/bin/sh", script_argv, environ);
	if (!strcmp(how, "execv"))
		return execv("/bin/sh", script_argv);
	if (!strcmp(how, "execvp"))
		return execvp("sh", script_argv);
	if (!strcmp(how, "execvpe"))
		return execvpe("sh", script_argv, environ);
	if (!strcmp(how, "execl"))
		return execl("/bin/sh", SCRIPT);
	if (!strcmp(how, "execle"))
		return execle("/bin/sh", SCRIPT, environ);
	if (!strcmp(how, "execlp"))
		return execlp("sh", SCRIPT);
	if (!strcmp(how, "execveat"))
		return execveat(AT_FDCWD, "/bin/sh", script_argv, environ, 0);
	if (!strcmp(how, "fexecve")) {
		int fd = open("/bin/sh", O_RDONLY | O_CLOEXEC);

		return fd < 0 ? -1 : fexecve(fd, script_argv, environ);
	}
	errno = EINVAL;
	return -1;
}

static int vfork_case(void)
{
	int p[2], status;
	char c;
	pid_t pid;

	if (pipe(p) < 0)
		FAIL("pipe: %m");
	ESCA_BATCH_START();
	t_say("before the vfork\n");
	close(p[1]);		/* the parent's: deferred, it must stay the parent's */
	pid = vfork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status)
		FAIL("vfork child: %m");
	t_say("after the vfork\n");
	ESCA_BATCH_FLUSH();
	t_say("write end closed in the parent: %s\n",
	      fcntl(p[1], F_GETFD) < 0 && errno == EBADF ? "yes" : "NO");
	t_say("reader sees the end: %s\n", read(p[0], &c, 1) == 0 ? "yes" : "NO");
	return T_PASS;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "execve";
	int r;

	ESCA_INIT();
	if (!strcmp(how, "vfork"))
		return vfork_case();
	ESCA_BATCH_START();
	t_say("in the segment, before the exec\n");
	t_say("still before it\n");
	if (!strcmp(how, "fail")) {
		r = execl("/nonexistent/program", "program", (char *)NULL);
		t_say("exec returned %d (%s)\n", r, strerror(errno));
		t_say("the segment goes on\n");
		ESCA_BATCH_FLUSH();
		return T_PASS;
	}
	r = run(how);
	FAIL("%s returned %d: %m", how, r);
}
