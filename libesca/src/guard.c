// SPDX-License-Identifier: MIT
/*
 * Copying from the caller's memory at record time must not crash on a bad
 * pointer: libc would have returned EFAULT.  A SIGSEGV/SIGBUS handler, set
 * once by esca_init(), jumps back out of a copy in progress on this thread;
 * any other fault is handed back to the handler that was there before
 * (restored, then the faulting instruction runs again).
 */
#include "internal.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

/* volatile: the stores around memcpy() must not be optimised away */
static __thread sigjmp_buf *volatile copy_jmp;
static struct sigaction prev_segv, prev_bus;
static _Atomic int installed;
/* libc's own: the interposed siglongjmp is for the program's handlers
 * (effects.c), and a handler may not resolve symbols */
static void (*jump)(sigjmp_buf, int);

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = copy_jmp;

	(void)si;
	(void)uc;
	if (jb) {
		copy_jmp = NULL;
		jump(*jb, 1);
	}
	/* not ours: give the fault back to whoever handled it before */
	sigaction(sig, sig == SIGSEGV ? &prev_segv : &prev_bus, NULL);
}

void esca_guard_install(void)
{
	struct sigaction sa;

	if (atomic_exchange(&installed, 1))
		return;
	jump = REAL(siglongjmp);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_handler;
	/* NODEFER: leaving by siglongjmp must not leave SIGSEGV blocked */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &prev_segv);
	sigaction(SIGBUS, &sa, &prev_bus);
}

int esca_copy(void *dst, const void *src, size_t n)
{
	sigjmp_buf jb;

	if (n == 0)
		return 0;
	if (!src || !dst) {
		errno = EFAULT;
		return -1;
	}
	if (sigsetjmp(jb, 0)) {	/* 0: no signal mask syscall */
		errno = EFAULT;
		return -1;
	}
	copy_jmp = &jb;
	memcpy(dst, src, n);
	copy_jmp = NULL;
	return 0;
}
