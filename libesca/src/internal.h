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
	unsigned uring_min_ops;	/* fewer ring ops than this run directly */
	bool adapt;		/* ESCA_ADAPT: batch only where it pays (measured) */
	bool flush_wait;	/* ESCA_FLUSH_WAIT: carry a flush to the next epoll wait */
	bool uring_sockopt;	/* ESCA_URING_SOCKOPT: setsockopt through the ring */
	unsigned uring_setup;	/* ESCA_URING_SETUP: ESCA_RING_* the ring may use */
	int write_timeout_ms;	/* bounded wait when completing a short write */
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

/* ---- real libc functions (resolved once, process-wide) ---------------- */

struct esca_real {
	int (*close)(int);
	int (*shutdown)(int, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*socket)(int, int, int);
	int (*socketpair)(int, int, int, int[2]);
	int (*pipe)(int[2]);
	int (*pipe2)(int[2], int);
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	off_t (*lseek)(int, off_t, int);
	ssize_t (*read)(int, void *, size_t);
	void (*closefrom)(int);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*execveat)(int, const char *, char *const[], char *const[], int);
	int (*fexecve)(int, char *const[], char *const[]);
};

extern struct esca_real esca_real;
void esca_resolve_real(void);

#define REAL(fn) (likely(esca_real.fn != NULL) ? esca_real.fn : (esca_resolve_real(), esca_real.fn))

/* ---- what libesca knows about each file descriptor (process-wide) ----- */

enum esca_fd_kind {
	ESCA_FD_UNKNOWN = 0,	/* not seen, or closed: validate with fstat */
	ESCA_FD_SOCKET,		/* a socket of unknown type */
	ESCA_FD_STREAM,		/* a SOCK_STREAM socket: writes may be merged */
	ESCA_FD_PIPE,
	ESCA_FD_FILE,		/* regular file, or opened by open(): no socket */
	ESCA_FD_OTHER,
	ESCA_FD_OWN,		/* libesca's own (device, ring): not the program's */
};

void esca_fd_init(void);
void esca_fd_set(int fd, enum esca_fd_kind kind);
/* What libesca knows of fd, without asking the kernel (UNKNOWN if nothing). */
enum esca_fd_kind esca_fd_peek(int fd);
/* Kind of fd, learning it with one fstat() the first time; -1 with errno
 * EBADF when fd is not open. */
int esca_fd_kind(int fd);
/* Forgets what is known of the fds in [first, last] (closed together). */
void esca_fd_forget_range(unsigned first, unsigned last);

/*
 * libesca's own fds (a /dev/esca context, an unregistered ring) live where
 * the program's never do: above its RLIMIT_NOFILE soft limit when the hard
 * limit leaves room, else at the top of the first 4096 (docs/libesca.md,
 * Transparency).  esca_own_fd() moves a freshly opened fd there (O_CLOEXEC)
 * and marks it; the program's close(), close_range(), closefrom(), dup2()
 * and dup3() see such an fd as not open.
 */
int esca_own_fd(int fd);
void esca_own_close(int fd);
static inline bool esca_fd_is_own(int fd);
/* close_range(2) that leaves libesca's own fds open. */
int esca_close_range_keep_own(unsigned first, unsigned last, int flags);

/* ---- reading the caller's memory without crashing --------------------- */

void esca_guard_install(void);
/* memcpy that returns -1 (EFAULT) instead of crashing on a bad pointer. */
int esca_copy(void *dst, const void *src, size_t n);

/* ---- per-thread state ------------------------------------------------- */

/* What libesca remembers of a deferred call beyond the ABI entry. */
struct esca_meta {
	uint8_t kind;		/* enum esca_call_kind */
	uint8_t fd_kind;	/* enum esca_fd_kind of fd when recorded */
	uint16_t pad;
	int fd;			/* the fd written / closed */
	int in_fd;		/* sendfile's source, else -1 */
	int sock_flags;		/* send flags */
	int64_t offset;		/* sendfile offset (-1: file position) */
	void *data;		/* payload copy in the arena (writes), or NULL */
	int64_t aux_result;	/* uring: result of the read half of a sendfile */
};

struct esca_thread {
	bool in_segment;
	const struct esca_backend_ops *ops;	/* this thread's backend; NULL: none */
	bool setup_failed;	/* no backend could be set up: don't retry */
	bool module_refused;	/* the module refused this thread: io_uring only */
	unsigned setup_retry;	/* no fd was free: segments until the next try */
	bool flushing;
	bool busy;		/* recording an entry: a signal handler's call goes direct */
	pid_t pid;		/* process that owns this state */
	unsigned n;		/* pending entries */
	unsigned cap;
	struct esca_entry *table;	/* page aligned, shared with the module */
	struct esca_meta *meta;
	char *arena;
	size_t arena_used;
	size_t arena_cap;
	uint64_t fd_filter[64];	/* fds with pending entries, hashed to 4096 bits */
	unsigned unpublished;	/* flushes since the counters were last published */
	/* adaptive batching: what this thread's segments look like */
	unsigned seg_calls;	/* calls recorded (or passed) in the current segment */
	unsigned seg_entries;	/* entries flushed for it (after merging) */
	uint32_t avg_calls;	/* moving averages, x16 */
	uint32_t avg_entries;
	unsigned seg_count;
	bool passing;		/* this segment passes its calls through
				 * (seg_calls counts them all the same) */
	/* measured cost per entry (ns, moving average) of a flush through the
	 * backend and of the same flush as direct calls, per batch-size class */
	struct {
		uint32_t backend, direct;
	} cost[5];
	unsigned adapt_flushes;
	/* carrying the flush to the next epoll wait (docs/libesca.md, Flush
	 * with the wait) */
	bool can_carry;		/* the backend runs a batch and a wait in one entry */
	bool await_wait;	/* batch_flush() ran; the next interposed call decides */
	bool carrying;		/* t->n entries were left for that call */
	unsigned wait_streak;	/* batch_flush() -> epoll wait seen in a row */
	uint64_t flush_stamp;	/* when batch_flush() ran (stamp units) */
	struct esca_stats st;	/* this thread's counters since its last publish */
	/* backend state */
	int module_fd;
	void *uring;		/* struct esca_uring * */
	struct esca_thread *next;	/* every thread's state (thread.c) */
};

