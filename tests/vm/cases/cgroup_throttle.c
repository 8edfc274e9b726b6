/*
 * A call that puts the thread's cgroup over memory.high is throttled before
 * the next one, as plain calls are (issue 21, N7): the kernel notes the
 * pages over the limit (memcg_nr_pages_over_high) and throttles the thread
 * on its return to user space, so the flush stops after that call and user
 * space makes the next system call.  Four 256 KiB writes into a pipe (its pages are charged to the
 * cgroup) from a cgroup whose memory.high is just above its usage: the
 * flush stops before the last; the same flush outside the cgroup runs all
 * four.
 */
#include <sys/mount.h>
#include <sys/stat.h>
#include "esca_test.h"

#define W	(256 << 10)
#define N	4

static const char cg[] = "/sys/fs/cgroup";

static int put(const char *dir, const char *file, const char *val)
{
	char path[128];
	int fd, ok;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok ? 0 : -1;
}

static long get(const char *dir, const char *file)
{
	char path[128], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	CHECK(n > 0);
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/* A pipe that holds all N writes; the FLUSH of them; the pipe drained. */
static long flush_writes(int fd, struct esca_entry *t)
{
	static char data[W];
	int p[2];
	long k, i;

	CHECK(pipe(p) == 0);
	CHECK(fcntl(p[1], F_SETPIPE_SZ, 2 * N * W) >= 2 * N * W);
	for (i = 0; i < N; i++)
		entry_set(&t[i], SYS_write, p[1], (uintptr_t)data, W, 0);
	k = esca_flush(fd, 0, N);
	CHECK(k >= 1);
	for (i = 0; i < k; i++)
		CHECK(t[i].status == ESCA_ST_DONE && t[i].result == W);
	close(p[0]);
	close(p[1]);
	return k;
}

int main(void)
{
	struct esca_entry *t = table_alloc(N);
	int fd = esca_open();
	char group[96], val[32];
	long outside, inside, usage;

	CHECK(esca_register(fd, t, N) == 0);
	/* the guest mounts no cgroups: sysfs has the mount point */
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		CHECK(mount("none", cg, "cgroup2", 0, NULL) == 0);
	CHECK(put(cg, "cgroup.subtree_control", "+memory") == 0);
	snprintf(group, sizeof(group), "%s/esca-throttle", cg);
	rmdir(group);
	CHECK(mkdir(group, 0755) == 0);
	outside = flush_writes(fd, t);

	snprintf(val, sizeof(val), "%d", getpid());
	CHECK(put(group, "cgroup.procs", val) == 0);
	usage = get(group, "memory.current");
	snprintf(val, sizeof(val), "%ld", usage + (64 << 10));
	CHECK(put(group, "memory.high", val) == 0);
	inside = flush_writes(fd, t);
	CHECK(put(group, "memory.high", "max") == 0);
	snprintf(val, sizeof(val), "%d", getpid());
	CHECK(put(cg, "cgroup.procs", val) == 0);
	CHECK(rmdir(group) == 0);

	t_say("outside the cgroup: %ld of %d writes in one flush; over memory.high: %ld\n",
	      outside, N, inside);
	if (outside != N)
		FAIL("outside the cgroup the flush stopped after %ld of %d writes", outside, N);
	if (inside >= N)
		FAIL("over memory.high all %d writes ran before the thread was throttled", N);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
