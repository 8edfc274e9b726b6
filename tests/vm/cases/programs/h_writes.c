/*
 * h_writes FILE SEGMENTS WRITES: in each of SEGMENTS batching segments,
 * WRITES calls of one line each, all deferred by libesca, on a connected
 * stream socket at fd 77 (a forked child copies its far end, fd 78, to
 * FILE): write(2) and send(MSG_NOSIGNAL) in turn, which libesca never
 * merges into one entry, so each call is one entry the module runs, as
 * sendto(77, ...).  Line k is "%06d\n" % k: the observers count the calls,
 * the file shows each ran once and in order.
 */
#include "esca_test.h"

int main(int argc, char **argv)
{
	int segments, writes, file, sv[2], k = 0;
	char line[16];
	pid_t copier;

	if (argc != 4)
		FAIL("usage: h_writes FILE SEGMENTS WRITES");
	segments = atoi(argv[2]);
	writes = atoi(argv[3]);
	file = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(file >= 0);
	t_pair_at(77, sv);
	copier = t_copier(sv[1], file, sv[0]);
	close(sv[1]);
	close(file);
	hooked_init();
	for (int s = 0; s < segments; s++) {
		batch_start();
		for (int w = 0; w < writes; w++, k++) {
			snprintf(line, sizeof(line), "%06d\n", k);
			if (k % 2)
				CHECK(send(sv[0], line, 7, MSG_NOSIGNAL) == 7);
			else
				CHECK(write(sv[0], line, 7) == 7);
		}
		CHECK(batch_flush() == writes);
	}
	close(sv[0]);
	CHECK(wait_child(copier) == 0);
	return 0;
}
