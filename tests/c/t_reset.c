// SPDX-License-Identifier: MIT
/*
 * A peer that reads nothing (docs/libesca.md, rule 1): what libesca holds
 * for it goes out, or after ESCA_WRITE_TIMEOUT_MS with no progress the
 * connection is reset -- never before, and what arrived is an intact prefix.
 *
 *   t_reset TIMEOUT_MS
 *
 * A TCP pair over 127.0.0.1 whose buffers are fixed small (SO_SNDBUF and
 * SO_RCVBUF 4096: no autotuning lets the held bytes drain), the sender
 * non-blocking.  In one segment 64 writes of 1000 bytes (10-byte records);
 * then the peer, reading nothing, watches for the reset (POLLERR) for
 * 4 x TIMEOUT_MS + 2 s; then it reads what it has.  Prints, for the test to
 * compare with libesca's counters:
 *
 *   accepted: <bytes the writes returned>
 *   writable: yes|no  error: <SO_ERROR of the socket, 0 or ECONNRESET>
 *   peer: <bytes> bytes, records in order, then <ECONNRESET|EAGAIN>
 *   reset after: <ms from the flush to the peer's POLLERR, or -1>
 */
#include <poll.h>

#include "esca_test.h"

int main(int argc, char **argv)
{
	static unsigned char got[1 << 17];
	int timeout_ms = argc > 1 ? atoi(argv[1]) : 500;
	size_t accepted = 0, have = 0;
	struct pollfd pf;
	double flushed, reset_ms = -1;
	const char *why;
	long count, last;
	unsigned seq = 0;
	int s, peer, err = 0, writable;
	socklen_t elen = sizeof(err);
	ssize_t r;

	CHECK(timeout_ms > 0);
	ESCA_INIT();
	t_watchdog(30);
	t_tcp_pair_buf(&s, &peer, 4096, 4096);
	t_nonblock(s);
	t_nonblock(peer);

	ESCA_BATCH_START();
	for (int i = 0; i < 64; i++) {
		char buf[1000];

		for (int k = 0; k < 100; k++)
			t_record(buf + k * H_REC, 'R', seq++);
		r = write(s, buf, sizeof(buf));
		if (r < 0) {
			CHECK(errno == EAGAIN, "write");
			break;
		}
		accepted += (size_t)r;
		if (r < (ssize_t)sizeof(buf))
			break;
	}
	ESCA_BATCH_FLUSH();
	flushed = t_now();

	/* the peer watches for the reset without reading */
	pf = (struct pollfd){ .fd = peer, .events = POLLRDHUP };
	while (t_now() - flushed < (4.0 * timeout_ms + 2000) / 1000) {
		if (poll(&pf, 1, 20) > 0 && (pf.revents & (POLLERR | POLLHUP))) {
			reset_ms = (t_now() - flushed) * 1000;
			break;
		}
	}
	pf = (struct pollfd){ .fd = s, .events = POLLOUT };
	writable = poll(&pf, 1, 0) == 1 && (pf.revents & POLLOUT);
	CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen) == 0);

	while ((r = read(peer, got + have, sizeof(got) - have)) > 0)
		have += (size_t)r;
	/* an intact prefix: whole records from 0 on, and may end inside one */
	why = t_check_records(got, have - have % H_REC, 1, &count, &last);
	printf("accepted: %zu\n", accepted);
	printf("writable: %s  error: %s\n", writable ? "yes" : "no",
	       err == 0 ? "0" : err == ECONNRESET ? "ECONNRESET" : strerror(err));
	printf("peer: %zu bytes, %s, then %s\n", have,
	       why ? why : "records in order",
	       r == 0 ? "EOF" : errno == ECONNRESET ? "ECONNRESET" : errno == EAGAIN ? "EAGAIN" :
	       strerror(errno));
	printf("reset after: %.0f\n", reset_ms);
	return T_PASS;
}
