// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 15: "sendfile of a file truncated meanwhile
 * returns the requested count; the peer gets fewer bytes and
 * Content-Length framing desyncs."
 *
 * Framed messages on a TCP connection: "LEN nnnnnn\n" and that many bytes.
 * In one segment: the header, sendfile() of the whole file (3000 bytes,
 * then in a second round 12000), then a second message "next\n"; then the
 * program shuts the connection down.  The peer (a forked process) reads
 * the frames and checks every byte.
 *
 *   sendfile_truncated self    the program ftruncate()s the file to 0 right
 *                              after the sendfile, in the same segment: the
 *                              peer must get exactly what a plain run
 *                              sends (the whole file: the sendfile ran
 *                              before the truncation)
 *   sendfile_truncated other   another process truncates the file while
 *                              the segment is still open and the program
 *                              does not enter the kernel (a busy loop of
 *                              200 ms, the other process signalled through
 *                              shared memory): the peer must get either
 *                              the whole file and the next message, or a
 *                              reset (ECONNRESET); a short body followed
 *                              by EOF or a desync is not acceptable
 *
 * Without libesca it prints (self):
 *
 *   3000 bytes: sendfile returned 3000; peer: the file, then "next\n", then EOF
 *   12000 bytes: sendfile returned 12000; peer: the file, then "next\n", then EOF
 *
 * and (other):
 *
 *   3000 bytes: truncated while the segment was open: yes
 *   3000 bytes: intact or reset: yes
 *   12000 bytes: ... the same
 */
#include <sys/sendfile.h>

#include "esca_test.h"

struct shared {
	int sent, truncated;
	char outcome[256];
	int intact, reset;
};

static struct shared *sh;
static int peer_fd;
static const char *path;

/* Reads exactly n bytes: 0, or -1 (errno set, or 0 at EOF) with *got the
 * bytes read. */
static int get(void *buf, size_t n, size_t *got)
{
	*got = 0;
	while (*got < n) {
		ssize_t r = read(peer_fd, (char *)buf + *got, n - *got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			return -1;
		}
		*got += (size_t)r;
	}
	return 0;
}

static void peer(void *arg)
{
	size_t size = (size_t)(intptr_t)arg, got;
	static unsigned char body[20000];
	char hdr[12], want[12];
	const char *what = "the header";
	char c;

	snprintf(want, sizeof(want), "LEN %06zu\n", size);
	if (get(hdr, 11, &got) || memcmp(hdr, want, 11))
		goto broken;
	what = "the file";
	if (get(body, size, &got))
		goto broken;
	for (size_t i = 0; i < size; i++)
		if (body[i] != t_pattern(15, i)) {
			snprintf(sh->outcome, sizeof(sh->outcome),
				 "byte %zu of the file differs (desync)", i);
			return;
		}
	what = "the next message";
	if (get(hdr, 16, &got) || memcmp(hdr, "LEN 000005\nnext\n", 16))
		goto broken;
	what = "EOF";
	if (read(peer_fd, &c, 1) != 0)
		goto broken;
	sh->intact = 1;
	snprintf(sh->outcome, sizeof(sh->outcome), "the file, then \"next\\n\", then EOF");
	return;
broken:
	if (errno == ECONNRESET)
		sh->reset = 1;
	snprintf(sh->outcome, sizeof(sh->outcome), "%s: %zu bytes, then %s", what, got,
		 errno ? t_errname(errno) : "EOF or other bytes");
}

static void truncater(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&sh->sent, __ATOMIC_ACQUIRE))
		syscall(SYS_nanosleep, &(struct timespec){ 0, 1000000 }, NULL);
	CHECK(truncate(path, 0) == 0);
	__atomic_store_n(&sh->truncated, 1, __ATOMIC_RELEASE);
}

static void round_(size_t size, int other)
{
	unsigned char data[12000];
	int s, file, truncated = 0;
	pid_t pid, tpid = 0;
	char hdr[12];
	off_t off = 0;
	ssize_t r;

	memset(sh, 0, sizeof(*sh));
	for (size_t i = 0; i < size; i++)
		data[i] = t_pattern(15, i);
	file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(file >= 0 && write(file, data, size) == (ssize_t)size);
	t_tcp_pair(&s, &peer_fd);
	pid = t_spawn(peer, (void *)(intptr_t)size, 1, peer_fd);
	CHECK(close(peer_fd) == 0);
	if (other)
		tpid = t_spawn(truncater, NULL, 0);

	snprintf(hdr, sizeof(hdr), "LEN %06zu\n", size);
	ESCA_BATCH_START();
	CHECK(write(s, hdr, 11) == 11);
	r = sendfile(s, file, &off, size);
	if (other) {
		double until = t_now() + 0.2, give_up = t_now() + (t_qemu() ? 60 : 10);

		__atomic_store_n(&sh->sent, 1, __ATOMIC_RELEASE);
		/* no system call here: clock_gettime is the vDSO's */
		while (t_now() < until ||
		       !(truncated = __atomic_load_n(&sh->truncated, __ATOMIC_ACQUIRE)))
			if (t_now() > give_up)
				break;
	} else {
		CHECK(ftruncate(file, 0) == 0);
	}
	CHECK(write(s, "LEN 000005\nnext\n", 16) == 16);
	ESCA_BATCH_FLUSH();
	shutdown(s, SHUT_WR);
	t_reap(pid, "peer");
	if (tpid)
		t_reap(tpid, "truncater");
	CHECK(close(s) == 0 && close(file) == 0);
	if (other) {
		t_note("%zu bytes: truncated while the segment was open: %s\n", size,
		       truncated ? "yes" : "no");
		t_note("%zu bytes: intact or reset: %s\n", size,
		       sh->intact || sh->reset ? "yes" : "no");
		if (!sh->intact && !sh->reset)
			fprintf(stderr, "%zu bytes: peer: %s\n", size, sh->outcome);
	} else {
		t_note("%zu bytes: sendfile returned %zd; peer: %s\n", size, r, sh->outcome);
	}
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "self";
	int other = !strcmp(variant, "other");
	const char *dir;

	CHECK(other || !strcmp(variant, "self"), "variant %s", variant);
	ESCA_INIT();
	t_watchdog(20);
	sh = t_shared(sizeof(*sh));
	dir = t_tmpdir();
	path = t_path(dir, "file");
	t_doing = "3000 bytes";
	round_(3000, other);
	t_notes_print();
	t_doing = "12000 bytes";
	round_(12000, other);
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
