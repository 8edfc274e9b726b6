/* SPDX-License-Identifier: MIT */
/*
 * libesca internals.  See docs/libesca.md for the rules this code keeps.
 */
#ifndef ESCA_INTERNAL_H
#define ESCA_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "esca.h"
#include "uapi/esca_abi.h"

#define ESCA_API __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

_Static_assert(sizeof(struct esca_entry) == 72, "esca_entry ABI size");
_Static_assert(sizeof(struct esca_register) == 32, "esca_register ABI size");
_Static_assert(sizeof(struct esca_flush) == 16, "esca_flush ABI size");

/* ---- process-wide configuration, written once by esca_init() ---------- */

enum esca_backend {
	ESCA_BACKEND_OFF = 0,
	ESCA_BACKEND_MODULE = 1,
	ESCA_BACKEND_URING = 2,
};

struct esca_config {
	enum esca_backend backend;
	unsigned table_entries;	/* entries per thread table */
	size_t arena_bytes;	/* payload arena per thread */
	size_t defer_max;	/* larger writes run at once */
	size_t sendfile_max;	/* larger sendfiles run at once (no copy involved) */
	size_t uring_copy_max;	/* sendfile emulated by read+write up to this */
	size_t held_max;	/* bytes held for slow readers, process-wide */
	unsigned uring_min_ops;	/* fewer ring ops than this run directly */
	bool adapt;		/* ESCA_ADAPT: batch only where it pays (measured) */
	bool flush_wait;	/* ESCA_FLUSH_WAIT: batch_flush_wait() in one kernel entry */
	bool uring_sockopt;	/* ESCA_URING_SOCKOPT: setsockopt through the ring */
	unsigned uring_setup;	/* ESCA_URING_SETUP: ESCA_RING_* the ring may use */
	int write_timeout_ms;	/* a held socket's peer reading nothing this long: reset */
	bool debug;
	bool stats;
};

/* ESCA_URING_SETUP: how the ring is set up (where the kernel allows) */
#define ESCA_RING_COOP		(1u << 0)	/* COOP_TASKRUN | SUBMIT_ALL (5.18/5.19) */
#define ESCA_RING_DEFER		(1u << 1)	/* SINGLE_ISSUER | DEFER_TASKRUN (6.1) */
#define ESCA_RING_REGISTER	(1u << 2)	/* ring fd registered, no fd (5.18) */
#define ESCA_RING_ALL		(ESCA_RING_COOP | ESCA_RING_DEFER | ESCA_RING_REGISTER)

extern struct esca_config esca_cfg;
extern char esca_stats_dir[256];	/* ESCA_STATS_DIR, read at load time */
extern _Atomic int esca_initialized;

/* ---- a system call without libc ---------------------------------------- */

/*
 * No errno, no thread-local data: the kernel's result (-errno on failure).
 * For the drainer thread (held.c), which shares its creator's thread
 * pointer, and for libesca's own calls that must not reach an interposer.
 */
static inline long esca_raw(long nr, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#else
#error "esca_raw: no system call sequence for this architecture"
#endif
}

/* ---- the next definition of an interposed function -------------------- */

/* dlsym(RTLD_NEXT, name); aborts with a message when there is none. */
void *esca_real_next(const char *name);

