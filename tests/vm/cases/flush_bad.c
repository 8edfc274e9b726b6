/* FLUSH refuses out-of-range slices, huge and negative counts, reserved bits. */
#include "esca_test.h"

int main(void)
{
	int fd = esca_open();
	struct esca_entry *t = table_alloc(16);
	struct esca_flush f = { .first = 0, .count = 1, .reserved = 1 };

	CHECK(esca_register(fd, t, 16) == 0);
	CHECK_ERR(ioctl(fd, ESCA_IOC_FLUSH, &f), EINVAL);
	CHECK_ERR(esca_flush(fd, 0, 17), EINVAL);
	CHECK_ERR(esca_flush(fd, 16, 1), EINVAL);
	CHECK_ERR(esca_flush(fd, 17, 0), EINVAL);
	CHECK_ERR(esca_flush(fd, 1, 0xffffffffU), EINVAL);
	CHECK_ERR(esca_flush(fd, 0xffffffffU, 2), EINVAL);
	CHECK_ERR(esca_flush(fd, 0, (unsigned int)-1), EINVAL);
	CHECK_ERR(esca_flush(fd, (unsigned int)-1, 1), EINVAL);
	CHECK_ERR(esca_flush(fd, 8, 9), EINVAL);
	CHECK(esca_flush(fd, 0, 0) == 0);
	CHECK(esca_flush(fd, 16, 0) == 0);
	/* Nothing ran: statuses untouched. */
	for (int i = 0; i < 16; i++)
		CHECK(t[i].status == ESCA_ST_QUEUED && t[i].result == 0);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
