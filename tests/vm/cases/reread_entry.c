/*
 * An entry is read when its turn comes: what an earlier entry of the same
 * flush wrote into the table is what the later one runs with, as for plain
 * calls made one after the other (issue 21: entries were read eight at a
 * time, before the first of them ran).  Entry 0, sendfile(), stores the new
 * file offset (5) into entry 1's length; entry 1 then writes 5 bytes.
 */
#include <sys/mman.h>
#include <sys/sendfile.h>
#include "esca_test.h"

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), p[2], q[2], in;
	char buf[16];
	ssize_t got;

	CHECK(esca_register(fd, t, 4) == 0);
	in = memfd_create("reread", 0);
	CHECK(in >= 0 && write(in, "hello", 5) == 5);
	CHECK(pipe2(p, O_NONBLOCK) == 0 && pipe2(q, O_NONBLOCK) == 0);
	entry_set(&t[1], SYS_write, q[1], (uintptr_t)"abcdefgh", 1, 0);
	/* sendfile(p[1], in, &t[1].args[2], 5): *offset 0 -> 5 */
	t[1].args[2] = 0;
	entry_set(&t[0], SYS_sendfile, p[1], in, (uintptr_t)&t[1].args[2], 5);
	CHECK(esca_flush(fd, 0, 2) == 2);
	CHECK(t[0].status == ESCA_ST_DONE && t[0].result == 5);
	CHECK(read(p[0], buf, sizeof(buf)) == 5);
	got = read(q[0], buf, sizeof(buf));
	if (got != 5 || memcmp(buf, "abcde", 5))
		FAIL("entry 1 wrote %zd bytes, not the 5 entry 0 set (it ran with a stale copy)", got);
	CHECK(t[1].status == ESCA_ST_DONE && t[1].result == 5);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
