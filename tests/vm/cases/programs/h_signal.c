/*
 * h_signal FILE: one segment defers 4000 writes of 4 KiB to FILE (tmpfs);
 * another thread sends SIGUSR1 to the flushing thread as soon as the first
 * block has landed.  The handler must run while the batch is under way,
 * not after it (it records how much of the file was written), and the
 * file must end up with every block once, in order.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include "hooked.h"

#define WRITES	4000
#define BLOCK	4096

static int file;
static pthread_t flusher;
static volatile sig_atomic_t handled;
static volatile off_t size_in_handler = -1;

static void on_usr1(int sig)
{
	struct stat st;

	(void)sig;
	if (!fstat(file, &st))
		size_in_handler = st.st_size;
	handled = 1;
}

static void *sender(void *arg)
{
	struct stat st;

	do
		CHECK(fstat(file, &st) == 0);
	while (st.st_size == 0);
	CHECK(pthread_kill(flusher, SIGUSR1) == 0);
	return arg;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	static uint32_t src[WRITES][BLOCK / 4], back[WRITES][BLOCK / 4];
	pthread_t th;

	if (argc != 2)
		FAIL("usage: h_signal FILE");
	for (int i = 0; i < WRITES; i++)
		for (int j = 0; j < BLOCK / 4; j++)
			src[i][j] = (uint32_t)i;
	file = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(file >= 0);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	hooked_init();
	flusher = pthread_self();

	batch_start();
	for (int i = 0; i < WRITES; i++)
		CHECK(write(file, src[i], BLOCK) == BLOCK);
	CHECK(pthread_create(&th, NULL, sender, NULL) == 0);
	CHECK(batch_flush() == WRITES);
	CHECK(pthread_join(th, NULL) == 0);

	if (!handled)
		FAIL("the handler did not run");
	if (size_in_handler <= 0 || size_in_handler >= (off_t)WRITES * BLOCK)
		FAIL("the handler ran when %lld of %lld bytes were written: not during the flush",
		     (long long)size_in_handler, (long long)WRITES * BLOCK);
	CHECK(pread(file, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	if (memcmp(src, back, sizeof(back)))
		FAIL("the file is not every block once, in order");
	CHECK(lseek(file, 0, SEEK_END) == (off_t)WRITES * BLOCK);
	printf("handler ran after %lld of %d blocks\n", (long long)(size_in_handler / BLOCK), WRITES);
	return 0;
}