extern __thread struct esca_thread *esca_self __attribute__((tls_model("initial-exec")));
struct esca_thread *esca_thread_setup(void);	/* creates on first use */
void esca_thread_fork_prepare(void);
void esca_thread_fork_parent(void);
void esca_thread_fork_child(void);
/* Before the program puts a file at fd, one of libesca's own fds. */
void esca_own_fd_evict(int fd);

/*
 * After batch_flush(), the first interposed call the thread makes decides
 * what happens to a batch left for the next epoll wait: an epoll wait takes
 * it into the kernel with it; any other interposed call runs it first
 * (esca_carry_break).  Every interposed entry point calls esca_touch() or
 * esca_segment(), which does.
 */
void esca_carry_break(struct esca_thread *t);

static inline void esca_touch(void)
{
	struct esca_thread *t = esca_self;

	if (t && unlikely(t->await_wait))
		esca_carry_break(t);
}

/* The thread's segment, when calls are to be recorded. */
static inline struct esca_thread *esca_segment(void)
{
	struct esca_thread *t = esca_self;

	if (!t)
		return NULL;
	if (unlikely(t->await_wait))
		esca_carry_break(t);
	return (t->in_segment && !t->flushing && !t->busy) ? t : NULL;
}

/* Before a call that goes to libc while a segment is open: pending entries
 * on fd or fd2 (-1: none) run first. */
void esca_direct_in_segment(struct esca_thread *t, int fd, int fd2);

static inline bool esca_fd_is_own(int fd)
{
	return esca_fd_peek(fd) == ESCA_FD_OWN;
}

static inline bool esca_fd_is_socket(int kind)
{
	return kind == ESCA_FD_SOCKET || kind == ESCA_FD_STREAM;
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
}

/* ---- flushing ---------------------------------------------------------- */

/* Runs all pending entries of t.  Returns the number run. */
int esca_flush_thread(struct esca_thread *t);
/*
 * Runs all pending entries of t, then the wait w, in one kernel entry where
 * the backend can (ops->flush_wait).  Returns true when the wait ran there
 * (its result, or -errno, in *res); false when it did not (the entries ran
 * all the same): the caller then makes the wait itself.
 */
bool esca_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res);
/* A timestamp for comparing durations on this thread (TSC on x86-64). */
uint64_t esca_stamp(void);
/* The next definition of a libc function (dlsym(RTLD_NEXT)); aborts
 * with a message when there is none. */
void *esca_real_next(const char *name);

/* Runs entry i directly with syscall(2) and finishes it. */
void esca_run_direct(struct esca_thread *t, unsigned i);
/* Checks the result of entry i (already run): completes short writes,
 * counts and reports errors.  Never loses bytes silently. */
void esca_finish_entry(struct esca_thread *t, unsigned i);

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
	void (*flush)(struct esca_thread *t);	/* runs and finishes t->table[0, t->n) */
	/* flush, then the wait w in the same kernel entry: true when the wait
	 * ran (result in *res); NULL where the backend cannot */
	bool (*flush_wait)(struct esca_thread *t, const struct esca_entry *w, long *res);
	int (*own_fd)(const struct esca_thread *t);	/* its fd among libesca's, or -1 */
	void (*fd_moved)(struct esca_thread *t, int fd);
};

extern const struct esca_backend_ops esca_module_ops, esca_uring_ops;
/* The table of backend b; NULL for off. */
const struct esca_backend_ops *esca_backend_ops(enum esca_backend b);
const char *esca_backend_name(enum esca_backend b);

int esca_module_probe(void);		/* 0 when /dev/esca is usable */
int esca_module_thread_init(struct esca_thread *t);
void esca_module_thread_fini(struct esca_thread *t, bool after_fork);
void esca_module_flush(struct esca_thread *t);

/* Whether a backend flush of about n entries was measured cheaper than
 * direct calls by more than recording costs (true while not measured). */
bool esca_batch_pays(struct esca_thread *t, unsigned n);
/* Whether the calling thread runs under seccomp (read at set-up only). */
bool esca_thread_seccomp(void);

/* ---- counters ---------------------------------------------------------- */

void esca_stats_init(void);
void esca_stats_publish(struct esca_thread *t);
void esca_stats_exit(void);
void esca_stats_after_fork(void);
/* Before an exec (failed: false), and after one that failed (true). */
void esca_stats_exec(pid_t pid, bool failed);

void esca_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define esca_debug(...) do { if (unlikely(esca_cfg.debug)) esca_log(__VA_ARGS__); } while (0)

#endif /* ESCA_INTERNAL_H */
