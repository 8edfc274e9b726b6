/* SPDX-License-Identifier: MIT */
/*
 * A signal that arrives in the middle of a flush of writes to one file:
 * sigwatch_start() installs a SIGUSR1 handler that records how much of the
 * file was written when it ran, and starts a thread that sends SIGUSR1 to
 * the calling thread as soon as the file is no longer empty.  Used by
 * signal_flush.c (the ioctl) and programs/h_signal.c (through libesca).
 */
#ifndef SIGWATCH_H
#define SIGWATCH_H

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

static int sigwatch_file;
static pthread_t sigwatch_target, sigwatch_thread;
static volatile sig_atomic_t sigwatch_handled;
static volatile off_t sigwatch_size = -1;	/* file size seen by the handler */

static void sigwatch_on_usr1(int sig)
{
	struct stat st;

	(void)sig;
	if (!fstat(sigwatch_file, &st))
		sigwatch_size = st.st_size;
	sigwatch_handled = 1;
}

static void *sigwatch_run(void *arg)
{
	struct stat st;

	do
		CHECK(fstat(sigwatch_file, &st) == 0);
	while (st.st_size == 0);
	CHECK(pthread_kill(sigwatch_target, SIGUSR1) == 0);
	return arg;
}

static inline void sigwatch_start(int file, int sa_flags)
{
	struct sigaction sa = { .sa_handler = sigwatch_on_usr1, .sa_flags = sa_flags };

	sigwatch_file = file;
	sigwatch_target = pthread_self();
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	CHECK(pthread_create(&sigwatch_thread, NULL, sigwatch_run, NULL) == 0);
}

static inline void sigwatch_join(void)
{
	CHECK(pthread_join(sigwatch_thread, NULL) == 0);
	if (!sigwatch_handled)
		FAIL("the handler has not run");
}

#endif