/* The next definition of name, resolved once (benign race: same value). */
#define REAL(name)								\
	({									\
		static __typeof__(&name) next_;					\
		__typeof__(&name) f_ = __atomic_load_n(&next_, __ATOMIC_RELAXED); \
		if (unlikely(!f_)) {						\
			f_ = (__typeof__(&name))esca_real_next(#name);		\
			__atomic_store_n(&next_, f_, __ATOMIC_RELAXED);		\
		}								\
		f_;								\
	})

/* ---- what libesca knows about each file descriptor (process-wide) ----- */

/*
 * One 32-bit word per fd, relaxed atomics, no lock.  Only what interposed
 * calls told libesca: an fd it did not see made is UNKNOWN and never
 * deferred on.
 */
enum esca_fd_kind {
	ESCA_FD_UNKNOWN = 0,	/* not made by an interposed call, or closed */
	ESCA_FD_TCP,		/* SOCK_STREAM of AF_INET / AF_INET6 */
	ESCA_FD_UNIX,		/* SOCK_STREAM of AF_UNIX */
	ESCA_FD_SOCKET,		/* any other socket */
	ESCA_FD_PIPE,
	ESCA_FD_FILE,		/* from open() and the like */
	ESCA_FD_OTHER,		/* eventfd, epoll, timerfd ... */
	ESCA_FD_OWN,		/* libesca's own (device, ring, epoll): not the program's */
};

#define ESCA_FDW_KIND		0x7u
/* made by an interposed call in this process and never aliased (dup,
 * fdopen, fdopendir): libesca sees every call that could close it */
#define ESCA_FDW_PRIVATE	(1u << 3)
#define ESCA_FDW_CONNECTED	(1u << 4)	/* a stream socket known connected */
#define ESCA_FDW_CONNECTING	(1u << 5)	/* connect() in progress */
#define ESCA_FDW_NONBLOCK	(1u << 6)	/* O_NONBLOCK known set */
#define ESCA_FDW_SHARED		(1u << 7)	/* another process may use the open file (fork) */
#define ESCA_FDW_BROKEN		(1u << 8)	/* the peer is gone: calls run directly */
#define ESCA_FDW_HELD		(1u << 9)	/* libesca holds bytes for it (held.c) */
#define ESCA_FDW_SLOW		(1u << 10)	/* once held: data calls run directly */
#define ESCA_FDW_CLOSING	(1u << 11)	/* its close is pending: EBADF to later calls */
#define ESCA_FDW_LISTEN		(1u << 12)	/* a listening socket: accepted ones are CONNECTED */
/* the thread that last recorded a call on it, and that thread's batch
 * generation then (thread.c: pending while that batch is) */
#define ESCA_FDW_TAG_SHIFT	16

void esca_fd_init(void);
/* the words, one per fd below esca_fd_nwords (fdtable.c) */
extern _Atomic uint32_t *esca_fd_words;
extern unsigned esca_fd_nwords;
/* fd's word; 0 (UNKNOWN) for a number libesca has no word for */
static inline uint32_t esca_fdw(int fd)
{
	if (likely(esca_fd_words) && fd >= 0 && (unsigned)fd < esca_fd_nwords)
		return atomic_load_explicit(&esca_fd_words[fd], memory_order_relaxed);
	return 0;
}
void esca_fdw_set(int fd, uint32_t w);
/* Sets / clears flags of fd's word (atomic read-modify-write). */
void esca_fdw_or(int fd, uint32_t flags);
void esca_fdw_clear(int fd, uint32_t flags);
/* fd was closed (its number is free): forgets it. */
void esca_fd_forget(int fd);
/* fd's pending close ran: forgets it unless the number is already another
 * thread's new fd. */
void esca_fd_closed(int fd);
/* Forgets fds [first, last] closed together. */
void esca_fd_forget_range(unsigned first, unsigned last);
/* Every fd loses PRIVATE knowledge of its flags' exclusivity (fork). */
void esca_fd_mark_all_shared(void);

static inline unsigned esca_fdw_kind(uint32_t w)
{
	return w & ESCA_FDW_KIND;
}

static inline bool esca_fdw_stream(uint32_t w)
{
	return esca_fdw_kind(w) == ESCA_FD_TCP || esca_fdw_kind(w) == ESCA_FD_UNIX;
}

static inline bool esca_fdw_socket(uint32_t w)
{
	return esca_fdw_stream(w) || esca_fdw_kind(w) == ESCA_FD_SOCKET;
}

/* A read or receive on this fd cannot block: the program set O_NONBLOCK
 * itself and no other process shares the open file. */
static inline bool esca_fdw_nonblocking(uint32_t w)
{
	return (w & (ESCA_FDW_NONBLOCK | ESCA_FDW_PRIVATE | ESCA_FDW_SHARED)) ==
	       (ESCA_FDW_NONBLOCK | ESCA_FDW_PRIVATE);
}

/*
 * libesca's own fds (a /dev/esca context, an unregistered ring, the epoll
 * set of held sockets) live where the program's never do: above its
 * RLIMIT_NOFILE soft limit when the hard limit leaves room, else at the top
 * of the first 4096 (docs/libesca.md, Transparency).  esca_own_fd() moves a
 * freshly opened fd there (O_CLOEXEC) and marks it; the program's close(),
 * close_range(), closefrom(), dup2() and dup3() see such an fd as not open.
 */
int esca_own_fd(int fd);
void esca_own_close(int fd);
/* fork(): esca_own_fd() is not running in another thread (prepare), and
 * may run again (done: in the parent and in the child) */
void esca_fd_fork_prepare(void);
void esca_fd_fork_done(void);
static inline bool esca_fd_is_own(int fd)
{
	return esca_fdw_kind(esca_fdw(fd)) == ESCA_FD_OWN;
}
/* close_range(2) that leaves libesca's own fds open. */
int esca_close_range_keep_own(unsigned first, unsigned last, int flags);

/* ---- reading the caller's memory without crashing --------------------- */

void esca_guard_install(void);
/* memcpy that returns -1 (EFAULT) instead of crashing on a bad pointer. */
int esca_copy(void *dst, const void *src, size_t n);

/* ---- per-thread state ------------------------------------------------- */

/* struct esca_entry.status values of libesca's own (the module writes
 * QUEUED, DONE and REFUSED only) */
#define ESCA_ST_RUNNING		0x100	/* a direct call on its way: it ran, result unknown */
#define ESCA_ST_INFLIGHT	0x101	/* in the ring: the CQE will say */
#define ESCA_ST_FINISHED	0x102	/* its result was taken care of */
#define ESCA_ST_LOST		0x103	/* the module ran it, its result was lost: never again */

/* What libesca remembers of a deferred call beyond the ABI entry. */
struct esca_meta {
	uint8_t kind;		/* enum esca_call_kind */
	uint8_t flags;		/* ESCA_META_* */
	uint16_t pad;
	uint32_t seq;		/* the thread's entry number (held.c: once per entry) */
	int fd;			/* the fd written / closed */
	int in_fd;		/* sendfile's source, else -1 */
	int sock_flags;		/* the program's send flags */
	int64_t offset;		/* sendfile offset (-1: file position) */
	void *data;		/* payload copy in the arena (writes), or NULL */
	uint64_t sent;		/* bytes of the entry known sent (completion) */
	int64_t aux_result;	/* uring: result of the read half of a sendfile */
};

/* esca_meta.flags */
#define ESCA_META_KERNEL_SIGPIPE	(1u << 0)	/* the way it ran raises SIGPIPE itself */
#define ESCA_META_DIRECT		(1u << 1)	/* the backend gave it back: a plain call */

/*
 * Calls a signal handler makes while the thread is inside libesca (recording
 * or flushing), on an fd with pending entries: they cannot touch the table
 * then, so they wait here, in order, and join the batch as soon as the
 * interrupted code is done (thread.c).
 */
#define ESCA_SQ_SLOTS	32
#define ESCA_SQ_ARENA	(64 * 1024)

struct esca_sq_slot {
	struct esca_entry e;
	struct esca_meta m;
	uint32_t data_off;	/* payload in sq_arena */
	uint32_t data_len;
	volatile uint8_t ready;
};

struct esca_thread {
	bool in_segment;
	bool busy;		/* inside libesca: a signal handler's calls queue (sq) */
	bool flushing;
	bool draining;		/* the signal queue is joining the table */
	const struct esca_backend_ops *ops;	/* this thread's backend; NULL: none */
	bool setup_failed;	/* no backend could be set up: don't retry */
	bool module_refused;	/* the module refused this thread: io_uring only */
	unsigned setup_retry;	/* no fd was free: segments until the next try */
	pid_t pid;		/* process that owns this state */
	unsigned head;		/* entries [0, head) are finished */
	unsigned n;		/* recorded entries */
	unsigned cap;
	unsigned closes;	/* close entries among [head, n) */
	uint32_t seq;		/* entries ever recorded */
	struct esca_entry *table;	/* page aligned, shared with the module */
	struct esca_meta *meta;
	char *arena;
	size_t arena_used;
	size_t arena_cap;
	uint64_t fd_filter[64];	/* fds with pending entries, hashed to 4096 bits */
	uint64_t fd_filter_used;	/* which of its words have bits set */
	unsigned unpublished;	/* flushes since the counters were last published */
	/* other threads (thread.c): this thread's number, its batch generation
	 * (pending entries belong to generation gen) and who may touch its
	 * table (0 idle, 1 this thread, 2 another thread flushing it) */
	unsigned slot;
	_Atomic uint32_t gen;
	_Atomic int claim;
	/* adaptive batching: what this thread's segments look like */
	unsigned seg_calls;	/* calls recorded (or passed) in the current segment */
	unsigned seg_entries;	/* entries flushed for it (after merging) */
	uint32_t avg_calls;	/* moving averages, x16 */
	uint32_t avg_entries;
	unsigned seg_count;
	bool passing;		/* this segment passes its calls through */
	struct {
		uint32_t backend, direct;
	} cost[5];
	unsigned adapt_flushes;
	bool can_wait;		/* the backend runs a batch and a wait in one entry */
	bool can_open;		/* ... and a batch and an openat (the module) */
	struct esca_stats st;	/* this thread's counters since its last publish */
	/* signal handlers' calls while busy or flushing */
	_Atomic unsigned sq_tail;
	unsigned sq_head;
	_Atomic unsigned sq_arena_used;
	struct esca_sq_slot *sq;
	char *sq_arena;
	/* backend state */
	int module_fd;
	void *uring;		/* struct esca_uring * */
	struct esca_thread *next;	/* every thread's state (thread.c) */
};

extern __thread struct esca_thread *esca_self __attribute__((tls_model("initial-exec")));
/* set in a vfork() child (vfork.S) while it runs in its parent's memory */
extern __thread int esca_vfork_child __attribute__((tls_model("initial-exec")));
struct esca_thread *esca_thread_setup(void);	/* creates on first use */
void esca_thread_fork_prepare(void);
void esca_thread_fork_parent(void);
void esca_thread_fork_child(void);
/* Before the program puts a file at fd, one of libesca's own fds. */
void esca_own_fd_evict(int fd);
/* Whether the process may have more than one thread. */
static inline bool esca_multithreaded(void)
{
	return !__libc_single_threaded;
}
/* Every thread's pending entries, now (exit, exec). */
void esca_flush_all_threads(void);
/* A signal handler that interrupted libesca on t jumps out of it. */
void esca_thread_jumped_out(struct esca_thread *t);
/* A signal handler's call while t is busy, queued (false: no room). */
bool esca_sq_push(struct esca_thread *t, const struct esca_entry *e, const struct esca_meta *m,
		  const void *data, size_t len);
/* The queue's calls into t's table, in order (t claimed). */
void esca_sq_take(struct esca_thread *t);
/* A queued call joins the table (interpose.c). */
bool esca_record_queued(struct esca_thread *t, const struct esca_entry *e,
			const struct esca_meta *m, const void *data, size_t len);

/*
 * Entering libesca: the calling thread's state, claimed for this call when
 * it is in a segment and may record (NULL otherwise: the call goes to libc).
 * A signal handler that interrupts a claimed call finds the thread busy.
 */
struct esca_thread *esca_enter(void);
void esca_leave(struct esca_thread *t);
/* Claims t for the calling thread around libesca's own work outside a
 * record (a flush before a call, a wait): false when t is busy (a signal
 * handler interrupted libesca). */
bool esca_claim_self(struct esca_thread *t);
void esca_release_self(struct esca_thread *t);

/* The calling thread's pending entries, when it has any. */
static inline struct esca_thread *esca_pending(void)
{
	struct esca_thread *t = esca_self;

	return t && (t->n != t->head ||
		     atomic_load_explicit(&t->sq_tail, memory_order_relaxed) != t->sq_head) ?
		       t : NULL;
}

/*
 * Before a call that is not deferred and has an effect outside the process
 * (a write-like call, a file change, a wait, process creation, a signal):
 * the calling thread's pending entries run first, so that effects keep
 * program order.  Cheap when nothing is pending.
 */
void esca_before_effect_slow(struct esca_thread *t);
static inline void esca_before_effect(void)
{
	struct esca_thread *t = esca_pending();

	if (unlikely(t != NULL))
		esca_before_effect_slow(t);
}

/* Before a call that makes an fd: a close pending in this thread (or, in a
 * multithreaded process, another one) runs first, so that the kernel hands
 * out the number it would without libesca. */
void esca_before_new_fd_slow(struct esca_thread *t);
extern _Atomic unsigned esca_closes_elsewhere;
static inline void esca_before_new_fd(void)
{
	struct esca_thread *t = esca_self;

	if (unlikely((t && t->closes) ||
		     atomic_load_explicit(&esca_closes_elsewhere, memory_order_relaxed)))
		esca_before_new_fd_slow(t);
}

/*
 * Before any call on fd: pending entries of another thread on it run first
 * (that thread's whole batch, in its order), so that a call ordered after
 * them by the program (a mutex, a hand-over) comes after them.
 */
void esca_fd_foreign_slow(int fd, uint32_t w);
static inline uint32_t esca_fd_touch(int fd)
{
	uint32_t w = esca_fdw(fd);

	if (unlikely(w >> ESCA_FDW_TAG_SHIFT) && esca_multithreaded())
		esca_fd_foreign_slow(fd, w);
	return w;
}

static inline unsigned esca_fd_hash(int fd)
{
	return (unsigned)fd & 4095u;
}

static inline bool esca_fd_maybe_pending(const struct esca_thread *t, int fd)
{
	unsigned h = esca_fd_hash(fd);

	return t->fd_filter[h >> 6] & (1ULL << (h & 63));
}

static inline void esca_fd_mark_pending(struct esca_thread *t, int fd)
{
	unsigned h = esca_fd_hash(fd);

	t->fd_filter[h >> 6] |= 1ULL << (h & 63);
	t->fd_filter_used |= 1ULL << (h >> 6);
}

/* Forgets every fd of the filter: only the words in use are cleared (a
 * flush of a few entries does not clear 512 bytes). */
static inline void esca_fd_filter_clear(struct esca_thread *t)
{
	for (uint64_t used = t->fd_filter_used; used; used &= used - 1)
		t->fd_filter[__builtin_ctzll(used)] = 0;
	t->fd_filter_used = 0;
}

/* Marks fd as carrying a pending entry of t (for other threads; only
 * they need it). */
void esca_fd_tag_slow(struct esca_thread *t, int fd);
static inline void esca_fd_tag(struct esca_thread *t, int fd)
{
	if (esca_multithreaded())
		esca_fd_tag_slow(t, fd);
}

/* ---- flushing ---------------------------------------------------------- */

/* Runs every pending entry of t (the caller has claimed t).  Returns the
 * number run. */
int esca_flush_thread(struct esca_thread *t);
/*
 * Runs every pending entry of t, then the call w (an epoll wait; with the
 * module, an openat), in one kernel entry where the backend can.  Returns
 * true when w ran there (its result, or -errno, in *res); false when it
 * did not (the entries ran all the same): the caller then makes it itself.
 */
bool esca_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res);
/* Runs t's pending entries from another thread (t claimed by it): plain
 * system calls, in order.  False when t left entries in its ring (only t
 * can reap them). */
