// SPDX-License-Identifier: MIT
/*
 * Hostile suite, behaviour 5: closes libesca cannot see (libc closes the fd
 * internally, not through close()), inside a segment after deferred writes
 * to that number; then open() of a new file gets the same number and is
 * written to.  The file must get only its own bytes, the socket's peer (or
 * the command, or the first file) every byte written to it before.
 *
 *   fdopen       write(s), fdopen(s), fputs, fclose; on TCP and AF_UNIX
 *   pclose       popen("cat > out"), write(fileno), pclose
 *   closedir     opendir, dup2(s, dirfd) (the socket under the DIR's
 *                number), write(dirfd), closedir
 *   fopen        fopen(a), write(fileno), fputs, fclose
 *
 * Without libesca it prints:
 *
 *   fdopen TCP: open() took the same number: yes
 *   fdopen TCP: peer got "hello world\n"
 *   fdopen TCP: the new file has: "file\n"
 *   fdopen AF_UNIX: ... the same three lines
 *   pclose: status 0
 *   pclose: open() took the same number: yes
 *   pclose: cat got: "to cat\n"
 *   pclose: the new file has: "file\n"
 *   closedir: open() took the same number: yes
 *   closedir: peer got "through the DIR's number\n"
 *   closedir: the new file has: "file\n"
 *   fopen: open() took the same number: yes
 *   fopen: the first file has: "direct\nstdio\n"
 *   fopen: the new file has: "file\n"
 */
#include <dirent.h>

#include "esca_test.h"

static const char *dir;

/* opens name, which should take number `want`; writes "file\n" to it */
static int reuse(const char *what, const char *name, int want)
{
	int n = open(t_path(dir, name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	CHECK(n >= 0);
	t_note("%s: open() took the same number: %s\n", what, n == want ? "yes" : "no");
	CHECK(write(n, "file\n", 5) == 5);
	return n;
}

static void note_file(const char *what, const char *name)
{
	t_note_file(what, t_path(dir, name));
}

static void with_fdopen(const char *kind, int tcp)
{
	struct t_sink *sink = t_sink_new(4096);
	char what[64], name[64];
	int s, peer, n, num;
	FILE *f;
	pid_t pid;

	snprintf(what, sizeof(what), "fdopen %s", kind);
	snprintf(name, sizeof(name), "fdopen-%s", kind);
	if (tcp)
		t_tcp_pair(&s, &peer);
	else
		t_unix_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	t_fill_below(s);
	num = s;
	ESCA_BATCH_START();
	CHECK(write(s, "hello ", 6) == 6);
	f = fdopen(s, "w");
	CHECK(f != NULL);
	CHECK(fputs("world\n", f) >= 0);
	CHECK(fclose(f) == 0);
	n = reuse(what, name, num);
	ESCA_BATCH_FLUSH();
	CHECK(close(n) == 0);
	t_unfill();
	t_reap(pid, "sink");
	t_note("%s: peer got \"%s\"\n", what, t_escape(sink->data, sink->len));
	snprintf(what, sizeof(what), "fdopen %s: the new file has", kind);
	note_file(what, name);
}

static void with_pclose(void)
{
	char cmd[700];
	int pfd, n, st;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "exec cat > '%s'", t_path(dir, "cat.out"));
	p = popen(cmd, "w");
	CHECK(p != NULL);
	pfd = fileno(p);
	t_fill_below(pfd);
	ESCA_BATCH_START();
	CHECK(write(pfd, "to cat\n", 7) == 7);
	st = pclose(p);
	t_note("pclose: status %d\n", st);
	n = reuse("pclose", "pclose", pfd);
	ESCA_BATCH_FLUSH();
	CHECK(close(n) == 0);
	t_unfill();
	note_file("pclose: cat got", "cat.out");
	note_file("pclose: the new file has", "pclose");
}

static void with_closedir(void)
{
	struct t_sink *sink = t_sink_new(4096);
	int s, peer, dfd, n;
	DIR *dp;
	pid_t pid;

	t_tcp_pair(&s, &peer);
	pid = t_sink_start(sink, peer);
	dp = opendir(dir);
	CHECK(dp != NULL);
	dfd = dirfd(dp);
	t_fill_below(dfd);
	ESCA_BATCH_START();
	CHECK(dup2(s, dfd) == dfd);
	CHECK(write(dfd, "through the DIR's number\n", 25) == 25);
	CHECK(closedir(dp) == 0);
	n = reuse("closedir", "closedir", dfd);
	ESCA_BATCH_FLUSH();
	CHECK(close(n) == 0);
	t_unfill();
	CHECK(shutdown(s, SHUT_WR) == 0);
	t_reap(pid, "sink");
	close(s);
	t_note("closedir: peer got \"%s\"\n", t_escape(sink->data, sink->len));
	note_file("closedir: the new file has", "closedir");
}

static void with_fopen(void)
{
	FILE *f = fopen(t_path(dir, "first"), "we");
	int num, n;

	CHECK(f != NULL);
	num = fileno(f);
	t_fill_below(num);
	ESCA_BATCH_START();
	CHECK(write(num, "direct\n", 7) == 7);
	CHECK(fputs("stdio\n", f) >= 0);
	CHECK(fclose(f) == 0);
	n = reuse("fopen", "second", num);
	ESCA_BATCH_FLUSH();
	CHECK(close(n) == 0);
	t_unfill();
	note_file("fopen: the first file has", "first");
	note_file("fopen: the new file has", "second");
}

int main(void)
{
	ESCA_INIT();
	t_watchdog(10);
	dir = t_tmpdir();
	t_doing = "fdopen TCP";
	with_fdopen("TCP", 1);
	t_doing = "fdopen AF_UNIX";
	with_fdopen("AF_UNIX", 0);
	t_notes_print();
	t_doing = "pclose";
	with_pclose();
	t_notes_print();
	t_doing = "closedir";
	with_closedir();
	t_notes_print();
	t_doing = "fopen";
	with_fopen();
	t_notes_print();
	t_rmdir(dir);
	return T_PASS;
}
