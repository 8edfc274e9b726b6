/*
 * h_tsync DIR: a seccomp filter arrives with SECCOMP_FILTER_FLAG_TSYNC from
 * another thread while this thread's flush is blocked in entry 0 (a write
 * to a full pipe).  The filter makes write(2) to fd 77 fail with EPERM and
 * to fd 78 with EXDEV.  The later entries, writes to 77 and 78, must not run
 * inside the module: libesca runs them as plain calls, the filter refuses
 * them (ESCA_DEBUG reports EPERM and EXDEV, as for direct calls) and the
 * files stay empty.  Afterwards the thread no longer batches: a write in a
 * segment fails at once, as without libesca.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "esca_test.h"

static int pipefd[2];
static size_t in_pipe;

static void install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 77, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 78, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EXDEV),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0);
}

static void *filterer(void *arg)
{
	char buf[4096];
	size_t got = 0;
	ssize_t r;

	usleep(500000);
	install_filter();
	while (got < in_pipe) {
		r = read(pipefd[0], buf, sizeof(buf));
		CHECK(r > 0);
		got += (size_t)r;
	}
	return arg;
}

static off_t size_of(int fd)
{
	struct stat st;

	CHECK(fstat(fd, &st) == 0);
	return st.st_size;
}

int main(int argc, char **argv)
{
	static char fill[4096];
	char path[512];
	pthread_t th;
	ssize_t r;

	if (argc != 2)
		FAIL("usage: h_tsync DIR");
	snprintf(path, sizeof(path), "%s/denied-eperm", argv[1]);
	open_at(path, 77);
	snprintf(path, sizeof(path), "%s/denied-exdev", argv[1]);
	open_at(path, 78);
	hooked_init();
	CHECK(pipe2(pipefd, O_NONBLOCK) == 0);
	while ((r = write(pipefd[1], fill, sizeof(fill))) > 0)
		in_pipe += (size_t)r;
	CHECK(errno == EAGAIN);
	CHECK(fcntl(pipefd[0], F_SETFL, 0) == 0 && fcntl(pipefd[1], F_SETFL, 0) == 0);
	in_pipe += 100;
	CHECK(pthread_create(&th, NULL, filterer, NULL) == 0);

	batch_start();
	CHECK(write(pipefd[1], fill, 100) == 100);	/* blocks in the flush */
	CHECK(write(77, "forbidden", 9) == 9);		/* deferred: "succeeds" */
	CHECK(write(78, "forbidden", 9) == 9);
	CHECK(batch_flush() == 3);
	CHECK(pthread_join(th, NULL) == 0);
	if (size_of(77) || size_of(78))
		FAIL("a write the filter forbids landed: %lld and %lld bytes",
		     (long long)size_of(77), (long long)size_of(78));

	/* The thread runs its calls directly now: the filter answers at once. */
	batch_start();
	errno = 0;
	if (write(78, "again", 5) != -1 || errno != EXDEV)
		FAIL("a write in a later segment was deferred (errno %d)", errno);
	batch_flush();
	printf("filtered writes refused, files empty\n");
	return 0;
}
