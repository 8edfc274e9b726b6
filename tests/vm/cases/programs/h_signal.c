/*
 * h_signal FILE: one segment defers 4000 writes of 4 KiB to FILE (tmpfs);
 * another thread sends SIGUSR1 to the flushing thread as soon as the first
 * block has landed.  The handler must run while the batch is under way,
 * not after it (it records how much of the file was written), and the
 * file must end up with every block once, in order.
 */
#include <stdint.h>
#include "esca_test.h"

#define WRITES	4000
#define BLOCK	4096

int main(int argc, char **argv)
{
	static uint32_t src[WRITES][BLOCK / 4], back[WRITES][BLOCK / 4];
	int file;

	if (argc != 2)
		FAIL("usage: h_signal FILE");
	for (int i = 0; i < WRITES; i++)
		for (int j = 0; j < BLOCK / 4; j++)
			src[i][j] = (uint32_t)i;
	file = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(file >= 0);
	hooked_init();

	batch_start();
	for (int i = 0; i < WRITES; i++)
		CHECK(write(file, src[i], BLOCK) == BLOCK);
	sigwatch_start(file, 0);
	CHECK(batch_flush() == WRITES);
	sigwatch_join();
	if (sigwatch_size <= 0 || sigwatch_size >= (off_t)WRITES * BLOCK)
		FAIL("the handler ran when %lld of %lld bytes were written: not during the flush",
		     (long long)sigwatch_size, (long long)WRITES * BLOCK);
	CHECK(pread(file, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	if (memcmp(src, back, sizeof(back)))
		FAIL("the file is not every block once, in order");
	CHECK(lseek(file, 0, SEEK_END) == (off_t)WRITES * BLOCK);
	printf("handler ran after %lld of %d blocks\n", (long long)(sigwatch_size / BLOCK), WRITES);
	return 0;
}
