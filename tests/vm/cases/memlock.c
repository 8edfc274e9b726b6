/*
 * Nothing is pinned, so nothing is charged to RLIMIT_MEMLOCK: with a limit
 * of 0 and without CAP_IPC_LOCK, eight contexts register full tables (the
 * pinning module refused the first with ENOMEM) and flush.
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
	struct rlimit rl = { 0, 0 };
	int fds[8], p[2];
	char buf[8];

	drop_ipc_lock();
	CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	CHECK(pipe(p) == 0);
	for (int i = 0; i < 8; i++) {
		struct esca_entry *t = table_alloc(ESCA_MAX_ENTRIES);

		fds[i] = esca_open();
		CHECK(esca_register(fds[i], t, ESCA_MAX_ENTRIES) == 0);
		entry_set(&t[ESCA_MAX_ENTRIES - 1], SYS_write, p[1], (uintptr_t)"m", 1, 0);
		CHECK(esca_flush(fds[i], ESCA_MAX_ENTRIES - 1, 1) == 1);
		if (t[ESCA_MAX_ENTRIES - 1].status != ESCA_ST_DONE)
			FAIL("context %d: status %u", i, t[ESCA_MAX_ENTRIES - 1].status);
	}
	expect_tables(8);
	CHECK(read(p[0], buf, 8) == 8 && !memcmp(buf, "mmmmmmmm", 8));
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	expect_tables(0);
	return T_PASS;
}
