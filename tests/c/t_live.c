// SPDX-License-Identifier: MIT
/*
 * A process that stays alive while the test looks at it: a segment, then
 * "ready" on stdout, then it waits for the end of stdin, another segment,
 * exit.  Built linked to libesca too (with an absolute RPATH), to run
 * set-user-ID, where LD_PRELOAD does not apply.
 */
#include <stdio.h>
#include <sys/socket.h>

#include "esca_test.h"


int main(void)
{
	char buf[64];
	int sv[2];

	ESCA_INIT();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		FAIL("socketpair: %m");
	t_segment(sv[0]);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	t_segment(sv[0]);
	printf("done\n");
	return T_PASS;
}
