/*
 * An entry closes the last reference of another, bound, /dev/esca context:
 * its release runs inside this flush (from 6.6; before, on the way back to
 * user space, and the flush stops after the close).  The module holds no lock while the
 * calls run and release takes none, so there is no nesting of two locks of
 * one class (a lockdep report on PROVE_LOCKING kernels before the fix; the
 * runner rejects any lockdep line in the kernel log).
 */
#include "esca_test.h"

int main(void)
{
	struct esca_entry *t = table_alloc(4), *t2 = table_alloc(4);
	int fd = esca_open(), other = esca_open(), p[2];
	char buf[8];
	long k;

	CHECK(pipe(p) == 0);
	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(esca_register(other, t2, 4) == 0);
	expect_tables(2);
	entry_set(&t[0], SYS_close, other, 0, 0, 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"after", 5, 0);
	k = esca_flush(fd, 0, 2);
	/* before 6.6 the release is task work: the flush stops after the close */
	if (k == 1)
		k += esca_flush(fd, 1, 1);
	if (k != 2 || t[0].result != 0 || t[1].result != 5)
		FAIL("results %lld %lld", (long long)t[0].result, (long long)t[1].result);
	CHECK(read(p[0], buf, 5) == 5);
	CHECK_ERR(esca_flush(other, 0, 1), EBADF);
	expect_tables(1);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
