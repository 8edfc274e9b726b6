/*
 * A task under a seccomp filter would bypass it through the module: it is
 * refused (EPERM) at REGISTER, and at FLUSH when the filter came later.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include "esca_test.h"

static void allow_all_filter(void)
{
	struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { .len = 1, .filter = f };

	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0);
}

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), p[2];
	pid_t pid;

	CHECK(pipe(p) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		allow_all_filter();
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
		CHECK(esca_flush(own, 0, 1) == 1);
		allow_all_filter();
		CHECK_ERR(esca_flush(own, 0, 1), EPERM);
		exit(T_PASS);
	}
	if (wait_child(pid) != T_PASS)
		FAIL("child filtered after register");
	expect_pinned(0);
	return T_PASS;
}
