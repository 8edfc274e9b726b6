/*
 * Another thread closes the fd while a flush blocks in a write: the flush
 * completes with its real result, later ioctls get EBADF, and the context
 * (its table) goes away once the flush has returned.
 */
#include <pthread.h>
#include "esca_test.h"

static int esca_fd, p[2];
static struct esca_entry *t;
static long flushed = -2;

static void *flusher(void *arg)
{
	flushed = esca_flush(esca_fd, 0, 2);
	return arg;
}

int main(void)
{
	static char big[1 << 17];
	pthread_t th;

	esca_fd = esca_open();
	t = table_alloc(4);
	CHECK(esca_register(esca_fd, t, 4) == 0);
	CHECK(pipe(p) == 0);		/* blocking, 64 KiB */
	memset(big, 'b', sizeof(big));
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)big, sizeof(big), 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"end", 3, 0);
	CHECK(pthread_create(&th, NULL, flusher, NULL) == 0);
	usleep(300000);
	if (flushed != -2)
		FAIL("flush did not block (returned %ld)", flushed);
	CHECK(close(esca_fd) == 0);
	CHECK_ERR(esca_flush(esca_fd, 0, 1), EBADF);
	if (esca_debugfs("tables") != 1)
		FAIL("context released while a flush still runs");
	t_drain(p[0], sizeof(big) + 3);
	CHECK(pthread_join(th, NULL) == 0);
	if (flushed != 2 || t[0].result != sizeof(big) || t[1].result != 3)
		FAIL("flush %ld results %lld %lld", flushed, (long long)t[0].result,
		     (long long)t[1].result);
	expect_tables(0);
	return T_PASS;
}
