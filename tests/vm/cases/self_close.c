/*
 * An entry closes the /dev/esca fd that is flushing; the rest of the batch
 * still runs; then the fd is gone and the context with it.
 */
#include "esca_test.h"

int main(void)
{
	int fd = esca_open(), p[2];
	struct esca_entry *t = table_alloc(4);
	char buf[4];

	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(pipe(p) == 0);
	entry_set(&t[0], SYS_close, fd, 0, 0, 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"after", 5, 0);
	if (esca_flush(fd, 0, 2) != 2 || t[0].result != 0 || t[1].result != 5)
		FAIL("results %lld %lld", (long long)t[0].result, (long long)t[1].result);
	CHECK(read(p[0], buf, 4) == 4);
	CHECK_ERR(esca_flush(fd, 0, 1), EBADF);
	expect_tables(0);
	return T_PASS;
}
