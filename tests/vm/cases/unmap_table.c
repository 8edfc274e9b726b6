/*
 * The table is unmapped (or its memory replaced) while registered: the
 * kernel keeps writing to the pinned pages, the process is not hurt, and
 * UNREGISTER unpins them.
 */
#include "esca_test.h"

int main(void)
{
	int fd = esca_open(), p[2];
	struct esca_entry *t = table_alloc(64), *again;
	struct esca_entry copy;
	char buf[8];

	CHECK(esca_register(fd, t, 64) == 0);
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	entry_set(&copy, SYS_write, p[1], (uintptr_t)"zombie", 6, 0);
	t[0] = copy;
	CHECK(munmap(t, 64 * sizeof(*t)) == 0);
	/* The kernel runs what the pinned pages hold. */
	CHECK(esca_flush(fd, 0, 1) == 1);
	CHECK(read(p[0], buf, 6) == 6 && !memcmp(buf, "zombie", 6));
	/* New memory at the same address is not the table. */
	again = mmap(t, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(again == t);
	CHECK(esca_flush(fd, 0, 1) == 1);
	if (again[0].status != 0)
		FAIL("the kernel wrote into memory that replaced the table");
	CHECK(ioctl(fd, ESCA_IOC_UNREGISTER) == 0);
	expect_pinned(0);
	close(fd);
	return T_PASS;
}
