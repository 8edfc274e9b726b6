// SPDX-License-Identifier: MIT
/*
 * Per-thread state, the hooks, and what threads owe each other.
 *
 * Each thread that opens a segment gets its own table, metadata and payload
 * arena (mmap'd once, on its first batch_start()), and its own backend
 * context (an io_uring, or an open file of /dev/esca).  Nothing on the hot
 * path is shared between threads, and a single-threaded process takes no
 * atomic operation at all.
 *
 * Threads.  A call on an fd with a pending entry of another thread must
 * come after that entry, when the program ordered the two (a mutex, an fd
 * handed over): every entry tags its fd with its thread and batch
 * generation (esca_fd_tag()), and a call that finds another thread's tag of
 * a batch still pending runs that thread's batch first, from its own
 * thread, as plain system calls (esca_fd_foreign_slow()).  It may do so
 * only while that thread is outside libesca: each thread claims its own
 * table around every call that touches it (claim 1), another thread takes
 * it with claim 2.  A thread never waits for another while it holds its own
 * claim, so no two can wait for each other, and a thread blocked anywhere
 * (a mutex the other one holds) does not block the other: its batch is run
 * for it.
 *
 * Signal handlers.  A handler that interrupts libesca (busy) must not touch
 * the table: its calls on fds with pending entries queue in the thread's
 * signal queue (sq), and join the batch, in order, as soon as the
 * interrupted code is done; its other calls run at once.
 *
 * Lifetime rules:
 *   - fork(): the forking thread's pending entries run before the fork; the
 *     child starts outside any segment with an empty table, drops every
 *     thread state it inherited and never runs a parent's entry.
 *   - vfork(): the child runs with no thread state at all (vfork.S).
 *   - thread exit: a pthread key destructor runs the pending entries.
 *   - process exit (exit(), _exit(), abort()), exec: every thread's pending
 *     entries run first, and every held byte is sent (held.c).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread struct esca_thread *esca_self __attribute__((tls_model("initial-exec")));
__thread int esca_vfork_child __attribute__((tls_model("initial-exec")));
/* the other thread whose batch this one runs (run_other()) */
static __thread struct esca_thread *running_other __attribute__((tls_model("initial-exec")));
#define self esca_self
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/*
 * Every thread's state, for the cold paths that concern them all (fork,
 * exit, libesca's own fds) and, by slot, for other threads' calls.  States
 * are never unmapped: one that a thread left goes to the free list, so a
 * slot read by another thread always points at a state.
 */
#define ESCA_SLOTS	1024
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct esca_thread *threads, *free_states;
static struct esca_thread *slots[ESCA_SLOTS];
_Atomic unsigned esca_closes_elsewhere;

static void threads_add(struct esca_thread *t)
{
	unsigned s;

	pthread_mutex_lock(&threads_lock);
	t->next = threads;
	threads = t;
	for (s = 1; s < ESCA_SLOTS && slots[s]; s++)
		;
	t->slot = s < ESCA_SLOTS ? s : 0;
	if (t->slot)
		__atomic_store_n(&slots[s], t, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&threads_lock);
}

