// SPDX-License-Identifier: MIT
/*
 * Per-thread state and the segment hooks.
 *
 * Each thread that opens a segment gets its own table, metadata and payload
 * arena (mmap'd once, on its first batch_start()), and its own backend
 * context (an io_uring, or an open file of /dev/esca).  Nothing on the hot
 * path is shared between threads.
 *
 * Lifetime rules:
 *   - fork(): the forking thread's pending entries are flushed before the
 *     fork (atfork prepare); the child drops its copy of every thread state
 *     and never flushes a parent's table (its backend context is reopened).
 *   - thread exit: a pthread key destructor flushes and frees the state
 *     (the thread's ring itself goes with the thread: backend_uring.c).
 *   - process exit: a destructor flushes the exiting thread's entries.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__thread struct esca_thread *esca_self __attribute__((tls_model("initial-exec")));
#define self esca_self
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/*
 * Every thread's state, for the cold paths that concern them all: fork (the
 * child drops the other threads' contexts) and the program putting a file
 * at the number of one of libesca's own fds.  The hot path never takes it.
 */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct esca_thread *threads;

static void threads_add(struct esca_thread *t)
{
	pthread_mutex_lock(&threads_lock);
	t->next = threads;
	threads = t;
	pthread_mutex_unlock(&threads_lock);
}

static void threads_remove(struct esca_thread *t)
{
	struct esca_thread **pp;

	pthread_mutex_lock(&threads_lock);
	for (pp = &threads; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&threads_lock);
}

static void teardown(struct esca_thread *t, bool after_fork);

static void thread_exit_cb(void *arg)
{
	struct esca_thread *t = arg;

	if (t && t == self) {
		esca_flush_thread(t);
		esca_stats_publish(t);
		threads_remove(t);
		teardown(t, false);
		self = NULL;
	}
}

static void make_key(void)
{
	pthread_key_create(&thread_key, thread_exit_cb);
}

static void backend_thread_fini(struct esca_thread *t, bool after_fork);

/* fork(), in the parent: the forking thread's pending entries run once,
 * before the fork; the thread list stays whole across it. */
void esca_thread_fork_prepare(void)
{
	struct esca_thread *t = self;

	if (t && t->n)
		esca_flush_thread(t);
	if (t)
		esca_stats_publish(t);
	pthread_mutex_lock(&threads_lock);
}

void esca_thread_fork_parent(void)
{
	pthread_mutex_unlock(&threads_lock);
}

/*
 * fork(), in the child.  Every thread state came along with the memory, and
 * every backend context with it: the parent's.  The other threads do not
 * exist here: their states go, their device fds are closed (the parent's
 * contexts stay the parent's; an inherited fd would keep them alive and
 * take a number).  This thread's state is reset and its context reopened
 * lazily; a parent's table is never flushed.
 */
void esca_thread_fork_child(void)
{
	struct esca_thread *t = self, *o, *next;

	for (o = threads; o; o = next) {
		next = o->next;
		if (o != t)
			teardown(o, true);
	}
	threads = t;
	if (t) {
		t->next = NULL;
		t->n = 0;
		t->arena_used = 0;
		memset(t->fd_filter, 0, sizeof(t->fd_filter));
		memset(&t->st, 0, sizeof(t->st));
		backend_thread_fini(t, true);
		t->setup_failed = false;
		t->module_refused = false;
		t->setup_retry = 0;
		t->pid = getpid();
	}
	pthread_mutex_unlock(&threads_lock);
}

/*
 * The program is about to put one of its files at fd (dup2, dup3), the
 * number of one of libesca's own fds: without libesca that number is free.
 * Ours moves away first and its thread is told.
 */
void esca_own_fd_evict(int fd)
{
	struct esca_thread *o;
	int nfd;

	pthread_mutex_lock(&threads_lock);
	if (esca_fd_is_own(fd)) {
		nfd = esca_own_fd(fcntl(fd, F_DUPFD_CLOEXEC, fd));
		esca_own_close(fd);
		for (o = threads; o; o = o->next)
			if (o->ops && o->ops->own_fd(o) == fd)
				o->ops->fd_moved(o, nfd);
	}
	pthread_mutex_unlock(&threads_lock);
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) & ~(pg - 1);
}

/* Set-up failures that mean "not now" rather than "not here": every fd
 * number the program may use is taken.  A ring or device fd would need one
 * of them, so the thread runs its calls directly and tries again later. */
static bool no_fd_free(int err)
{
	return err == -EMFILE || err == -ENFILE;
}

