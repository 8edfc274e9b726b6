// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 2: fork() inside a segment, the child writing.
 *
 *   fork_child_write exit127   the failed-exec idiom: the child's execve()
 *                              fails, it writes an error line to a pipe
 *                              (close-on-exec, the parent reads it up to the
 *                              newline, then EOF) and to the connection,
 *                              and calls _exit(127)
 *   fork_child_write reply     the child writes a request on the connection
 *                              and reads the peer's reply (it must not
 *                              hang), passes it to the parent on a pipe and
 *                              calls _exit(0)
 *
 * The parent writes to the connection before the fork and after the child
 * is reaped, all in one segment (fork and waitpid inside it).  On TCP,
 * then AF_UNIX.  The peer's stream must have everything in that order.
 * Without libesca it prints (exit127):
 *
 *   TCP: error pipe: "exec failed: No such file or directory\n", then EOF
 *   TCP: child status 127
 *   TCP: peer got "parent before the fork\nchild: exec failed\nparent after the child\n"
 *   AF_UNIX: ... the same
 *
 * and (reply):
 *
 *   TCP: the child got "answer\n"; status 0
 *   TCP: peer got "parent before the fork\nask\nparent after the child\n"
 *   AF_UNIX: ... the same
 */
#include "esca_test.h"

struct peer_out {
	size_t len;
	char data[1024];
};

static int peer_fd;

/* answers "ask\n" with "answer\n"; keeps everything it reads */
static void replier(void *arg)
{
	struct peer_out *out = arg;
	ssize_t r;
	int answered = 0;

	while ((r = read(peer_fd, out->data + out->len, sizeof(out->data) - 1 - out->len)) > 0) {
		out->len += (size_t)r;
		out->data[out->len] = 0;
		if (!answered && strstr(out->data, "ask\n")) {
			CHECK(write(peer_fd, "answer\n", 7) == 7);
			answered = 1;
		}
	}
	CHECK(r == 0);
}

/* reads fd up to a newline (a line at most 255 bytes) */
static const char *line(int fd)
{
	static char buf[256];
	size_t n = 0;

	while (n < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return buf;
}

static void run(const char *kind, int tcp, int reply)
{
	struct peer_out *out = t_shared(sizeof(*out));
	char *const argv[] = { "nonexistent", NULL };
	int s, pp[2], st;
	const char *got;
	ssize_t eof;
	pid_t peer, child;

	if (tcp)
		t_tcp_pair(&s, &peer_fd);
	else
		t_unix_pair(&s, &peer_fd);
	peer = t_spawn(replier, out, 1, peer_fd);
	CHECK(close(peer_fd) == 0);
	CHECK(pipe2(pp, O_CLOEXEC) == 0);

	ESCA_BATCH_START();
	CHECK(write(s, "parent before the fork\n", 23) == 23);
	child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		if (reply) {
			const char *a;

			if (write(s, "ask\n", 4) != 4)
				_exit(2);
			a = line(s);
			if (write(pp[1], a, strlen(a)) != (ssize_t)strlen(a))
				_exit(3);
			_exit(0);
		} else {
			char msg[128];
			int n;

			execve("/nonexistent/program", argv, environ);
			n = snprintf(msg, sizeof(msg), "exec failed: %s\n", strerror(errno));
			if (write(pp[1], msg, (size_t)n) != n)
				_exit(2);
			if (write(s, "child: exec failed\n", 19) != 19)
				_exit(3);
			_exit(127);
		}
	}
	CHECK(close(pp[1]) == 0);
	got = line(pp[0]);
	st = wait_child(child);
	CHECK(write(s, "parent after the child\n", 23) == 23);
	ESCA_BATCH_FLUSH();

	eof = read(pp[0], (char[1]){ 0 }, 1);
	CHECK(close(pp[0]) == 0);
	if (reply) {
		t_note("%s: the child got \"%s\"; status %d\n", kind, t_escape(got, strlen(got)),
		       st);
	} else {
		t_note("%s: error pipe: \"%s\", then %s\n", kind, t_escape(got, strlen(got)),
		       eof == 0 ? "EOF" : "no EOF");
		t_note("%s: child status %d\n", kind, st);
	}
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(peer, "peer");
	CHECK(close(s) == 0);
	t_note("%s: peer got \"%s\"\n", kind, t_escape(out->data, out->len));
	t_notes_print();
}

int main(int argc, char **argv)
{
	const char *variant = argc > 1 ? argv[1] : "exit127";
	int reply = !strcmp(variant, "reply");

	CHECK(reply || !strcmp(variant, "exit127"), "variant %s", variant);
	ESCA_INIT();
	t_watchdog(10);
	t_doing = "TCP";
	run("TCP", 1, reply);
	t_doing = "AF_UNIX";
	run("AF_UNIX", 0, reply);
	return T_PASS;
}
