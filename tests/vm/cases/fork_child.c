/*
 * A forked child cannot use its parent's context (EBADFD for FLUSH,
 * UNREGISTER and REGISTER) but may open its own; a child holding the
 * inherited fd after the parent exited still cannot use it, and its close
 * releases the context; a process that exits with a registered table leaves
 * nothing behind.
 */
#include "esca_test.h"

static void child_checks(int fd, struct esca_entry *t)
{
	int own, p[2];
	char buf[4];

	CHECK_ERR(esca_flush(fd, 0, 1), EBADFD);
	CHECK_ERR(ioctl(fd, ESCA_IOC_UNREGISTER), EBADFD);
	CHECK_ERR(esca_register(fd, t, 4), EBADFD);
	/* Its own context works, on its own copy of the table. */
	own = esca_open();
	CHECK(esca_register(own, t, 4) == 0);
	expect_tables(2);
	CHECK(pipe(p) == 0);
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"kid", 3, 0);
	CHECK(esca_flush(own, 0, 1) == 1 && t[0].result == 3);
	CHECK(read(p[0], buf, 3) == 3 && !memcmp(buf, "kid", 3));
	exit(T_PASS);	/* exits registered */
}

int main(void)
{
	int fd = esca_open();
	struct esca_entry *t = table_alloc(4);
	int sync[2], go[2], p[2];
	pid_t pid, owner;
	char c;

	expect_tables(0);
	CHECK(esca_register(fd, t, 4) == 0);
	expect_tables(1);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid)
		child_checks(fd, t);
	if (wait_child(pid) != T_PASS)
		FAIL("child checks failed");
	expect_tables(1);

	/* The parent's context still works, and its table was not touched. */
	CHECK(pipe(p) == 0);
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"dad", 3, 0);
	CHECK(esca_flush(fd, 0, 1) == 1 && t[0].result == 3);
	close(fd);
	expect_tables(0);

	/* An owner that exits while a child still holds its fd. */
	CHECK(pipe(sync) == 0 && pipe(go) == 0);
	owner = fork();
	CHECK(owner >= 0);
	if (!owner) {
		int ofd = esca_open();
		struct esca_entry *ot = table_alloc(4);
		pid_t keeper;

		CHECK(esca_register(ofd, ot, 4) == 0);
		keeper = fork();
		CHECK(keeper >= 0);
		if (!keeper) {
			/* Holds the fd past the owner's exit. */
			CHECK(write(sync[1], "k", 1) == 1);
			CHECK(read(go[0], &c, 1) == 1);
			CHECK_ERR(esca_flush(ofd, 0, 1), EBADFD);
			CHECK_ERR(ioctl(ofd, ESCA_IOC_UNREGISTER), EBADFD);
			close(ofd);
			exit(T_PASS);
		}
		exit(T_PASS);	/* exits registered, fd still open in keeper */
	}
	CHECK(read(sync[0], &c, 1) == 1);
	if (wait_child(owner) != T_PASS)
		FAIL("owner failed");
	/* The keeper's file keeps the (unusable) binding, nothing else. */
	expect_tables(1);
	if (esca_debugfs("contexts") != 1)
		FAIL("contexts %ld with the keeper's file open", esca_debugfs("contexts"));
	CHECK(write(go[1], "g", 1) == 1);
	/* The keeper is not our child: wait for its context to go away. */
	for (int i = 0; i < 500 && esca_debugfs("contexts") != 0; i++)
		usleep(10000);
	if (esca_debugfs("contexts") != 0)
		FAIL("keeper's context still open");
	expect_tables(0);
	return T_PASS;
}
