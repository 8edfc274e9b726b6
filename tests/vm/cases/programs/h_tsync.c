/*
 * h_tsync DIR: a seccomp filter arrives with SECCOMP_FILTER_FLAG_TSYNC from
 * another thread while this thread's flush is blocked in entry 0 (a send to
 * a full blocking socket).  The filter makes write(2) and sendto(2) on fd
 * 77 fail with EPERM and on fd 79 with EXDEV.  The later entries, sends on
 * 77 and 79 (connected stream sockets whose far ends children copy to
 * DIR/denied-eperm and DIR/denied-exdev), must not run inside the module:
 * libesca runs them as plain calls, the filter refuses them (ESCA_DEBUG
 * reports EPERM and EXDEV, as for direct calls) and the files stay empty.
 * Afterwards the thread no longer batches: a write in a segment fails at
 * once, as without libesca.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "esca_test.h"

static int full[2];
static size_t in_socket;

static void install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendto, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 77, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 79, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EXDEV),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0);
}

static void *filterer(void *arg)
{
	usleep(500000);
	install_filter();
	t_drain(full[1], in_socket);
	return arg;
}

static off_t size_of(const char *path)
{
	struct stat st;

	CHECK(stat(path, &st) == 0);
	return st.st_size;
}

/* A socket pair at `at`, its far end copied to DIR/name by a child. */
static pid_t copied(const char *dir, const char *name, int at, char *path, size_t len)
{
	int sv[2], file;
	pid_t pid;

	snprintf(path, len, "%s/%s", dir, name);
	file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(file >= 0);
	t_pair_at(at, sv);
	pid = t_copier(sv[1], file, sv[0]);
	close(sv[1]);
	close(file);
	return pid;
}

int main(int argc, char **argv)
{
	static char fill[4096];
	char eperm[512], exdev[512];
	pid_t c1, c2;
	pthread_t th;
	ssize_t r;

	if (argc != 2)
		FAIL("usage: h_tsync DIR");
	c1 = copied(argv[1], "denied-eperm", 77, eperm, sizeof(eperm));
	c2 = copied(argv[1], "denied-exdev", 79, exdev, sizeof(exdev));
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, full) == 0);
	hooked_init();
	while ((r = write(full[0], fill, sizeof(fill))) > 0)
		in_socket += (size_t)r;
	CHECK(errno == EAGAIN);
	CHECK(fcntl(full[0], F_SETFL, 0) == 0 && fcntl(full[1], F_SETFL, 0) == 0);
	in_socket += 100;
	CHECK(pthread_create(&th, NULL, filterer, NULL) == 0);

	batch_start();
	CHECK(write(full[0], fill, 100) == 100);	/* blocks in the flush */
	CHECK(write(77, "forbidden", 9) == 9);		/* deferred: "succeeds" */
	CHECK(write(79, "forbidden", 9) == 9);
	CHECK(batch_flush() == 3);
	CHECK(pthread_join(th, NULL) == 0);

	/* The thread runs its calls directly now: the filter answers at once. */
	batch_start();
	errno = 0;
	if (write(79, "again", 5) != -1 || errno != EXDEV)
		FAIL("a write in a later segment was deferred (errno %d)", errno);
	batch_flush();

	close(77);
	close(79);
	CHECK(wait_child(c1) == 0 && wait_child(c2) == 0);
	if (size_of(eperm) || size_of(exdev))
		FAIL("a write the filter forbids landed: %lld and %lld bytes",
		     (long long)size_of(eperm), (long long)size_of(exdev));
	printf("filtered writes refused, files empty\n");
	return 0;
}
