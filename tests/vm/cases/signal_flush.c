/*
 * A non-fatal signal stops a long flush between entries: its handler runs
 * as soon as FLUSH returns, before the entries after the one that was
 * running, and FLUSH says how many ran.  Entry writes to a memfd (tmpfs)
 * do not look at non-fatal signals themselves, so before the fix the whole
 * batch ran first.  Continuing from there runs every entry once, in order.
 */
#include "esca_test.h"

#define N	ESCA_MAX_ENTRIES
#define BLOCK	4096

int main(void)
{
	struct esca_entry *t = table_alloc(N);
	uint32_t *src, *back;
	int fd = esca_open();
	unsigned int first;
	int file;
	long k;

	src = malloc((size_t)N * BLOCK);
	back = malloc((size_t)N * BLOCK);
	CHECK(src && back);
	for (size_t i = 0; i < (size_t)N * BLOCK / 4; i++)
		src[i] = (uint32_t)(i * 4 / BLOCK);
	file = memfd_create("esca-signal", 0);
	CHECK(file >= 0);
	CHECK(esca_register(fd, t, N) == 0);
	for (unsigned int i = 0; i < N; i++) {
		entry_set(&t[i], SYS_write, file, (uintptr_t)src + (size_t)i * BLOCK, BLOCK, 0);
		t[i].flags = ESCA_ENTRY_EXPECT;
		t[i].expect = BLOCK;
	}
	sigwatch_start(file, SA_RESTART);
	k = esca_flush(fd, 0, N);
	sigwatch_join();
	if (k <= 0 || k >= N)
		FAIL("FLUSH returned %ld: the signal did not stop it between entries", k);
	if (sigwatch_size != (off_t)k * BLOCK)
		FAIL("the handler saw %lld bytes written, FLUSH says %ld entries ran",
		     (long long)sigwatch_size, k);
	for (unsigned int i = 0; i < N; i++) {
		uint16_t want = i < k ? ESCA_ST_DONE : 0xffff;

		if (t[i].status != want)
			FAIL("entry %u: status %u, expected %u", i, t[i].status, want);
	}
	for (first = k; first < N; first += k) {
		k = esca_flush(fd, first, N - first);
		CHECK(k > 0);
	}
	CHECK(pread(file, back, (size_t)N * BLOCK, 0) == (ssize_t)N * BLOCK);
	if (memcmp(src, back, (size_t)N * BLOCK))
		FAIL("the file is not every block once, in order");
	CHECK(lseek(file, 0, SEEK_END) == (off_t)N * BLOCK);
	printf("stopped after %ld of %d entries\n", (long)(sigwatch_size / BLOCK), N);
	close(fd);
	return T_PASS;
}
