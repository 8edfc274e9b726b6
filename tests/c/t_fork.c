// SPDX-License-Identifier: MIT
/* fork() inside a segment: the parent's pending entries are flushed once,
 * before the fork; the child never flushes its copy of the parent's table
 * and batches on its own. */
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esca_test.h"

int main(void)
{
	int sv[2], status;
	char out[256];
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	ESCA_INIT();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		FAIL("socketpair: %m");
	ESCA_BATCH_START();
	if (write(sv[0], "P1.", 3) != 3)
		FAIL("write: %m");
	pid = fork();
	if (pid < 0)
		FAIL("fork: %m");
	if (pid == 0) {
		ESCA_BATCH_FLUSH();	/* the child's own (empty) segment */
		ESCA_BATCH_START();
		if (write(sv[0], "C.", 2) != 2)
			_exit(1);
		ESCA_BATCH_FLUSH();
		exit(0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		FAIL("child: %m");
	if (write(sv[0], "P2.", 3) != 3)
		FAIL("write: %m");
	ESCA_BATCH_FLUSH();
	close(sv[0]);
	while ((r = read(sv[1], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	CHECK(!strcmp(out, "P1.C.P2."), "stream is '%s', want 'P1.C.P2.'", out);
	printf("ok\n");
	return T_PASS;
}
