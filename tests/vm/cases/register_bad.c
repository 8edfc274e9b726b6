/*
 * REGISTER refuses bad tables: ABI mismatch (EPROTO), reserved fields, entry
 * counts and alignment (EINVAL), unmapped / read-only / kernel / partially
 * mapped memory (EFAULT); a second REGISTER is EBUSY; nothing stays registered.
 */
#include "esca_test.h"

static int reg(int fd, uint64_t table, uint32_t n, uint32_t abi, uint64_t r0)
{
	struct esca_register r = {
		.table = table, .nentries = n, .abi_version = abi, .reserved = { r0, 0 },
	};

	return ioctl(fd, ESCA_IOC_REGISTER, &r);
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = esca_open();
	struct esca_entry *t = table_alloc(ESCA_MAX_ENTRIES);
	uint64_t a = (uintptr_t)t;
	char *ro, *hole;

	expect_tables(0);
	CHECK_ERR(reg(fd, a, 8, ESCA_ABI_VERSION + 1, 0), EPROTO);
	CHECK_ERR(reg(fd, a, 8, 0, 0), EPROTO);
	CHECK_ERR(reg(fd, a, 8, ESCA_ABI_VERSION, 1), EINVAL);
	CHECK_ERR(reg(fd, a, 0, ESCA_ABI_VERSION, 0), EINVAL);
	CHECK_ERR(reg(fd, a, ESCA_MAX_ENTRIES + 1, ESCA_ABI_VERSION, 0), EINVAL);
	CHECK_ERR(reg(fd, a, 0xffffffffU, ESCA_ABI_VERSION, 0), EINVAL);
	CHECK_ERR(reg(fd, a, (uint32_t)-8, ESCA_ABI_VERSION, 0), EINVAL);
	CHECK_ERR(reg(fd, a + 4, 8, ESCA_ABI_VERSION, 0), EINVAL);
	CHECK_ERR(reg(fd, a + 1, 8, ESCA_ABI_VERSION, 0), EINVAL);

	CHECK_ERR(reg(fd, 0, 8, ESCA_ABI_VERSION, 0), EFAULT);
	CHECK_ERR(reg(fd, 0xffffffff81000000ULL, 8, ESCA_ABI_VERSION, 0), EFAULT);
	CHECK_ERR(reg(fd, 0xffff888000000000ULL, 1, ESCA_ABI_VERSION, 0), EFAULT);
	CHECK_ERR(reg(fd, 0x00007ffffffff000ULL, 4096, ESCA_ABI_VERSION, 0), EFAULT);
	CHECK_ERR(reg(fd, 0xfffffffffffff000ULL, 8, ESCA_ABI_VERSION, 0), EFAULT);

	ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED);
	CHECK_ERR(reg(fd, (uintptr_t)ro, 8, ESCA_ABI_VERSION, 0), EFAULT);

	/* Two pages, the second unmapped: the table may not run into it. */
	hole = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED);
	CHECK(munmap(hole + page, page) == 0);
	CHECK_ERR(reg(fd, (uintptr_t)hole, page / sizeof(struct esca_entry) + 1,
		      ESCA_ABI_VERSION, 0), EFAULT);
	/* PROT_NONE */
	CHECK(mprotect(hole, page, PROT_NONE) == 0);
	CHECK_ERR(reg(fd, (uintptr_t)hole, 1, ESCA_ABI_VERSION, 0), EFAULT);
	expect_tables(0);

	/* Unregister and flush before any register. */
	CHECK_ERR(ioctl(fd, ESCA_IOC_UNREGISTER), ENXIO);
	CHECK_ERR(esca_flush(fd, 0, 1), ENXIO);

	/* The whole maximum table, at an unaligned page offset. */
	CHECK(reg(fd, a + 8 * 3, ESCA_MAX_ENTRIES - 1, ESCA_ABI_VERSION, 0) == 0);
	expect_tables(1);
	CHECK_ERR(reg(fd, a, 8, ESCA_ABI_VERSION, 0), EBUSY);
	CHECK(ioctl(fd, ESCA_IOC_UNREGISTER) == 0);
	expect_tables(0);
	CHECK_ERR(ioctl(fd, ESCA_IOC_UNREGISTER), ENXIO);

	/* Register again after unregister; close unregisters. */
	CHECK(reg(fd, a, 8, ESCA_ABI_VERSION, 0) == 0);
	expect_tables(1);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
