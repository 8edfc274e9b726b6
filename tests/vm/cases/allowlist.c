/*
 * Only the allowlisted calls run.  Anything else (unknown, out-of-range,
 * dangerous numbers, unknown flags) is REFUSED with -EINVAL, nothing runs,
 * and the flush stops there.
 */
#include "esca_test.h"

static void refused(int fd, struct esca_entry *t, unsigned int nr, uint16_t flags)
{
	int p[2];
	char c;

	CHECK(pipe2(p, O_NONBLOCK) == 0);
	/* A refused entry, then a write that must not run. */
	entry_set(&t[0], nr, p[1], (uintptr_t)"x", 1, 0);
	t[0].flags = flags;
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"y", 1, 0);
	t[1].status = ESCA_ST_QUEUED;
	if (esca_flush(fd, 0, 2) != 1)
		FAIL("nr %u flags %#x: flush did not stop after the refused entry", nr, flags);
	if (t[0].status != ESCA_ST_REFUSED || t[0].result != -EINVAL)
		FAIL("nr %u flags %#x: status %u result %lld", nr, flags, t[0].status,
		     (long long)t[0].result);
	if (t[1].status != ESCA_ST_QUEUED)
		FAIL("entry after a refused one ran");
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	static const unsigned int bad[] = {
		0, 2, 39 /* getpid */, 56 /* clone */, 57 /* fork */, 59 /* execve */,
		60 /* exit */, 62 /* kill */, 63, 64, 169 /* reboot */, 175 /* init_module */,
		231 /* exit_group */, 334, 335, 462, 512, 1000, 0x40000001 /* x32 write */,
		0x7fffffff, 0x80000000, 0xffffffff,
	};
	int fd = esca_open();
	struct esca_entry *t = table_alloc(4);

	CHECK(esca_register(fd, t, 4) == 0);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(fd, t, bad[i], 0);
	refused(fd, t, SYS_write, 0x2);
	refused(fd, t, SYS_write, 0x8000);
	refused(fd, t, SYS_write, 0xffff);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