#define ESCA_SETUP_RETRY	64	/* segments before another try */

/*
 * Sets up the thread's backend: the configured one, and io_uring when the
 * module refuses this thread for another reason than seccomp (EPERM: then
 * the calls run directly, see esca_thread_seccomp()).
 * Returns the backend in use, NULL when none could be set up (for good, or
 * until t->setup_retry segments have passed).
 */
static const struct esca_backend_ops *backend_thread_init(struct esca_thread *t)
{
	const struct esca_backend_ops *ops = esca_backend_ops(esca_cfg.backend);
	int err;

	if (ops == &esca_module_ops && t->module_refused)
		ops = &esca_uring_ops;
	err = ops->thread_init(t);
	if (!err)
		return ops;
	if (no_fd_free(err))
		goto later;
	if (ops == &esca_module_ops && err == -EPERM) {
		/* under seccomp: io_uring would run calls the filter never sees */
		esca_log("thread %d: %s refused this thread's table: it runs under seccomp; "
			 "its calls run directly", (int)gettid(), ops->what);
		t->setup_failed = true;
		return NULL;
	}
	if (ops == &esca_module_ops) {
		t->module_refused = true;
		esca_log("thread %d: %s refused this thread's table (%s); trying io_uring",
			 (int)gettid(), ops->what, strerror(-err));
		return backend_thread_init(t);
	}
	esca_log("thread %d: %s set-up failed (%s); this thread runs its calls directly",
		 (int)gettid(), ops->what, strerror(-err));
	t->setup_failed = true;
	return NULL;
later:
	esca_debug("thread %d: no fd free (%s); calls run directly, set-up again in %d segments",
		   (int)gettid(), strerror(-err), ESCA_SETUP_RETRY);
	t->setup_retry = ESCA_SETUP_RETRY;
	return NULL;
}

static void backend_thread_fini(struct esca_thread *t, bool after_fork)
{
	if (t->ops)
		t->ops->thread_fini(t, after_fork);
	t->ops = NULL;
}

struct esca_thread *esca_thread_setup(void)
{
	struct esca_thread *t = self;

	if (t) {
		if (unlikely(!t->ops && esca_cfg.backend != ESCA_BACKEND_OFF &&
			     !t->setup_failed && (!t->setup_retry || !--t->setup_retry)))
			t->ops = backend_thread_init(t);
		return t;
	}
	if (!atomic_load_explicit(&esca_initialized, memory_order_acquire))
		esca_init();
	pthread_once(&key_once, make_key);

	t = map_anon(page_round(sizeof(*t)));
	if (!t)
		return NULL;
	t->cap = esca_cfg.table_entries;
	t->table = map_anon(page_round(sizeof(struct esca_entry) * (t->cap + 1)));
	t->meta = map_anon(page_round(sizeof(struct esca_meta) * t->cap));
	t->arena_cap = esca_cfg.arena_bytes;
	t->arena = map_anon(t->arena_cap);
	t->module_fd = -1;
	t->pid = getpid();
	if (!t->table || !t->meta || !t->arena) {
		esca_log("cannot map the per-thread table: %s; running without batching",
			 strerror(errno));
		teardown(t, false);
		return NULL;
	}
	threads_add(t);
	if (esca_cfg.backend != ESCA_BACKEND_OFF)
		t->ops = backend_thread_init(t);
	self = t;
	pthread_setspecific(thread_key, t);
	return t;
}

static void teardown(struct esca_thread *t, bool after_fork)
{
	backend_thread_fini(t, after_fork);
	if (t->arena)
		munmap(t->arena, t->arena_cap);
	if (t->meta)
		munmap(t->meta, page_round(sizeof(struct esca_meta) * t->cap));
	if (t->table)
		munmap(t->table, page_round(sizeof(struct esca_entry) * (t->cap + 1)));
	munmap(t, page_round(sizeof(*t)));
}

static void average(uint32_t *avg, unsigned sample)
{
	int64_t x = (int64_t)sample * 16;

	*avg = (uint32_t)((int64_t)*avg + (x - (int64_t)*avg) / 8);
}

/*
 * Whether this segment should record its calls (ESCA_ADAPT, default on).
 * Batching costs the recording of each call; it pays when calls merge
 * (writes to one socket), or when a flush of the usual size was measured
 * cheaper than the same calls made directly (flush.c).  Otherwise the
 * segment passes its calls through, and one segment in 64 still records,
 * to follow changes of the workload.  A segment that passes its calls
 * through counts them into both averages (as calls, and as entries: it
 * cannot see merges), so that a thread whose segments grow batches again
 * within a few segments, not at a sample: the sample is one segment in
 * 64, and a loop of two segments, one of them nearly always empty (lighttpd's
 * job queue, then its events), had its samples all land on the empty one.
 */
