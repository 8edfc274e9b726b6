/*
 * SIGKILL during a flush: the blocked write returns what it wrote and the
 * pending fatal signal stops the flush before the next entry.  The table
 * is shared memory so the parent can look at it after the child died.
 */
#include "esca_test.h"

int main(void)
{
	static char big[1 << 17];
	int blocking[2], other[2], sync[2];
	struct esca_entry *t;
	pid_t pid;
	char c;

	esca_open();
	t = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(t != MAP_FAILED);
	CHECK(pipe(blocking) == 0 && pipe2(other, O_NONBLOCK) == 0 && pipe(sync) == 0);
	entry_set(&t[0], SYS_write, blocking[1], (uintptr_t)big, sizeof(big), 0);
	entry_set(&t[1], SYS_write, other[1], (uintptr_t)"no", 2, 0);
	t[1].status = ESCA_ST_QUEUED;

	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		int fd = esca_open();

		CHECK(esca_register(fd, t, 2) == 0);
		CHECK(write(sync[1], "r", 1) == 1);
		esca_flush(fd, 0, 2);
		_exit(T_FAIL);	/* not reached: killed in the flush */
	}
	CHECK(read(sync[0], &c, 1) == 1);
	usleep(500000);
	if (t[0].status != 0xffff)
		FAIL("write did not block");
	CHECK(kill(pid, SIGKILL) == 0);
	if (wait_child(pid) != 128 + SIGKILL)
		FAIL("child not killed");
	if (t[0].status != ESCA_ST_DONE || t[0].result != 65536)
		FAIL("blocked write: status %u result %lld", t[0].status, (long long)t[0].result);
	if (t[1].status != ESCA_ST_QUEUED)
		FAIL("entry after a fatal signal ran (status %u)", t[1].status);
	CHECK_ERR(read(other[0], &c, 1), EAGAIN);
	expect_tables(0);
	return T_PASS;
}
