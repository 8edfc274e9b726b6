/*
 * ESCA_IOC_FLUSH_WAIT: the batch, then an epoll wait as the last entry, in
 * one ioctl.
 *  - VERSION announces the feature;
 *  - the batch runs before the wait (the wait sees the batch's write);
 *  - timeouts 0, N ms (epoll_wait) and a timespec (epoll_pwait2) end the
 *    wait with 0 events, after at least that long;
 *  - a failed or short entry stops the flush before the wait: the wait does
 *    not run (status untouched) and FLUSH_WAIT says how many ran;
 *  - a signal during the wait ends it with -EINTR, the handler runs, even
 *    with SA_RESTART (epoll_wait never restarts); epoll_pwait's mask lets a
 *    blocked signal end the wait and is restored afterwards, as for the
 *    plain call;
 *  - a signal during a long batch stops it before the wait;
 *  - waits only as the last entry, never in FLUSH, without flags;
 *  - openat as the last entry (ESCA_FEATURE_FLUSH_OPEN) runs after the
 *    batch's close and gets the number that close freed, as plain calls
 *    would; never in FLUSH;
 *  - under seccomp the wait is refused like any entry.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include "esca_test.h"

#define N	ESCA_MAX_ENTRIES
#define BLOCK	4096

static long flush_wait(int fd, unsigned int first, unsigned int count)
{
	struct esca_flush f = { .first = first, .count = count };

	return ioctl(fd, ESCA_IOC_FLUSH_WAIT, &f);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile sig_atomic_t usr2_seen;

static void on_usr2(int sig)
{
	(void)sig;
	usr2_seen++;
}

struct kicker {
	pthread_t target;
	int delay_ms;
};

static void *kick(void *arg)
{
	struct kicker *k = arg;

	usleep(k->delay_ms * 1000);
	CHECK(pthread_kill(k->target, SIGUSR2) == 0);
	return NULL;
}

static void expect_entry(const struct esca_entry *e, const char *what, uint16_t status,
			 int64_t result)
{
	if (e->status != status || e->result != result)
		FAIL("%s: status %u result %lld, expected status %u result %lld", what,
		     e->status, (long long)e->result, status, (long long)result);
}

int main(void)
{
	struct esca_entry *t = table_alloc(N);
	struct epoll_event ev = { .events = EPOLLIN }, out[4];
	struct esca_version v;
	struct timespec ts;
	int fd = esca_open(), p[2], q[2], ep, file;
	struct kicker kk = { .target = pthread_self() };
	struct sigaction sa = { .sa_handler = on_usr2, .sa_flags = SA_RESTART };
	sigset_t blocked, unblocked, now;
	pthread_t th;
	char c = 'x', buf[8];
	double t0, dt;
	uint32_t *src;
	long k;

	memset(&v, 0, sizeof(v));
	CHECK(ioctl(fd, ESCA_IOC_VERSION, &v) == 0);
	if (!(v.features & ESCA_FEATURE_FLUSH_WAIT))
		FAIL("VERSION does not announce FLUSH_WAIT (features %#llx)",
		     (unsigned long long)v.features);
	CHECK(esca_register(fd, t, N) == 0);
	CHECK(pipe2(p, O_NONBLOCK) == 0 && pipe2(q, O_NONBLOCK) == 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	ev.data.u64 = 0xe5ca;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);

	/* the batch runs first: the wait sees its write, without blocking */
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)&c, 1, 0);
	entry_set(&t[1], SYS_epoll_wait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	k = flush_wait(fd, 0, 2);
	if (k != 2)
		FAIL("FLUSH_WAIT of write + wait returned %ld (errno %d)", k, errno);
	expect_entry(&t[0], "write", ESCA_ST_DONE, 1);
	expect_entry(&t[1], "wait after the write", ESCA_ST_DONE, 1);
	CHECK(out[0].data.u64 == 0xe5ca && (out[0].events & EPOLLIN));
	CHECK(read(p[0], buf, sizeof(buf)) == 1);

	/* timeouts: 0, 60 ms, a 40 ms timespec (epoll_pwait2) */
	entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
	CHECK(flush_wait(fd, 0, 1) == 1);
	expect_entry(&t[0], "timeout 0", ESCA_ST_DONE, 0);
	t0 = now_ms();
	entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 60);
	CHECK(flush_wait(fd, 0, 1) == 1);
	dt = now_ms() - t0;
	expect_entry(&t[0], "timeout 60 ms", ESCA_ST_DONE, 0);
	if (dt < 59)
		FAIL("a 60 ms timeout ended after %.1f ms", dt);
	ts.tv_sec = 0;
	ts.tv_nsec = 40 * 1000000;
	t0 = now_ms();
	entry_set(&t[0], SYS_epoll_pwait2, ep, (uintptr_t)out, 4, (uintptr_t)&ts);
	t[0].args[4] = 0;	/* no sigmask */
	t[0].args[5] = 8;
	CHECK(flush_wait(fd, 0, 1) == 1);
	dt = now_ms() - t0;
	expect_entry(&t[0], "epoll_pwait2 40 ms", ESCA_ST_DONE, 0);
	if (dt < 39)
		FAIL("a 40 ms timespec ended after %.1f ms", dt);

	/* a failed entry, then a short one (EXPECT), stop before the wait */
	entry_set(&t[0], SYS_write, 1000, (uintptr_t)&c, 1, 0);
	entry_set(&t[1], SYS_epoll_wait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	CHECK(flush_wait(fd, 0, 2) == 1);
	expect_entry(&t[0], "write to a bad fd", ESCA_ST_DONE, -EBADF);
	expect_entry(&t[1], "wait after a failed entry", 0xffff, 0x5a5a5a5a);
	entry_set(&t[0], SYS_write, q[1], (uintptr_t)&c, 1, 0);
	t[0].flags = ESCA_ENTRY_EXPECT;
	t[0].expect = 2;
	entry_set(&t[1], SYS_epoll_wait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	CHECK(flush_wait(fd, 0, 2) == 1);
	expect_entry(&t[0], "short write", ESCA_ST_DONE, 1);
	expect_entry(&t[1], "wait after a short entry", 0xffff, 0x5a5a5a5a);
	CHECK(read(q[0], buf, sizeof(buf)) == 1);

	/* a signal ends the wait with -EINTR, SA_RESTART or not */
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	kk.delay_ms = 150;
	CHECK(pthread_create(&th, NULL, kick, &kk) == 0);
	entry_set(&t[0], SYS_write, q[1], (uintptr_t)&c, 1, 0);
	entry_set(&t[1], SYS_epoll_wait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	k = flush_wait(fd, 0, 2);
	CHECK(pthread_join(th, NULL) == 0);
	if (k != 2)
		FAIL("FLUSH_WAIT with a signal during the wait returned %ld (errno %d)", k, errno);
	expect_entry(&t[0], "write before the interrupted wait", ESCA_ST_DONE, 1);
	expect_entry(&t[1], "interrupted wait", ESCA_ST_DONE, -EINTR);
	CHECK(usr2_seen == 1);
	CHECK(read(q[0], buf, sizeof(buf)) == 1);

	/* epoll_pwait: its mask lets the blocked SIGUSR2 in, then is restored */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR2);
	CHECK(pthread_sigmask(SIG_BLOCK, &blocked, NULL) == 0);
	CHECK(pthread_sigmask(SIG_BLOCK, NULL, &unblocked) == 0);
	sigdelset(&unblocked, SIGUSR2);
	CHECK(pthread_create(&th, NULL, kick, &kk) == 0);
	entry_set(&t[0], SYS_epoll_pwait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	t[0].args[4] = (uintptr_t)&unblocked;
	t[0].args[5] = 8;
	CHECK(flush_wait(fd, 0, 1) == 1);
	CHECK(pthread_join(th, NULL) == 0);
	expect_entry(&t[0], "epoll_pwait ended by a signal its mask lets in", ESCA_ST_DONE,
		     -EINTR);
	CHECK(usr2_seen == 2);
	CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0);
	if (!sigismember(&now, SIGUSR2))
		FAIL("epoll_pwait's mask was not restored after the wait");
	CHECK(pthread_sigmask(SIG_UNBLOCK, &blocked, NULL) == 0);

	/* a signal during a long batch stops it before the wait */
	src = malloc((size_t)N * BLOCK);
	CHECK(src);
	memset(src, 7, (size_t)N * BLOCK);
	file = memfd_create("esca-flush-wait", 0);
	CHECK(file >= 0);
	for (unsigned int i = 0; i < N - 1; i++) {
		entry_set(&t[i], SYS_write, file, (uintptr_t)src + (size_t)i * BLOCK, BLOCK, 0);
		t[i].flags = ESCA_ENTRY_EXPECT;
		t[i].expect = BLOCK;
	}
	entry_set(&t[N - 1], SYS_epoll_wait, ep, (uintptr_t)out, 4, (uint64_t)-1);
	sigwatch_start(file, SA_RESTART);
	k = flush_wait(fd, 0, N);
	sigwatch_join();
	if (k <= 0 || k >= N)
		FAIL("FLUSH_WAIT returned %ld: the signal did not stop the batch before the wait", k);
	expect_entry(&t[N - 1], "wait after a signal in the batch", 0xffff, 0x5a5a5a5a);
	if (sigwatch_size != (off_t)k * BLOCK)
		FAIL("the handler saw %lld bytes, FLUSH_WAIT says %ld entries ran",
		     (long long)sigwatch_size, k);

	/* waits only as the last entry of FLUSH_WAIT, without flags */
	entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
	CHECK(esca_flush(fd, 0, 1) == 1);
	expect_entry(&t[0], "wait in FLUSH", ESCA_ST_REFUSED, ESCA_REFUSED_CALL);
	entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
	entry_set(&t[1], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
	CHECK(flush_wait(fd, 0, 2) == 1);
	expect_entry(&t[0], "wait before the last entry", ESCA_ST_REFUSED, ESCA_REFUSED_CALL);
	expect_entry(&t[1], "wait after a refused one", 0xffff, 0x5a5a5a5a);
	entry_set(&t[0], SYS_write, q[1], (uintptr_t)&c, 1, 0);
	entry_set(&t[1], SYS_write, q[1], (uintptr_t)&c, 1, 0);
	CHECK(flush_wait(fd, 0, 2) == 2);
	expect_entry(&t[0], "write", ESCA_ST_DONE, 1);
	expect_entry(&t[1], "a write as the last entry", ESCA_ST_REFUSED, ESCA_REFUSED_CALL);
	CHECK(read(q[0], buf, sizeof(buf)) == 1);
	entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
	t[0].flags = ESCA_ENTRY_EXPECT;
	CHECK(flush_wait(fd, 0, 1) == 1);
	expect_entry(&t[0], "a wait with flags", ESCA_ST_REFUSED, ESCA_REFUSED_CALL);
	CHECK_ERR(flush_wait(fd, 0, 0), EINVAL);
	CHECK_ERR(flush_wait(fd, N, 1), EINVAL);
	/* a kernel address: EFAULT before the wait, as for the plain call */
	entry_set(&t[0], SYS_epoll_wait, ep, 0xffff888000000000ULL, 4, 0);
	CHECK(flush_wait(fd, 0, 1) == 1);
	expect_entry(&t[0], "a wait with a bad events pointer", ESCA_ST_DONE, -EFAULT);
	CHECK_ERR(epoll_wait(ep, (struct epoll_event *)0xffff888000000000ULL, 4, 0), EFAULT);

	/* openat after a close of the batch: the number it freed */
	{
		struct esca_version v = { 0 };
		int victim = open("/dev/null", O_RDONLY), got;

		CHECK(ioctl(fd, ESCA_IOC_VERSION, &v) == 0 && (v.features & ESCA_FEATURE_FLUSH_OPEN),
		      "openat as the last entry is not announced");
		CHECK(victim >= 0);
		entry_set(&t[0], SYS_close, victim, 0, 0, 0);
		entry_set(&t[1], SYS_openat, AT_FDCWD, (uintptr_t)"/dev/zero", O_RDONLY | O_CLOEXEC,
			  0);
		k = flush_wait(fd, 0, 2);
		CHECK(k == 1 || k == 2);
		expect_entry(&t[0], "close before the open", ESCA_ST_DONE, 0);
		if (k == 1) {
			/* before 6.6 the close left its file's release to the
			 * return to user space: the open is made here, as
			 * libesca does */
			CHECK(t[1].status == 0xffff);
			t[1].result = openat(AT_FDCWD, "/dev/zero", O_RDONLY | O_CLOEXEC);
			t[1].status = ESCA_ST_DONE;
		}
		expect_entry(&t[1], "openat as the last entry", ESCA_ST_DONE, victim);
		CHECK(read(victim, &got, sizeof(got)) == sizeof(got) && got == 0,
		      "fd %d is not /dev/zero", victim);
		close(victim);
		entry_set(&t[0], SYS_openat, AT_FDCWD, (uintptr_t)"/dev/zero", O_RDONLY, 0);
		CHECK(esca_flush(fd, 0, 1) == 1);
		expect_entry(&t[0], "openat in FLUSH", ESCA_ST_REFUSED, ESCA_REFUSED_CALL);
	}

	/* under seccomp the wait is refused like any entry */
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (!pid) {
		struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
		struct sock_fprog prog = { .len = 1, .filter = f };
		int cfd = esca_open();

		CHECK(esca_register(cfd, t, 2) == 0);
		CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
		CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0);
		entry_set(&t[0], SYS_epoll_wait, ep, (uintptr_t)out, 4, 0);
		CHECK(flush_wait(cfd, 0, 1) == 1);
		expect_entry(&t[0], "wait under seccomp", ESCA_ST_REFUSED, ESCA_REFUSED_SECCOMP);
		_exit(T_PASS);
	}
	if (wait_child(pid) != T_PASS)
		FAIL("the seccomp child failed");
	printf("batch + wait in one ioctl; signal stopped a batch after %ld entries\n", k);
	return T_PASS;
}