bool esca_flush_foreign(struct esca_thread *t);
/* A timestamp for comparing durations on this thread (TSC on x86-64). */
uint64_t esca_stamp(void);

/* Runs entry i directly with syscall(2), leaving it DONE. */
void esca_run_direct(struct esca_thread *t, unsigned i);
/* Whether entry i (QUEUED) may be given to the backend now. */
bool esca_entry_runnable(const struct esca_thread *t, unsigned i);
/* CLOCK_MONOTONIC in milliseconds (through the vDSO: no kernel entry). */
int64_t esca_now_ms(void);

/*
 * Backends: one operations table each.  A thread's context is set up with
 * thread_init() on its first segment and given up with thread_fini() at
 * thread exit (after_fork: in a forked child, where the context is the
 * parent's and must only be dropped).
 */
struct esca_backend_ops {
	enum esca_backend id;
	const char *name;		/* as in ESCA_BACKEND */
	const char *what;		/* what is unusable, for the message */
	const char *fix;		/* and what to do about it */
	bool measured;			/* ESCA_ADAPT times its flushes against direct calls */
	int (*probe)(void);		/* 0 when usable here; sets nothing up */
	int (*thread_init)(struct esca_thread *t);
	void (*thread_fini)(struct esca_thread *t, bool after_fork);
	/*
	 * Runs QUEUED entries from `first` (which is runnable) on, in program
	 * order, in one kernel entry: each one it ran is DONE (or REFUSED) with
	 * its result; it stops after an entry that failed or came out short,
	 * and before one that is not runnable.  Returns how many entries it
	 * took, 0 when it could not run `first` (the caller runs it directly).
	 */
	unsigned (*run)(struct esca_thread *t, unsigned first);
	/* The same for every pending entry, then the wait w in the same kernel
	 * entry: true when the wait ran (result in *res).  NULL where the
	 * backend cannot. */
	bool (*run_wait)(struct esca_thread *t, const struct esca_entry *w, long *res);
	/* Entries left in flight by an interrupted flush (siglongjmp out of a
	 * handler): their results, now. */
	void (*settle)(struct esca_thread *t);
	int (*own_fd)(const struct esca_thread *t);	/* its fd among libesca's, or -1 */
	void (*fd_moved)(struct esca_thread *t, int fd);
};

