/*
 * A thread that ptrace single-steps (SYSCALL_EXIT_TRAP: a trap after every
 * system call) has entry work the module must not skip: its entries are
 * REFUSED, ESCA_REFUSED_ENTRY_PATH, and run as plain calls, each with its
 * trap (issue 21, N5: only the work bits the module knew were refused, and
 * this one was not; any bit outside the harmless set is refused now).
 */
#include <sys/ptrace.h>
#include "esca_test.h"

/* The child flushes while single-stepped; the table is shared with us. */
static void check_singlestep(int p[2])
{
	struct esca_entry *t = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	long steps = 0;
	int st;
	pid_t pid;
	char c;

	CHECK(t != MAP_FAILED);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		int fd = esca_open();

		CHECK(esca_register(fd, t, 4) == 0);
		entry_set(&t[0], SYS_write, p[1], (uintptr_t)"s", 1, 0);
		CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0);
		raise(SIGSTOP);
		esca_flush(fd, 0, 1);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFSTOPPED(st));
	for (;;) {
		CHECK(ptrace(PTRACE_SINGLESTEP, pid, 0, 0) == 0);
		CHECK(waitpid(pid, &st, 0) == pid);
		if (WIFEXITED(st) || WIFSIGNALED(st))
			break;
		steps++;
	}
	t_say("single-stepped %ld instructions\n", steps);
	expect_refused(&t[0], ESCA_REFUSED_ENTRY_PATH, "PTRACE_SINGLESTEP");
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);
}

int main(void)
{
	int p[2];

	CHECK(pipe2(p, O_NONBLOCK) == 0);
	check_singlestep(p);
	expect_tables(0);
	return T_PASS;
}
