/*
 * h_audit_rule: an audit rule added while a call of a FLUSH sleeps applies
 * to the calls after it, as it would to plain calls (issue 21, N4).  Run
 * with audit enabled and no rules (guest/observe.sh audit): entry 0 blocks
 * on a full pipe; meanwhile another thread adds a syscall rule (auditctl)
 * and drains the pipe.  The module stops after entry 0 (the thread slept
 * with audit on: whether it has rules is decided at the next system call)
 * and the next FLUSH refuses entry 1, which then runs as a plain call.
 * Before, entry 1 ran in the same FLUSH, unaudited.
 */
#include <pthread.h>
#include <signal.h>
#include "esca_test.h"

static char big[1 << 17];
static int blocking[2];

static void *add_rule(void *arg)
{
	usleep(300000);
	CHECK(system("auditctl -a always,exit -F arch=b64 -S sendto -F a0=77 -k esca_mid "
		     "> /dev/null") == 0);
	t_drain(blocking[0], sizeof(big));
	return arg;
}

int main(void)
{
	struct esca_entry *t = table_alloc(4);
	int fd = esca_open(), p[2];
	sigset_t chld;
	pthread_t th;
	char c;
	long k;

	/* auditctl's exit must not cut entry 0's write short (SIGCHLD would
	 * interrupt it, as it would the plain call) */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	CHECK(pthread_sigmask(SIG_BLOCK, &chld, NULL) == 0);
	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(pipe(blocking) == 0 && pipe2(p, O_NONBLOCK) == 0);
	entry_set(&t[0], SYS_write, blocking[1], (uintptr_t)big, sizeof(big), 0);
	entry_set(&t[1], SYS_write, p[1], (uintptr_t)"a", 1, 0);
	CHECK(pthread_create(&th, NULL, add_rule, NULL) == 0);
	k = esca_flush(fd, 0, 2);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(k >= 1 && t[0].status == ESCA_ST_DONE && t[0].result == sizeof(big));
	if (k != 1)
		FAIL("the FLUSH went on after the call that slept: %ld entries ran, the "
		     "rule added meanwhile did not apply to entry 1", k);
	CHECK_ERR(read(p[0], &c, 1), EAGAIN);
	CHECK(esca_flush(fd, 1, 1) == 1);
	if (t[1].status != ESCA_ST_REFUSED || t[1].result != ESCA_REFUSED_ENTRY_PATH)
		FAIL("with the rule, entry 1: status %u result %lld, expected REFUSED", t[1].status,
		     (long long)t[1].result);
	printf("audit rule mid-flush: the flush stopped after the call that slept; the next "
	       "refused entry 1\n");
	return T_PASS;
}