/* Takes t off the list and out of its slot (threads_lock held). */
static void threads_unlink_locked(struct esca_thread *t)
{
	struct esca_thread **pp;

	for (pp = &threads; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	if (t->slot)
		__atomic_store_n(&slots[t->slot], NULL, __ATOMIC_RELEASE);
}

/* t's state can be taken by a new thread (threads_lock held): only once
 * nothing of its thread's is left in it -- backend context, claim. */
static void threads_free_locked(struct esca_thread *t)
{
	t->next = free_states;
	free_states = t;
}

/* ---- claims ---------------------------------------------------------------- */

static void backoff(unsigned *spins)
{
	if (++*spins < 64)
		__builtin_ia32_pause();
	else
		sched_yield();
}

/* Takes t as `who` (1 its own thread, 2 another), however long it is held. */
static void claim_as(struct esca_thread *t, int who)
{
	unsigned spins = 0;
	int idle;

	for (;;) {
		idle = 0;
		if (atomic_compare_exchange_weak_explicit(&t->claim, &idle, who, memory_order_acquire,
							  memory_order_relaxed))
			return;
		backoff(&spins);
	}
}

/* Takes t for its own thread (busy is set): waits while another thread
 * runs its batch. */
static void claim_own(struct esca_thread *t)
{
	if (esca_multithreaded())
		claim_as(t, 1);
}

static void release_own(struct esca_thread *t)
{
	if (esca_multithreaded())
		atomic_store_explicit(&t->claim, 0, memory_order_release);
}

static void sq_drain(struct esca_thread *t);

/* Inside libesca on t, for its own thread: recording, flushing, held work. */
static void lock_own(struct esca_thread *t)
{
	t->busy = true;
	claim_own(t);
	if (unlikely(atomic_load_explicit(&t->sq_tail, memory_order_relaxed) != t->sq_head))
		sq_drain(t);
}

static void unlock_own(struct esca_thread *t)
{
	if (unlikely(atomic_load_explicit(&t->sq_tail, memory_order_relaxed) != t->sq_head))
		sq_drain(t);
	release_own(t);
	t->busy = false;
}

bool esca_claim_self(struct esca_thread *t)
{
	if (t->busy)
		return false;
	lock_own(t);
	return true;
}

void esca_release_self(struct esca_thread *t)
{
	unlock_own(t);
}

struct esca_thread *esca_enter(void)
{
	struct esca_thread *t = self;

	if (!t || t->busy)
		return NULL;
	if (!t->in_segment) {
		/* a segment that passes its calls through still counts them, so
		 * that batching resumes as soon as segments grow */
		if (t->passing)
			t->seg_calls++;
		return NULL;
	}
	lock_own(t);
	return t;
}

void esca_leave(struct esca_thread *t)
{
	unlock_own(t);
}

/*
 * How far o's own flush has come: its head and how many of its pending
 * entries have a final status (the module writes each one back as it
 * runs).  Read while o flushes; a change is all that matters.
 */
static uint64_t own_flush_progress(const struct esca_thread *o)
{
	unsigned head = __atomic_load_n(&o->head, __ATOMIC_RELAXED);
	unsigned n = __atomic_load_n(&o->n, __ATOMIC_RELAXED), done = 0;

	for (unsigned i = head; i < n && i < o->cap; i++) {
		uint32_t st = __atomic_load_n(&o->table[i].status, __ATOMIC_RELAXED);

		done += st != ESCA_ST_QUEUED && st != ESCA_ST_INFLIGHT && st != ESCA_ST_RUNNING;
	}
	return (uint64_t)head << 32 | done;
}

/*
 * Another thread's batch: o's pending entries of generation `gen` (6 bits)
 * run now, from this thread, unless o has run them meanwhile.  Never called
 * with the caller's own claim held.
 *
 * at_exit: the process is ending.  o may be blocked inside its own flush (a
 * send on a blocking socket whose peer reads nothing), where without
 * libesca it would be blocked in the call itself and the exit would end it
 * there.  Its flush is waited for as held bytes are (rule 5): until it
 * ends, or for ESCA_WRITE_TIMEOUT_MS without an entry finishing; then the
 * process ends with o where it is.
 */
static void run_other(struct esca_thread *o, uint32_t gen, bool at_exit)
{
	unsigned spins = 0;
	uint64_t seen = 0;
	int64_t quiet_since = 0, now;
	int idle;

	for (;;) {
		if ((atomic_load_explicit(&o->gen, memory_order_acquire) & 63) != gen)
			return;
		idle = 0;
		if (atomic_compare_exchange_weak_explicit(&o->claim, &idle, 2, memory_order_acquire,
							  memory_order_relaxed)) {
			bool done = true;

			running_other = o;
			if ((atomic_load_explicit(&o->gen, memory_order_relaxed) & 63) == gen &&
			    o->n != o->head)
				done = esca_flush_foreign(o);
			running_other = NULL;
			atomic_store_explicit(&o->claim, 0, memory_order_release);
			if (done)
				return;
		} else if (at_exit && spins >= 64 &&
			   atomic_load_explicit(&o->claim, memory_order_relaxed) == 1) {
			uint64_t p = own_flush_progress(o);

			now = esca_now_ms();
			if (!quiet_since || p != seen) {
				seen = p;
				quiet_since = now;
			} else if (now - quiet_since >= esca_cfg.write_timeout_ms) {
				esca_log("exit: a thread's flush has not moved for %d ms; the process "
					 "ends with it unfinished, as a blocked call would",
					 esca_cfg.write_timeout_ms);
				return;
			}
			esca_raw(SYS_nanosleep, (long)&(struct timespec){ .tv_nsec = 1000000 }, 0,
				 0, 0, 0, 0);
			continue;
		}
		backoff(&spins);
	}
}

static uint32_t tag_of(const struct esca_thread *t)
{
	return t->slot << 6 | (atomic_load_explicit(&t->gen, memory_order_relaxed) & 63);
}

void esca_fd_tag_slow(struct esca_thread *t, int fd)
{
	uint32_t tag = tag_of(t), w = esca_fdw(fd);

	if (w >> ESCA_FDW_TAG_SHIFT == tag)
		return;
	esca_fdw_clear(fd, ~0u << ESCA_FDW_TAG_SHIFT);
	esca_fdw_or(fd, tag << ESCA_FDW_TAG_SHIFT);
}

void esca_fd_foreign_slow(int fd, uint32_t w)
{
	uint32_t tag = w >> ESCA_FDW_TAG_SHIFT;
	struct esca_thread *o, *t = self;

	(void)fd;
	if ((t && t->busy) || running_other || esca_vfork_child || !(tag >> 6) ||
	    (tag >> 6) >= ESCA_SLOTS)
		return;
	o = __atomic_load_n(&slots[tag >> 6], __ATOMIC_ACQUIRE);
	if (!o || o == t)
		return;
	run_other(o, tag & 63, false);
}

/* ---- before a call with an effect outside the process ------------------------ */

void esca_before_effect_slow(struct esca_thread *t)
{
	int saved = errno;

	/* a signal handler that interrupted libesca: the table is not ours to
	 * touch; the handler's call goes ahead (docs/libesca.md) */
	if (!esca_claim_self(t))
		return;
	esca_flush_thread(t);
	esca_release_self(t);
	errno = saved;
}

void esca_before_new_fd_slow(struct esca_thread *t)
{
	struct esca_thread *o, *list[64];
	uint32_t gens[64];
	unsigned k = 0, i;
	int saved = errno;

	if (esca_vfork_child)
		return;
	if (t && t->closes)
		esca_before_effect_slow(t);
	if (!atomic_load_explicit(&esca_closes_elsewhere, memory_order_acquire) ||
	    (t && t->busy) || running_other || esca_vfork_child || !esca_multithreaded())
		goto out;
	/* a close pending in another thread: that thread's batch runs first
	 * (its close may have freed the number this call is to get) */
	pthread_mutex_lock(&threads_lock);
	for (o = threads; o && k < 64; o = o->next) {
		if (o != t && o->closes && o->slot) {
			list[k] = o;
			gens[k++] = atomic_load_explicit(&o->gen, memory_order_relaxed) & 63;
		}
	}
	pthread_mutex_unlock(&threads_lock);
	for (i = 0; i < k; i++)
		run_other(list[i], gens[i], false);
out:
	errno = saved;
}

/*
 * Every thread's batch, now: the process (or its image) ends.  The calling
 * thread's own entries first, then the others', each run from here.
 */
void esca_flush_all_threads(void)
{
	struct esca_thread *t = self, *o, *list[ESCA_SLOTS];
	uint32_t gens[ESCA_SLOTS];
	unsigned k = 0, i;

	if (esca_vfork_child)
		return;
	if (t && esca_claim_self(t)) {
		t->in_segment = false;
		esca_flush_thread(t);
		esca_release_self(t);
	}
	if (!esca_multithreaded() || (t && t->busy) || running_other)
		return;
	pthread_mutex_lock(&threads_lock);
	for (o = threads; o && k < ESCA_SLOTS; o = o->next) {
		if (o != t && o->slot && o->n != o->head) {
			list[k] = o;
			gens[k++] = atomic_load_explicit(&o->gen, memory_order_relaxed) & 63;
		}
	}
	pthread_mutex_unlock(&threads_lock);
	for (i = 0; i < k; i++)
		run_other(list[i], gens[i], true);
}

/* ---- the signal queue ---------------------------------------------------------- */

/*
 * A handler's call, while its thread is busy: e (with m) and len payload
 * bytes from data (copied) go to the queue.  False when it is full (the
 * call then runs at once).  Handlers may nest: slots and payload space are
 * taken with atomic adds, which a signal cannot split.
 */
bool esca_sq_push(struct esca_thread *t, const struct esca_entry *e, const struct esca_meta *m,
		  const void *data, size_t len)
{
	unsigned idx = atomic_load(&t->sq_tail), off;
	struct esca_sq_slot *s;

	do {
		if (idx - t->sq_head >= ESCA_SQ_SLOTS)
			return false;	/* full: not even a hole is taken */
	} while (!atomic_compare_exchange_weak(&t->sq_tail, &idx, idx + 1));
	s = &t->sq[idx % ESCA_SQ_SLOTS];
	off = atomic_fetch_add(&t->sq_arena_used, (unsigned)len);
	s->e = *e;
	s->m = *m;
	if (off + len > ESCA_SQ_ARENA || (len && esca_copy(t->sq_arena + off, data, len) < 0)) {
		s->e.nr = 0;	/* a hole: skipped by the drain */
		atomic_signal_fence(memory_order_release);
		s->ready = 1;
		return false;
	}
	s->data_off = off;
	s->data_len = (uint32_t)len;
	atomic_signal_fence(memory_order_release);
	s->ready = 1;
	return true;
}

/*
 * The queue's calls join the table, in order (t is busy and claimed).  Each
 * slot is taken before its call is recorded: recording may run the batch,
 * which must not take the queue again (draining).
 */
static void sq_drain(struct esca_thread *t)
{
	unsigned used;

	if (t->draining)
		return;
	t->draining = true;
	/* before a slot is taken: a handler then queues behind it */
	atomic_signal_fence(memory_order_seq_cst);
	while (t->sq_head != atomic_load_explicit(&t->sq_tail, memory_order_acquire)) {
		struct esca_sq_slot *s = &t->sq[t->sq_head % ESCA_SQ_SLOTS], q;

		if (!s->ready)
			break;	/* cannot happen: a handler finishes before we run */
		atomic_signal_fence(memory_order_acquire);
		q = *s;
		s->ready = 0;
		t->sq_head++;
		if (q.e.nr)
			esca_record_queued(t, &q.e, &q.m, t->sq_arena + q.data_off, q.data_len);
	}
	/* the payload space comes back once the queue is empty (a handler
	 * taking some meanwhile makes the exchange fail) */
	used = atomic_load(&t->sq_arena_used);
	if (atomic_load(&t->sq_tail) == t->sq_head)
		atomic_compare_exchange_strong(&t->sq_arena_used, &used, 0);
	atomic_signal_fence(memory_order_seq_cst);
	t->draining = false;
}

/* ---- lifetime ------------------------------------------------------------------- */

static void teardown(struct esca_thread *t, bool after_fork);
static void backend_thread_fini(struct esca_thread *t, bool after_fork);

static void thread_exit_cb(void *arg)
{
	struct esca_thread *t = arg;

	if (t && t == self) {
		lock_own(t);
		t->in_segment = false;
		esca_flush_thread(t);
		esca_stats_publish(t);
		unlock_own(t);
		/* no other thread may take it any more */
		lock_own(t);
		pthread_mutex_lock(&threads_lock);
		threads_unlink_locked(t);
		pthread_mutex_unlock(&threads_lock);
		/*
		 * The context is closed and the claim given up before the state
		 * can be reused: a new thread taking it first would have its own
		 * context unregistered and its claim dropped by this one.
		 */
		backend_thread_fini(t, false);
		self = NULL;
		t->busy = false;
		atomic_store_explicit(&t->claim, 0, memory_order_release);
		pthread_mutex_lock(&threads_lock);
		threads_free_locked(t);
		pthread_mutex_unlock(&threads_lock);
	}
}

static void make_key(void)
{
	pthread_key_create(&thread_key, thread_exit_cb);
}

/* fork(), in the parent: the forking thread's pending entries run once,
 * before the fork; the thread list stays whole across it. */
void esca_thread_fork_prepare(void)
{
	struct esca_thread *t = self;

	if (t && !t->busy && esca_claim_self(t)) {
		esca_flush_thread(t);
		esca_stats_publish(t);
		esca_release_self(t);
	}
	pthread_mutex_lock(&threads_lock);
	esca_held_fork_prepare();
	esca_fd_fork_prepare();
}

void esca_thread_fork_parent(void)
{
	esca_fd_fork_done();
	esca_held_fork_parent();
	pthread_mutex_unlock(&threads_lock);
	/* the child shares the open files now: their flags may change there */
	esca_fd_mark_all_shared();
}

/* Empties t: no entry, no segment, nothing queued (a forked child). */
static void reset_state(struct esca_thread *t)
{
	t->in_segment = false;
	t->passing = false;
	t->busy = false;
	t->flushing = false;
	t->n = t->head = 0;
	t->closes = 0;
	t->arena_used = 0;
	atomic_store(&t->claim, 0);
	atomic_store(&t->sq_tail, 0);
	atomic_store(&t->sq_arena_used, 0);
	t->sq_head = 0;
	atomic_fetch_add(&t->gen, 1);
	esca_fd_filter_clear(t);
	memset(&t->st, 0, sizeof(t->st));
}

/*
 * fork(), in the child.  Every thread state came along with the memory, and
 * every backend context with it: the parent's.  The other threads do not
 * exist here: their states go to the free list, their device fds are closed.
 * This thread starts outside any segment with an empty table; its context
 * is reopened lazily.  A parent's entry is never run here.
 */
void esca_thread_fork_child(void)
{
	struct esca_thread *t = self, *o, *next;

	esca_fd_fork_done();
	for (o = threads; o; o = next) {
		next = o->next;
		if (o != t) {
			backend_thread_fini(o, true);
			threads_unlink_locked(o);
			threads_free_locked(o);
		}
	}
	atomic_store(&esca_closes_elsewhere, 0);
	if (t) {
		reset_state(t);
		backend_thread_fini(t, true);
		t->setup_failed = false;
		t->module_refused = false;
		t->setup_retry = 0;
		t->pid = getpid();
	}
	pthread_mutex_unlock(&threads_lock);
	esca_fd_mark_all_shared();
}

/*
 * clone(): a child with its own copy of memory is a forked child (without
 * fork's handlers: this does their work); a child in this memory with
 * CLONE_VFORK runs with no thread state, as a vfork() child; a thread with
 * its own TLS (CLONE_SETTLS) has none to begin with.
 */
struct clone_start {
	int (*fn)(void *);
	void *arg;
};

static int clone_child(void *p)
{
	struct clone_start c = *(struct clone_start *)p;

	esca_thread_fork_child();
	esca_held_after_fork();
	esca_stats_after_fork();
	return c.fn(c.arg);
}

ESCA_API int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	struct clone_start c = { .fn = fn, .arg = arg };
	struct esca_thread *saved;
	void *ptid, *tls, *ctid;
	va_list ap;
	int r;

	va_start(ap, arg);
	ptid = va_arg(ap, void *);
	tls = va_arg(ap, void *);
	ctid = va_arg(ap, void *);
	va_end(ap);
	if (flags & CLONE_VM) {
		if (!(flags & CLONE_VFORK) || (flags & CLONE_SETTLS))
			return REAL(clone)(fn, stack, flags, arg, ptid, tls, ctid);
		saved = self;
		self = NULL;
		esca_vfork_child = 1;
		r = REAL(clone)(fn, stack, flags, arg, ptid, tls, ctid);
		esca_vfork_child = 0;
		self = saved;
		return r;
	}
	esca_thread_fork_prepare();
	r = REAL(clone)(clone_child, stack, flags, &c, ptid, tls, ctid);
	esca_thread_fork_parent();
	return r;
}