static bool worth_batching(struct esca_thread *t)
{
	uint32_t calls = t->avg_calls, entries = t->avg_entries;

	if (!esca_cfg.adapt || t->seg_count++ < 64 || (t->seg_count & 63) == 0)
		return true;
	if (calls * 4 > entries * 5)
		return true;		/* merging saves a quarter of the calls */
	if (entries < 2 * 16)
		return false;		/* nothing to batch a call with */
	/* one ioctl for the batch: measured cheaper wherever it was measured
	 * with the mechanism forced (docs/module.md) */
	if (!t->ops->measured)
		return true;
	return esca_batch_pays(t, (entries + 8) / 16);
}

/*
 * The hooks leave errno as they found it: without libesca they do nothing,
 * so a program may not see errno change across them (a set-up that found
 * no free fd, a short write completed at flush ...).
 */
static struct esca_thread *setup_keep_errno(void)
{
	int saved = errno;
	struct esca_thread *t = esca_thread_setup();

	errno = saved;
	return t;
}

ESCA_API void batch_start(void)
{
	struct esca_thread *t = self;

	if (unlikely(!t)) {
		t = setup_keep_errno();
		if (!t)
			return;
	}
	t->st.segments++;
	/* off: count segments only, every call passes through */
	if (esca_cfg.backend == ESCA_BACKEND_OFF)
		return;
	if (unlikely(!t->ops)) {
		t = setup_keep_errno();
		if (!t->ops)
			return;
	}
	if (!worth_batching(t)) {
		t->st.segments_passthrough++;
		t->passing = true;
		t->seg_calls = 0;
		return;
	}
	t->passing = false;
	t->seg_calls = 0;
	t->seg_entries = 0;
	t->in_segment = true;
}

/*
 * batch_flush() leaves the batch to the thread's next epoll wait (which
 * takes it into the kernel with it) once the thread has shown, this many
 * times in a row, that its next interposed call after batch_flush() is an
 * epoll wait, made within ESCA_CARRY_CYCLES (docs/libesca.md, Flush with
 * the wait).
 */
#define ESCA_CARRY_STREAK	8

ESCA_API int batch_flush(void)
{
	struct esca_thread *t = self;
	int n, saved;

	if (unlikely(!t))
		return 0;
	n = 0;
	if (t->in_segment) {
		t->in_segment = false;
		if (t->n && t->can_carry && t->wait_streak >= ESCA_CARRY_STREAK) {
			t->carrying = true;
			n = (int)t->n;
		} else if (t->n) {
			saved = errno;
			n = esca_flush_thread(t);
			errno = saved;
		}
		if (t->can_carry) {
			t->await_wait = true;
			t->flush_stamp = esca_stamp();
		}
		average(&t->avg_calls, t->seg_calls);
		average(&t->avg_entries, t->seg_entries);
	} else if (t->passing) {
		/* unrecorded, its calls count as entries too: a merge is only
		 * ever seen by a segment that records */
		t->passing = false;
		average(&t->avg_calls, t->seg_calls);
		average(&t->avg_entries, t->seg_calls);
	}
	/* counters reach the shared struct every 32 flushes (and at fork,
	 * thread exit and process exit): atomics cost more than a flush of one */
	if (++t->unpublished >= 32) {
		t->unpublished = 0;
		esca_stats_publish(t);
	}
	return n;
}

/*
 * An interposed call other than an epoll wait came first after
 * batch_flush(): the pattern is broken, and a batch left for the wait runs
 * now, before that call, as it would have at batch_flush().  Not from a
 * signal handler that interrupted libesca itself (flushing, busy: the
 * handler's calls go direct, as in a segment), nor from a vfork() child,
 * which must not run its parent's calls.
 */
void esca_carry_break(struct esca_thread *t)
{
	int saved;

	if (t->flushing || t->busy || (t->carrying && t->pid != getpid()))
		return;
	t->await_wait = false;
	t->wait_streak = 0;
	if (!t->carrying)
		return;
	saved = errno;
	esca_flush_thread(t);
	errno = saved;
}

__attribute__((destructor)) static void esca_process_exit(void)
{
	struct esca_thread *t = self;

	if (t) {
		t->in_segment = false;
		if (t->n)
			esca_flush_thread(t);
		esca_stats_publish(t);
	}
	esca_stats_exit();
}
