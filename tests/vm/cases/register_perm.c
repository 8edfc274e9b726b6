/*
 * Binding a table needs the right to open the device now, not only a
 * descriptor someone else opened: a process that dropped to a uid outside
 * the device's access keeps an fd it opened as root, and REGISTER on it is
 * EACCES (issue 21: access was checked at open only).  Root's REGISTER on
 * the same kind of fd works.
 */
#include <grp.h>
#include "esca_test.h"

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), fd2 = esca_open(), st;
	pid_t pid;

	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		CHECK(setgroups(0, NULL) == 0);
		CHECK(setgid(65534) == 0 && setuid(65534) == 0);
		if (esca_register(fd, t, 4) == 0)
			FAIL("uid 65534 bound a table on a descriptor root opened");
		if (errno != EACCES)
			FAIL("REGISTER as uid 65534: %s, expected EACCES", strerror(errno));
		_exit(T_PASS);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != T_PASS)
		FAIL("the unprivileged child failed (status %#x)", st);
	CHECK(esca_register(fd2, t, 4) == 0);
	close(fd);
	close(fd2);
	expect_tables(0);
	return T_PASS;
}