/* A new thread can see this one's effects: they happen first. */
ESCA_API int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
			    void *arg)
{
	esca_before_effect();
	return REAL(pthread_create)(th, attr, fn, arg);
}

/*
 * The program is about to put one of its files at fd (dup2, dup3), the
 * number of one of libesca's own fds: without libesca that number is free.
 * Ours moves away first and its owner is told.
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
		esca_held_fd_moved(fd, nfd);
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
	t->can_wait = false;
	t->can_open = false;
}

static struct esca_thread *new_state(void)
{
	struct esca_thread *t;

	pthread_mutex_lock(&threads_lock);
	t = free_states;
	if (t)
		free_states = t->next;
	pthread_mutex_unlock(&threads_lock);
	if (t) {
		uint32_t gen;
		struct esca_entry *table = t->table;
		struct esca_meta *meta = t->meta;
		char *arena = t->arena;
		struct esca_sq_slot *sq = t->sq;
		char *sq_arena = t->sq_arena;
		unsigned cap = t->cap;
		size_t arena_cap = t->arena_cap;
		size_t at = offsetof(struct esca_thread, claim), past = at + sizeof(t->claim);

		/*
		 * Another thread may still hold a pointer read from the slot the
		 * state had (run_other()): taken as that thread would take it, it
		 * is cleared around the claim, and the new generation makes the
		 * other thread's attempt end.
		 */
		claim_as(t, 2);
		gen = atomic_load(&t->gen) + 1;
		memset(t, 0, at);
		memset((char *)t + past, 0, sizeof(*t) - past);
		t->table = table;
		t->meta = meta;
		t->arena = arena;
		t->sq = sq;
		t->sq_arena = sq_arena;
		t->cap = cap;
		t->arena_cap = arena_cap;
		atomic_store_explicit(&t->gen, gen, memory_order_release);
		atomic_store_explicit(&t->claim, 0, memory_order_release);
		return t;
	}
	t = map_anon(page_round(sizeof(*t)));
	if (!t)
		return NULL;
	t->cap = esca_cfg.table_entries;
	t->table = map_anon(page_round(sizeof(struct esca_entry) * (t->cap + 1)));
	t->meta = map_anon(page_round(sizeof(struct esca_meta) * t->cap));
	t->arena_cap = esca_cfg.arena_bytes;
	t->arena = map_anon(t->arena_cap);
	t->sq = map_anon(page_round(sizeof(struct esca_sq_slot) * ESCA_SQ_SLOTS));
	t->sq_arena = map_anon(ESCA_SQ_ARENA);
	if (!t->table || !t->meta || !t->arena || !t->sq || !t->sq_arena) {
		esca_log("cannot map the per-thread table: %s; running without batching",
			 strerror(errno));
		teardown(t, false);
		return NULL;
	}
	return t;
}

