/*
 * Seccomp, checked before each entry as the syscall entry path would:
 *  - a task already under a filter is refused at REGISTER (EPERM): every
 *    entry of it would be refused;
 *  - a filter installed after REGISTER: the next entry is REFUSED with
 *    ESCA_REFUSED_SECCOMP, nothing runs, the flush stops there;
 *  - a filter installed by another thread with SECCOMP_FILTER_FLAG_TSYNC
 *    while the flush is blocked in entry 0: entry 1, which the filter
 *    forbids, does not run (the module used to check once per ioctl).
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include "esca_test.h"

/* Allows everything but write(2) to fd `deny`, which fails with EPERM. */
static void install_filter(int deny, unsigned int flags)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)deny, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) == 0);
}

static char big[1 << 17];
static int blocking[2], marker[2];

static void *tsync_installer(void *arg)
{
	usleep(300000);
	install_filter(marker[1], SECCOMP_FILTER_FLAG_TSYNC);
	t_drain(blocking[0], sizeof(big));
	return arg;
}

static int tsync_child(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open();
	pthread_t th;
	char c;
	long k;

	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(pipe(blocking) == 0 && pipe2(marker, O_NONBLOCK) == 0);
	entry_set(&t[0], SYS_write, blocking[1], (uintptr_t)big, sizeof(big), 0);
	entry_set(&t[1], SYS_write, marker[1], (uintptr_t)"forbidden", 9, 0);
	entry_set(&t[2], SYS_write, marker[1], (uintptr_t)"after", 5, 0);
	CHECK(pthread_create(&th, NULL, tsync_installer, NULL) == 0);
	k = esca_flush(fd, 0, 3);
	CHECK(pthread_join(th, NULL) == 0);
	if (k != 2 || t[0].status != ESCA_ST_DONE || t[0].result != sizeof(big))
		FAIL("flush %ld, entry 0 status %u result %lld", k, t[0].status,
		     (long long)t[0].result);
	if (t[1].status != ESCA_ST_REFUSED || t[1].result != ESCA_REFUSED_SECCOMP)
		FAIL("entry 1 under a TSYNC filter: status %u result %lld", t[1].status,
		     (long long)t[1].result);
	if (t[2].status != 0xffff)
		FAIL("entry 2 ran after a refused entry");
	CHECK_ERR(read(marker[0], &c, 1), EAGAIN);
	/* As a plain call, the filter decides. */
	CHECK_ERR(write(marker[1], "x", 1), EPERM);
	return T_PASS;
}

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), p[2];
	char c;
	pid_t pid;

	CHECK(pipe2(p, O_NONBLOCK) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		install_filter(-1, 0);
		CHECK_ERR(esca_register(fd, t, 4), EPERM);
		exit(T_PASS);
	}
	if (wait_child(pid) != T_PASS)
		FAIL("filtered child");

	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		int own = esca_open();

		CHECK(esca_register(own, t, 4) == 0);
		entry_set(&t[0], SYS_write, p[1], (uintptr_t)"x", 1, 0);
		CHECK(esca_flush(own, 0, 1) == 1 && t[0].status == ESCA_ST_DONE);
		install_filter(-1, 0);
		entry_set(&t[0], SYS_write, p[1], (uintptr_t)"y", 1, 0);
		entry_set(&t[1], SYS_write, p[1], (uintptr_t)"z", 1, 0);
		CHECK(esca_flush(own, 0, 2) == 1);
		if (t[0].status != ESCA_ST_REFUSED || t[0].result != ESCA_REFUSED_SECCOMP)
			FAIL("entry under a filter: status %u result %lld", t[0].status,
			     (long long)t[0].result);
		if (t[1].status != 0xffff)
			FAIL("entry after a refused one ran");
		exit(T_PASS);
	}
	if (wait_child(pid) != T_PASS)
		FAIL("child filtered after register");
	CHECK(read(p[0], &c, 1) == 1 && c == 'x');
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);

	pid = fork();
	CHECK(pid >= 0);
	if (!pid)
		exit(tsync_child());
	if (wait_child(pid) != T_PASS)
		FAIL("TSYNC child");
	expect_tables(0);
	return T_PASS;
}
