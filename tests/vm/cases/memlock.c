/*
 * Pinned tables are charged to RLIMIT_MEMLOCK (without CAP_IPC_LOCK): past
 * the limit REGISTER fails with ENOMEM, and unregistering gives it back.
 */
#include <linux/capability.h>
#include <sys/resource.h>
#include "esca_test.h"

static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	CHECK(syscall(SYS_capget, &h, d) == 0);
	d[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
	CHECK(syscall(SYS_capset, &h, d) == 0);
}

int main(void)
{
	struct rlimit rl = { 4096, 4096 };
	struct esca_entry *t = table_alloc(56), *t2 = table_alloc(56);
	int a = esca_open(), b = esca_open();

	drop_ipc_lock();
	CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	CHECK(esca_register(a, t, 56) == 0);		/* one page */
	CHECK_ERR(esca_register(b, t2, 56), ENOMEM);
	expect_pinned(1);
	CHECK(ioctl(a, ESCA_IOC_UNREGISTER) == 0);
	CHECK(esca_register(b, t2, 56) == 0);
	close(a);
	close(b);
	expect_pinned(0);
	return T_PASS;
}
