// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 3: vfork() inside a segment, the pipe + dup2 +
 * exec idiom.  The child (which shares the parent's memory, not its fd
 * table) close()s the parent's connection and log file, closes the pipe's
 * read end, dup2()s the write end onto 1 and execs /bin/echo.  The parent
 * reads the child's output from the pipe and reaps it, still in the
 * segment, writes to the connection and the log again and flushes.
 * Afterwards, in a second segment, its own close() of the connection and
 * of the log returns 0 (the child's closes were the child's), and read()
 * of the pipe works (EOF).  The peer and the log got the parent's writes,
 * in order.  Without libesca it prints:
 *
 *   echo said: "hello from echo\n"; status 0
 *   close of the connection: 0 0
 *   close of the log: 0 0
 *   read of the pipe: 0 (0)
 *   peer got: "before vfork\nafter vfork\n"
 *   log: "before vfork\nafter vfork\n"
 */
#include "esca_test.h"

int main(void)
{
	struct t_sink *sink = t_sink_new(4096);
	char out[64] = "";
	int s, peer, log, pp[2], st, rc1, rc2, err;
	const char *dir;
	ssize_t r;
	pid_t sinkpid, child;

	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();
	t_tcp_pair(&s, &peer);
	sinkpid = t_sink_start(sink, peer);
	log = open(t_path(dir, "log"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(log >= 0 && pipe2(pp, O_CLOEXEC) == 0);

	t_doing = "in the segment of the vfork";
	ESCA_BATCH_START();
	CHECK(write(s, "before vfork\n", 13) == 13);
	CHECK(write(log, "before vfork\n", 13) == 13);
	child = vfork();
	CHECK(child >= 0);
	if (child == 0) {
		close(s);
		close(log);
		close(pp[0]);
		if (dup2(pp[1], 1) != 1)
			_exit(126);
		execl("/bin/echo", "echo", "hello from echo", (char *)NULL);
		_exit(127);
	}
	CHECK(close(pp[1]) == 0);
	t_read_full(pp[0], out, 16);
	st = wait_child(child);
	CHECK(write(s, "after vfork\n", 12) == 12);
	CHECK(write(log, "after vfork\n", 12) == 12);
	ESCA_BATCH_FLUSH();
	t_note("echo said: \"%s\"; status %d\n", t_escape(out, 16), st);

	t_doing = "in the segment after the vfork";
	ESCA_BATCH_START();
	rc1 = close(s);
	err = errno;
	t_note("close of the connection: %d %s\n", rc1, t_errname(rc1 ? err : 0));
	rc2 = close(log);
	err = errno;
	t_note("close of the log: %d %s\n", rc2, t_errname(rc2 ? err : 0));
	r = read(pp[0], out, sizeof(out));
	err = r < 0 ? errno : 0;
	ESCA_BATCH_FLUSH();
	t_note("read of the pipe: %zd (%s)\n", r, t_errname(err));
	CHECK(close(pp[0]) == 0);

	t_doing = "waiting for the sink";
	if (rc1)
		CHECK(close(s) == 0);
	t_reap(sinkpid, "sink");
	t_note("peer got: \"%s\"\n", t_escape(sink->data, sink->len));
	t_note_file("log", t_path(dir, "log"));
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