struct esca_thread *esca_thread_setup(void)
{
	struct esca_thread *t = self;

	if (esca_vfork_child)
		return NULL;
	if (t) {
		if (unlikely(!t->ops && esca_cfg.backend != ESCA_BACKEND_OFF &&
			     !t->setup_failed && (!t->setup_retry || !--t->setup_retry)))
			t->ops = backend_thread_init(t);
		return t;
	}
	if (!atomic_load_explicit(&esca_initialized, memory_order_acquire))
		esca_init();
	pthread_once(&key_once, make_key);

	t = new_state();
	if (!t)
		return NULL;
	t->module_fd = -1;
	t->pid = getpid();
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
	if (t->sq_arena)
		munmap(t->sq_arena, ESCA_SQ_ARENA);
	if (t->sq)
		munmap(t->sq, page_round(sizeof(struct esca_sq_slot) * ESCA_SQ_SLOTS));
	if (t->arena)
		munmap(t->arena, t->arena_cap);
	if (t->meta)
		munmap(t->meta, page_round(sizeof(struct esca_meta) * t->cap));
	if (t->table)
		munmap(t->table, page_round(sizeof(struct esca_entry) * (t->cap + 1)));
	munmap(t, page_round(sizeof(*t)));
}

/* ---- adaptive batching -------------------------------------------------------- */

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

