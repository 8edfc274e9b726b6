// SPDX-License-Identifier: MIT
/* Adaptive batching follows segments that grow (ESCA_ADAPT, default on).
 *   t_adapt TINY GROWN K [alt]
 *                          TINY segments of one write, then GROWN segments
 *                          of K writes to one socket (writes that merge),
 *                          with alt each after an empty segment (lighttpd's
 *                          loop: its job queue, then its events); the
 *                          peer's bytes are checked as they come.
 * The caller compares segments_passthrough (ESCA_STATS) with GROWN = 0 and
 * with GROWN > 0: the grown segments must be batched at once, not after the
 * one-in-64 sample of a passing-through thread. */
#include "esca_test.h"

int main(int argc, char **argv)
{
	long tiny, grown, k, i, j, total = 0, got = 0;
	char buf[4096];
	int sv[2];
	ssize_t r;
	int alt;

	if (argc != 4 && argc != 5)
		return T_FAIL;
	alt = argc == 5 && !strcmp(argv[4], "alt");
	tiny = atol(argv[1]);
	grown = atol(argv[2]);
	k = atol(argv[3]);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	ESCA_INIT();
	for (i = 0; i < tiny + grown; i++) {
		long n = i < tiny ? 1 : k;

		if (alt && i >= tiny) {
			ESCA_BATCH_START();
			ESCA_BATCH_FLUSH();
		}
		ESCA_BATCH_START();
		for (j = 0; j < n; j++)
			CHECK(write(sv[0], "x", 1) == 1);
		ESCA_BATCH_FLUSH();
		total += n;
		/* drain as we go: the peer never fills */
		while (got < total) {
			r = read(sv[1], buf, sizeof(buf));
			CHECK(r > 0);
			for (j = 0; j < r; j++)
				CHECK(buf[j] == 'x');
			got += r;
		}
	}
	CHECK(got == total);
	return T_PASS;
}
