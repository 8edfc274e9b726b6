/*
 * Threads of one process, each with its own open file and table (as libesca
 * does), flush concurrently; every byte arrives in order.  A thread may also
 * flush another thread's context (same mm).
 */
#include <pthread.h>
#include "esca_test.h"

#define NTHREADS 4
#define ROUNDS 300
#define BATCH 16

struct worker {
	int fd, p[2];
	struct esca_entry *t;
	unsigned char payload[BATCH];
	int failed;
};

static void *reader(void *arg)
{
	struct worker *w = arg;
	unsigned char buf[4096];
	unsigned long n = 0;
	ssize_t r;

	while ((r = read(w->p[0], buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++, n++)
			if (buf[i] != (unsigned char)(n % 251))
				w->failed = 1;
	if (n != (unsigned long)ROUNDS * BATCH)
		w->failed = 1;
	return NULL;
}

static void *writer(void *arg)
{
	struct worker *w = arg;
	unsigned long n = 0;

	w->fd = esca_open();
	w->t = table_alloc(BATCH);
	if (esca_register(w->fd, w->t, BATCH))
		w->failed = 1;
	for (int r = 0; r < ROUNDS && !w->failed; r++) {
		for (int i = 0; i < BATCH; i++, n++) {
			w->payload[i] = n % 251;
			entry_set(&w->t[i], SYS_write, w->p[1], (uintptr_t)&w->payload[i], 1, 0);
			w->t[i].flags = ESCA_ENTRY_EXPECT;
			w->t[i].expect = 1;
		}
		if (esca_flush(w->fd, 0, BATCH) != BATCH)
			w->failed = 1;
	}
	close(w->p[1]);
	return NULL;
}

int main(void)
{
	static struct worker w[NTHREADS];
	pthread_t wt[NTHREADS], rt[NTHREADS];
	int p[2];

	for (int i = 0; i < NTHREADS; i++) {
		CHECK(pipe(w[i].p) == 0);
		CHECK(pthread_create(&rt[i], NULL, reader, &w[i]) == 0);
		CHECK(pthread_create(&wt[i], NULL, writer, &w[i]) == 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		CHECK(pthread_join(wt[i], NULL) == 0);
		CHECK(pthread_join(rt[i], NULL) == 0);
		if (w[i].failed)
			FAIL("thread %d lost or reordered bytes", i);
	}
	if (esca_debugfs("contexts") < NTHREADS)
		FAIL("contexts %ld", esca_debugfs("contexts"));
	/* The main thread flushes thread 0's context: same process, allowed. */
	CHECK(pipe(p) == 0);
	entry_set(&w[0].t[0], SYS_write, p[1], (uintptr_t)"m", 1, 0);
	CHECK(esca_flush(w[0].fd, 0, 1) == 1 && w[0].t[0].result == 1);
	for (int i = 0; i < NTHREADS; i++)
		close(w[i].fd);
	expect_tables(0);
	return T_PASS;
}
