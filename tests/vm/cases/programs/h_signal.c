/*
 * h_signal FILE: one segment defers 4000 sends of 4 KiB on a connected
 * blocking stream socket whose far end a forked child copies to FILE
 * (tmpfs); another thread sends SIGUSR1 to the flushing thread as soon as
 * the first block has landed in FILE.  The handler must run while the batch
 * is under way, not after it (it records how much of the file was written),
 * and the file must end up with every block once, in order.  Sends and
 * writes alternate: libesca merges neither into the other, so the batch is
 * 4000 entries.
 */
#include <stdint.h>
#include "esca_test.h"

#define WRITES	4000
#define BLOCK	4096

int main(int argc, char **argv)
{
	static uint32_t src[WRITES][BLOCK / 4], back[WRITES][BLOCK / 4];
	int file, sv[2];
	pid_t copier;

	if (argc != 2)
		FAIL("usage: h_signal FILE");
	for (int i = 0; i < WRITES; i++)
		for (int j = 0; j < BLOCK / 4; j++)
			src[i][j] = (uint32_t)i;
	file = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(file >= 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	copier = t_copier(sv[1], file, sv[0]);
	close(sv[1]);
	hooked_init();
	/* (a thread made inside the segment would see its calls sent first) */
	sigwatch_start(file, 0);

	batch_start();
	for (int i = 0; i < WRITES; i++) {
		if (i % 2)
			CHECK(send(sv[0], src[i], BLOCK, MSG_NOSIGNAL) == BLOCK);
		else
			CHECK(write(sv[0], src[i], BLOCK) == BLOCK);
	}
	CHECK(batch_flush() == WRITES);
	sigwatch_join();
	close(sv[0]);
	CHECK(wait_child(copier) == 0);
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
