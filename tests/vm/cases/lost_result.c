/*
 * An entry that ran stays "ran": when its result cannot be written back
 * (another thread made the table read-only while it blocked), FLUSH fails
 * with ENOTRECOVERABLE -- not EFAULT, which says nothing ran from there --
 * and nothing after it runs (issue 21, N2: before, the chunk's later
 * entries ran too and FLUSH said EFAULT, so libesca ran them all again).
 */
#include <pthread.h>
#include "esca_test.h"

static char big[1 << 17];
static int blocking[2];
static struct esca_entry *t;
static long page;

static void *protector(void *arg)
{
	usleep(300000);		/* entry 0 blocks on the full pipe */
	CHECK(mprotect(t, page, PROT_READ) == 0);
	*(size_t *)arg = t_drain(blocking[0], sizeof(big));
	return NULL;
}

int main(void)
{
	int fd = esca_open(), p[2];
	size_t drained = 0;
	pthread_t th;
	char buf[8];
	long k;
	int err;

	page = sysconf(_SC_PAGESIZE);
	t = table_alloc(4);
	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(pipe(blocking) == 0);
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	entry_set(&t[0], SYS_write, blocking[1], (uintptr_t)big, sizeof(big), 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"x", 1, 0);
	entry_set(&t[2], SYS_close, p[1], 0, 0, 0);
	CHECK(pthread_create(&th, NULL, protector, &drained) == 0);
	k = esca_flush(fd, 0, 3);
	err = errno;
	CHECK(pthread_join(th, NULL) == 0);
	if (k != -1 || err != ENOTRECOVERABLE)
		FAIL("FLUSH returned %ld (%s), expected ENOTRECOVERABLE", k,
		     k < 0 ? strerror(err) : "no error");
	/* entry 0 ran (the pipe got all of it), its result is not in the table */
	if (drained != sizeof(big))
		FAIL("the blocking write delivered %zu of %zu bytes", drained, sizeof(big));
	/* nothing after it ran: no byte, and p[1] still open */
	CHECK_ERR(read(p[0], buf, 1), EAGAIN);
	CHECK(fcntl(p[1], F_GETFD) >= 0);

	/* writable again: the table works as before */
	CHECK(mprotect(t, page, PROT_READ | PROT_WRITE) == 0);
	CHECK(esca_flush(fd, 1, 2) == 2);
	CHECK(t[1].status == ESCA_ST_DONE && t[1].result == 1);
	CHECK(read(p[0], buf, 1) == 1 && buf[0] == 'x');
	close(fd);
	expect_tables(0);
	return T_PASS;
}