extern const struct esca_backend_ops esca_module_ops, esca_uring_ops;
/* The table of backend b; NULL for off. */
const struct esca_backend_ops *esca_backend_ops(enum esca_backend b);
const char *esca_backend_name(enum esca_backend b);

/* Whether a backend flush of about n entries was measured cheaper than
 * direct calls by more than recording costs (true while not measured). */
bool esca_batch_pays(struct esca_thread *t, unsigned n);
/* Whether the calling thread runs under seccomp (read at set-up only). */
bool esca_thread_seccomp(void);

/* ---- what did not fit: bytes held for slow readers (held.c) ------------ */

/*
 * Entry i of t came out short (sent bytes of it went out) on a
 * non-blocking socket: the rest is held and sent as the socket drains.
 * Returns false when it could not be held (the connection was reset).
 */
bool esca_held_add(struct esca_thread *t, unsigned i, uint64_t sent);
/* Entry i of t concerns a socket with held bytes: it goes behind them
 * (data appended, a close or shutdown done when they are out).  False when
 * none are held any more (the drainer sent them): the entry runs as any. */
bool esca_held_behind(struct esca_thread *t, unsigned i);
/* A call of the program on a held socket: sends what it can; 0 when
 * nothing is held any more, else -1 with errno (EAGAIN: still full, or
 * the plain call's error). */
