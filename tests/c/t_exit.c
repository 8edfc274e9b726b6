// SPDX-License-Identifier: MIT
/* exit() with entries pending: they are flushed at process exit.
 *   t_exit FD   writes to FD (a pipe or socket of the caller) and exits
 *               without batch_flush(). */
#include <unistd.h>

#include "esca_test.h"

int main(int argc, char **argv)
{
	int fd = argc > 1 ? atoi(argv[1]) : 1;

	ESCA_INIT();
	ESCA_BATCH_START();
	if (write(fd, "pending-1;", 10) != 10 || write(fd, "pending-2;", 10) != 10)
		return T_FAIL;
	exit(0);
}
