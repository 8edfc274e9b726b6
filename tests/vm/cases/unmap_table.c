/*
 * The table is user memory, used through its address: unmapped, FLUSH is
 * EFAULT and nothing runs (the pinning module kept running what the
 * orphaned pages held); new memory mapped at that address is the table.
 * Unmapped in the middle of a flush (another thread, while entry 0 blocks),
 * the flush stops before the first entry it cannot read, and a FLUSH from
 * there is EFAULT.
 */
#include <pthread.h>
#include "esca_test.h"

static char big[1 << 17];
static int blocking[2];
static struct esca_entry *t2;
static long page;

static void *unmapper(void *arg)
{
	usleep(300000);
	CHECK(munmap((char *)t2 + page, page) == 0);
	t_drain(blocking[0], sizeof(big));
	return arg;
}

int main(void)
{
	int fd = esca_open(), fd2 = esca_open(), p[2];
	unsigned int per_page, n;
	struct esca_entry *t, *again;
	pthread_t th;
	char buf[8];
	long k;

	page = sysconf(_SC_PAGESIZE);
	per_page = page / sizeof(struct esca_entry);
	t = table_alloc(64);
	CHECK(esca_register(fd, t, 64) == 0);
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"zombie", 6, 0);
	CHECK(munmap(t, 64 * sizeof(*t)) == 0);
	CHECK_ERR(esca_flush(fd, 0, 1), EFAULT);
	CHECK_ERR(read(p[0], buf, 1), EAGAIN);

	/* New memory at the same address: that is the table now. */
	again = mmap(t, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(again == t);
	entry_set(&again[0], SYS_write, p[1], (uintptr_t)"fresh", 5, 0);
	CHECK(esca_flush(fd, 0, 1) == 1);
	if (again[0].status != ESCA_ST_DONE || again[0].result != 5)
		FAIL("status %u result %lld", again[0].status, (long long)again[0].result);
	CHECK(read(p[0], buf, 5) == 5 && !memcmp(buf, "fresh", 5));
	CHECK(ioctl(fd, ESCA_IOC_UNREGISTER) == 0);

	/* Two pages of entries; the second is unmapped while entry 0 blocks. */
	n = 2 * per_page;
	t2 = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(t2 != MAP_FAILED);
	CHECK(esca_register(fd2, t2, n) == 0);
	CHECK(pipe(blocking) == 0);
	entry_set(&t2[0], SYS_write, blocking[1], (uintptr_t)big, sizeof(big), 0);
	for (unsigned int i = 1; i < n; i++)
		entry_set(&t2[i], SYS_write, p[1], (uintptr_t)"e", 1, 0);
	CHECK(pthread_create(&th, NULL, unmapper, NULL) == 0);
	k = esca_flush(fd2, 0, n);
	CHECK(pthread_join(th, NULL) == 0);
	if (k != per_page)
		FAIL("flush over an unmapped page returned %ld, expected %u", k, per_page);
	for (unsigned int i = 0; i < per_page; i++)
		if (t2[i].status != ESCA_ST_DONE)
			FAIL("entry %u: status %u", i, t2[i].status);
	CHECK_ERR(esca_flush(fd2, per_page, n - per_page), EFAULT);
	/* Exactly the entries of the first page ran. */
	for (unsigned int i = 1; i < per_page; i++)
		CHECK(read(p[0], buf, 1) == 1);
	CHECK_ERR(read(p[0], buf, 1), EAGAIN);
	close(fd);
	close(fd2);
	expect_tables(0);
	return T_PASS;
}