int esca_held_push_fd(int fd, int flags);
/* The program closes, shuts down, or replaces (dup2) a held socket. */
int esca_held_close(int fd);
int esca_held_shutdown(int fd, int how);
void esca_held_detach(int fd);
void esca_held_detach_range(unsigned first, unsigned last);
/* One of libesca's own fds moved (esca_own_fd_evict()). */
void esca_held_fd_moved(int from, int to);
/* A forked child: the parent's held bytes are not its own. */
void esca_held_after_fork(void);
/* Whether any bytes are held in this process. */
extern _Atomic unsigned esca_held_count;
extern _Atomic size_t esca_held_bytes;
/* At esca_init(): the drainer's epoll fd (the fd table grows there). */
void esca_held_init(void);
/* The drainer runs (started on first use): sends may be deferred. */
bool esca_drainer_ready(void);
/* fork(): the records are not changed across it. */
void esca_held_fork_prepare(void);
void esca_held_fork_parent(void);
/* Sends every held byte before the process image goes (exit, exec),
 * waiting at most ESCA_WRITE_TIMEOUT_MS of no progress. */
void esca_held_drain_all(void);
/* The connection on fd cannot be kept whole: reset it (TCP) or shut it
 * down (AF_UNIX). */
void esca_reset_connection(int fd, uint32_t w);

/* ---- counters ---------------------------------------------------------- */

void esca_stats_init(void);
void esca_stats_publish(struct esca_thread *t);
/* Adds n to the process's counter at offset (of struct esca_stats) at once:
 * for the drainer thread, which has no counters of its own. */
void esca_stats_add(size_t offset, uint64_t n);
void esca_stats_exit(void);
void esca_stats_after_fork(void);
/* Before an exec (failed: false), and after one that failed (true). */
void esca_stats_exec(pid_t pid, bool failed);

void esca_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define esca_debug(...) do { if (unlikely(esca_cfg.debug)) esca_log(__VA_ARGS__); } while (0)

#endif /* ESCA_INTERNAL_H */
