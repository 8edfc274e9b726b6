/*
 * What the syscall entry path would do for the thread decides, per entry:
 *  - syscall user dispatch on (prctl): REFUSED, ESCA_REFUSED_ENTRY_PATH,
 *    nothing runs; off again, entries run;
 *  - a ptrace tracer with PTRACE_SYSCALL: REFUSED, ESCA_REFUSED_ENTRY_PATH
 *    (the tracer would not see the call); the same thread untraced runs it;
 *  - raw_syscalls or a syscalls:sys_enter_* tracepoint enabled (a
 *    monitoring agent): REFUSED, ESCA_REFUSED_ENTRY_PATH, so the monitor
 *    sees every call (issue 21, N3: entries ran unseen); with the module's
 *    trace_bypass set by the administrator, entries run and the module's
 *    own esca:esca_call fires for each.
 */
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include "esca_test.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#endif

#define TRACING "/sys/kernel/debug/tracing"

static void check_sud(int fd, struct esca_entry *t, int p[2])
{
	static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;
	char c;

	CHECK(prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) == 0);
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"s", 1, 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"s", 1, 0);
	CHECK(esca_flush(fd, 0, 2) == 1);
	CHECK(prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0) == 0);
	expect_refused(&t[0], ESCA_REFUSED_ENTRY_PATH, "syscall user dispatch");
	if (t[1].status != 0xffff)
		FAIL("entry after a refused one ran");
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);
	CHECK(esca_flush(fd, 0, 2) == 2 && t[1].status == ESCA_ST_DONE);
	CHECK(read(p[0], &c, 1) == 1 && read(p[0], &c, 1) == 1);
}

/* The child flushes under PTRACE_SYSCALL; the table is shared with us. */
static void check_ptrace(int p[2])
{
	struct esca_entry *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int st, stops = 0;
	pid_t pid;
	char c;

	CHECK(t != MAP_FAILED);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		int fd = esca_open();

		CHECK(esca_register(fd, t, 4) == 0);
		CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0);
		raise(SIGSTOP);
		entry_set(&t[0], SYS_write, p[1], (uintptr_t)"p", 1, 0);
		esca_flush(fd, 0, 1);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFSTOPPED(st));
	CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD) == 0);
	for (;;) {
		CHECK(ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0);
		CHECK(waitpid(pid, &st, 0) == pid);
		if (WIFEXITED(st) || WIFSIGNALED(st))
			break;
		if (WIFSTOPPED(st) && WSTOPSIG(st) == (SIGTRAP | 0x80))
			stops++;
	}
	if (!stops)
		FAIL("no syscall stops seen");
	expect_refused(&t[0], ESCA_REFUSED_ENTRY_PATH, "PTRACE_SYSCALL");
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	int ok;

	if (fd < 0)
		return -1;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -1;
}

static long count_in_trace(const char *what)
{
	char buf[4096];
	long n = 0;
	FILE *f = fopen(TRACING "/trace", "r");

	CHECK(f != NULL);
	while (fgets(buf, sizeof(buf), f))
		if (strstr(buf, what))
			n++;
	fclose(f);
	return n;
}

#define BYPASS "/sys/module/esca/parameters/trace_bypass"

/* One FLUSH of two writes with the tracepoint `event` enabled. */
static long flush_traced(int fd, struct esca_entry *t, int p[2], const char *event)
{
	char path[160];
	long k;

	snprintf(path, sizeof(path), TRACING "/events/%s/enable", event);
	if (write_file(path, "1")) {
		fprintf(stderr, "cannot enable %s\n", path);
		exit(T_FAIL);
	}
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"r", 1, 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"r", 1, 0);
	k = esca_flush(fd, 0, 2);
	CHECK(write_file(path, "0") == 0);
	return k;
}

static void check_tracepoint(int fd, struct esca_entry *t, int p[2])
{
	static const char *const events[] = { "raw_syscalls", "syscalls/sys_enter_write" };
	char c;

	for (unsigned int i = 0; i < 2; i++) {
		CHECK(flush_traced(fd, t, p, events[i]) == 1);
		expect_refused(&t[0], ESCA_REFUSED_ENTRY_PATH, events[i]);
		CHECK_ERR(read(p[0], &c, 1), EAGAIN);
	}
	/* The administrator's choice: the module's own tracepoints instead. */
	CHECK(write_file(BYPASS, "Y") == 0);
	CHECK(write_file(TRACING "/trace", "") == 0);
	CHECK(write_file(TRACING "/events/esca/esca_call/enable", "1") == 0);
	CHECK(flush_traced(fd, t, p, "raw_syscalls") == 2);
	CHECK(write_file(TRACING "/events/esca/esca_call/enable", "0") == 0);
	CHECK(write_file(BYPASS, "N") == 0);
	if (t[0].status != ESCA_ST_DONE || t[1].status != ESCA_ST_DONE)
		FAIL("refused with trace_bypass: status %u %u", t[0].status, t[1].status);
	CHECK(read(p[0], &c, 1) == 1 && read(p[0], &c, 1) == 1);
	if (count_in_trace("esca_call:") != 2)
		FAIL("esca:esca_call fired %ld times for 2 calls", count_in_trace("esca_call:"));
	/* Nothing traced any more: entries run. */
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"r", 1, 0);
	CHECK(esca_flush(fd, 0, 1) == 1 && t[0].status == ESCA_ST_DONE);
	CHECK(read(p[0], &c, 1) == 1);
}

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), p[2];

	CHECK(pipe2(p, O_NONBLOCK) == 0);
	CHECK(esca_register(fd, t, 4) == 0);
	check_sud(fd, t, p);
	check_ptrace(p);
	check_tracepoint(fd, t, p);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