/* ---- the hooks ------------------------------------------------------------------ */

/*
 * The hooks leave errno as they found it: without libesca they do nothing,
 * so a program may not see errno change across them (a set-up that found
 * no free fd, a short write finished at flush ...).
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
	if (t->busy)
		return;		/* from a signal handler inside libesca */
	t->st.segments++;
	/* off: count segments only, every call passes through */
	if (esca_cfg.backend == ESCA_BACKEND_OFF)
		return;
	if (unlikely(!t->ops)) {
		t = setup_keep_errno();
		if (!t->ops)
			return;
	}
	/* in a multithreaded process, a thread without a slot cannot tag its
	 * fds for the others: it runs its calls directly */
	if (!worth_batching(t) || (!t->slot && esca_multithreaded())) {
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

/* Closes t's segment (t claimed): its averages learn from it. */
static void end_segment(struct esca_thread *t)
{
	if (t->in_segment) {
		t->in_segment = false;
		average(&t->avg_calls, t->seg_calls);
		average(&t->avg_entries, t->seg_entries);
	} else if (t->passing) {
		/* unrecorded, its calls count as entries too: a merge is only
		 * ever seen by a segment that records */
		t->passing = false;
		average(&t->avg_calls, t->seg_calls);
		average(&t->avg_entries, t->seg_calls);
	}
}

/* counters reach the shared struct every 32 flushes (and at fork, thread
 * exit and process exit): atomics cost more than a flush of one */
static void maybe_publish(struct esca_thread *t)
{
	if (++t->unpublished >= 32) {
		t->unpublished = 0;
		esca_stats_publish(t);
	}
}

ESCA_API int batch_flush(void)
{
	struct esca_thread *t = self;
	int n, saved;

	if (unlikely(!t) || t->busy)
		return 0;
	saved = errno;
	lock_own(t);
	n = esca_flush_thread(t);
	end_segment(t);
	maybe_publish(t);
	unlock_own(t);
	errno = saved;
	return n;
}

/* Kernel sigset size, as glibc passes it. */
#define ESCA_SIGSET_BYTES	8

ESCA_API int batch_flush_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	struct esca_thread *t = self;
	struct esca_entry w;
	bool ran = false;
	long res = 0;
	int saved;

	if (unlikely(!t) || t->busy)
		return epoll_wait(epfd, events, maxevents, timeout);
	saved = errno;
	lock_own(t);
	/* one kernel entry for the batch and the wait, where no other thread
	 * could find this one's entries pending through a long wait (its
	 * batch runs only when the wait returns) */
	if (t->n != t->head && t->can_wait && timeout != 0 && !esca_multithreaded()) {
		memset(&w, 0, sizeof(w));
		w.nr = SYS_epoll_wait;
		w.args[0] = (uint64_t)epfd;
		w.args[1] = (uint64_t)(uintptr_t)events;
		w.args[2] = (uint64_t)maxevents;
		w.args[3] = (uint64_t)(int64_t)timeout;
		w.args[5] = ESCA_SIGSET_BYTES;
		ran = esca_flush_wait(t, &w, &res);
		t->st.waits_carried += ran;
	} else {
		esca_flush_thread(t);
	}
	end_segment(t);
	maybe_publish(t);
	unlock_own(t);
	errno = saved;
	if (ran) {
		if (res < 0) {
			errno = (int)-res;
			return -1;
		}
		return (int)res;
	}
	return REAL(epoll_wait)(epfd, events, maxevents, timeout);
}

__attribute__((destructor)) static void esca_process_exit(void)
{
	struct esca_thread *t = self;

	esca_flush_all_threads();
	esca_held_drain_all();
	if (t && !esca_vfork_child)
		esca_stats_publish(t);
	esca_stats_exit();
}

void esca_sq_take(struct esca_thread *t)
{
	sq_drain(t);
}

/*
 * A signal handler that interrupted libesca on t leaves by a jump
 * (siglongjmp): the record it interrupted never committed, a flush it
 * interrupted is picked up by the next one (the table says what ran), a
 * batch of another thread it was running is given back, and the thread's
 * claim is released.
 */
void esca_thread_jumped_out(struct esca_thread *t)
{
	struct esca_thread *o = running_other;

	if (o) {
		running_other = NULL;
		o->flushing = false;
		atomic_store_explicit(&o->claim, 0, memory_order_release);
	}
	if (t && t->busy) {
		t->flushing = false;
		t->draining = false;
		release_own(t);
		t->busy = false;
	}
}
