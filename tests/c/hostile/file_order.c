// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 7: calls that are not deferred, on the same file
 * or socket, see the deferred writes before them (program order), inside
 * one segment each:
 *
 *   write(fd, "AAAA") then pwrite(fd, "BB", 2, 0)     the file is "BBAA"
 *   write "AAAA", ftruncate(fd, 2), write "C"          "AA\0\0C"
 *   write "AAAA" then pread(fd, 4, 0)                  pread gets "AAAA"
 *   write "AAAA" then fstat                            st_size 4
 *   write "data", fsync, rename, open the new name, read   "data"
 *   write(1) interleaved with printf + fflush, stdout redirected to a file
 *                                                      "1\n2\n3\n4\n"
 *   the same on the program's own stdout (the test's pipe)
 *   send "1", sendmmsg "2" "3", send "4", on TCP and on AF_UNIX: "1234"
 *
 * Without libesca it prints:
 *
 *   pwrite after write: "BBAA"
 *   ftruncate after write: "AA\x00\x00C"
 *   pread after write: 4 "AAAA"
 *   fstat after write: 4
 *   fsync, rename, read after write: 4 "data"
 *   stdout to a file, write and printf: "1\n2\n3\n4\n"
 *   w1
 *   p2
 *   w3
 *   p4
 *   send, sendmmsg, send on TCP: "1234"
 *   send, sendmmsg, send on AF_UNIX: "1234"
 */
#include <sys/uio.h>

#include "esca_test.h"

static const char *dir;

static int fresh(const char *name)
{
	int fd = open(t_path(dir, name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	CHECK(fd >= 0);
	return fd;
}

static void note_file(const char *what, const char *name)
{
	t_note_file(what, t_path(dir, name));
}

static void sockets(const char *kind, int tcp)
{
	struct t_sink *sink = t_sink_new(4096);
	struct iovec iov[2] = { { "2", 1 }, { "3", 1 } };
	struct mmsghdr mm[2] = {
		{ .msg_hdr = { .msg_iov = &iov[0], .msg_iovlen = 1 } },
		{ .msg_hdr = { .msg_iov = &iov[1], .msg_iovlen = 1 } },
	};
	int s, peer;
	pid_t pid;

	if (tcp)
		t_tcp_pair(&s, &peer);
	else
		t_unix_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	ESCA_BATCH_START();
	CHECK(send(s, "1", 1, 0) == 1);
	CHECK(sendmmsg(s, mm, 2, 0) == 2);
	CHECK(send(s, "4", 1, 0) == 1);
	ESCA_BATCH_FLUSH();
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	close(s);
	t_note("send, sendmmsg, send on %s: \"%s\"\n", kind, t_escape(sink->data, sink->len));
}

int main(void)
{
	char buf[16] = "";
	struct stat st;
	ssize_t r;
	int fd, fd2, saved;

	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();

	t_doing = "pwrite";
	fd = fresh("pwrite");
	ESCA_BATCH_START();
	CHECK(write(fd, "AAAA", 4) == 4);
	CHECK(pwrite(fd, "BB", 2, 0) == 2);
	ESCA_BATCH_FLUSH();
	close(fd);
	note_file("pwrite after write", "pwrite");

	t_doing = "ftruncate";
	fd = fresh("ftruncate");
	ESCA_BATCH_START();
	CHECK(write(fd, "AAAA", 4) == 4);
	CHECK(ftruncate(fd, 2) == 0);
	CHECK(write(fd, "C", 1) == 1);
	ESCA_BATCH_FLUSH();
	close(fd);
	note_file("ftruncate after write", "ftruncate");

	t_doing = "pread";
	fd = fresh("pread");
	ESCA_BATCH_START();
	CHECK(write(fd, "AAAA", 4) == 4);
	r = pread(fd, buf, 4, 0);
	ESCA_BATCH_FLUSH();
	close(fd);
	t_note("pread after write: %zd \"%s\"\n", r, t_escape(buf, r > 0 ? (size_t)r : 0));

	t_doing = "fstat";
	fd = fresh("fstat");
	ESCA_BATCH_START();
	CHECK(write(fd, "AAAA", 4) == 4);
	CHECK(fstat(fd, &st) == 0);
	ESCA_BATCH_FLUSH();
	close(fd);
	t_note("fstat after write: %lld\n", (long long)st.st_size);

	t_doing = "fsync, rename, read";
	fd = fresh("tmp");
	memset(buf, 0, sizeof(buf));
	ESCA_BATCH_START();
	CHECK(write(fd, "data", 4) == 4);
	CHECK(fsync(fd) == 0);
	CHECK(rename(t_path(dir, "tmp"), t_path(dir, "final")) == 0);
	fd2 = open(t_path(dir, "final"), O_RDONLY | O_CLOEXEC);
	CHECK(fd2 >= 0);
	r = read(fd2, buf, sizeof(buf));
	CHECK(close(fd2) == 0 && close(fd) == 0);
	ESCA_BATCH_FLUSH();
	t_note("fsync, rename, read after write: %zd \"%s\"\n", r,
	       t_escape(buf, r > 0 ? (size_t)r : 0));
	t_notes_print();

	t_doing = "stdout to a file";
	saved = dup(1);
	fd = fresh("stdout");
	CHECK(saved >= 0 && dup2(fd, 1) == 1 && close(fd) == 0);
	ESCA_BATCH_START();
	CHECK(write(1, "1\n", 2) == 2);
	printf("2\n");
	fflush(stdout);
	CHECK(write(1, "3\n", 2) == 2);
	printf("4\n");
	fflush(stdout);
	ESCA_BATCH_FLUSH();
	CHECK(dup2(saved, 1) == 1 && close(saved) == 0);
	note_file("stdout to a file, write and printf", "stdout");
	t_notes_print();

	t_doing = "the program's stdout";
	ESCA_BATCH_START();
	CHECK(write(1, "w1\n", 3) == 3);
	printf("p2\n");
	fflush(stdout);
	CHECK(write(1, "w3\n", 3) == 3);
	printf("p4\n");
	fflush(stdout);
	ESCA_BATCH_FLUSH();

	t_doing = "sendmmsg";
	sockets("TCP", 1);
	sockets("AF_UNIX", 0);
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
