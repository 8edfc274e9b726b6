// SPDX-License-Identifier: MIT
/* exit() with entries pending: they are sent at process exit.
 *   t_exit FD   writes, inside a segment, to a connected stream socket of
 *               its own whose far end a child copies to FD (a pipe or
 *               socket of the caller), and exits without batch_flush().
 * The child is forked before esca_init(): it has no libesca state (no
 * stats file) of its own. */
#include <sys/socket.h>
#include <unistd.h>

#include "esca_test.h"

int main(int argc, char **argv)
{
	int fd = argc > 1 ? atoi(argv[1]) : 1, sv[2];
	char buf[256];
	ssize_t r;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	if (fork() == 0) {
		close(sv[0]);
		while ((r = read(sv[1], buf, sizeof(buf))) > 0)
			CHECK(write(fd, buf, (size_t)r) == r);
		_exit(0);
	}
	close(sv[1]);
	ESCA_INIT();
	ESCA_BATCH_START();
	if (write(sv[0], "pending-1;", 10) != 10 || write(sv[0], "pending-2;", 10) != 10)
		return T_FAIL;
	exit(0);
}
