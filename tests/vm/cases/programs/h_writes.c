/*
 * h_writes FILE SEGMENTS WRITES: in each of SEGMENTS batching segments,
 * WRITES write(2) calls of one line each to FILE (opened as fd 77), all
 * deferred by libesca.  Line k is "%06d\n" % k: the observers count the
 * calls, the file shows each ran once and in order.
 */
#include "esca_test.h"

int main(int argc, char **argv)
{
	int segments, writes, fd, k = 0;
	char line[16];

	if (argc != 4)
		FAIL("usage: h_writes FILE SEGMENTS WRITES");
	segments = atoi(argv[2]);
	writes = atoi(argv[3]);
	fd = open_at(argv[1], 77);
	hooked_init();
	for (int s = 0; s < segments; s++) {
		batch_start();
		for (int w = 0; w < writes; w++, k++) {
			snprintf(line, sizeof(line), "%06d\n", k);
			CHECK(write(fd, line, 7) == 7);
		}
		CHECK(batch_flush() == writes);
	}
	return 0;
}
