/* SPDX-License-Identifier: MIT */
/*
 * esca.h - the hook API of libesca (Effective System Call Aggregation).
 *
 * A server calls esca_init() once in each worker process (after fork),
 * batch_start() before it handles the events returned by one epoll_wait(),
 * and batch_flush() after them -- or, in place of batch_flush() and the
 * next epoll_wait(), batch_flush_wait(), which sends the batch and waits in
 * one kernel entry.  Between the two, with libesca preloaded, close,
 * shutdown, write, writev, send, sendto, sendmsg, sendfile and the
 * TCP_CORK / TCP_NODELAY setsockopt calls of the calling thread on its own
 * connected TCP sockets (and closes of its own files) are recorded and run
 * together in one kernel entry (docs/libesca.md says exactly when).
 *
 * Servers reference the hooks as weak symbols, so the same binary runs
 * unchanged without libesca: the ESCA_* macros below call a hook only when
 * some loaded object defines it.  Define ESCA_STRONG_HOOKS before including
 * this header to link against libesca.so directly instead.
 */
#ifndef ESCA_H
#define ESCA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef ESCA_STRONG_HOOKS
#define ESCA_HOOK_ATTR
#else
#define ESCA_HOOK_ATTR __attribute__((weak))
#endif

/* Per-process set-up: picks the backend (ESCA_BACKEND).  Returns 0, or
 * -1 with errno set when the backend that was asked for is unusable (the
 * process then runs in pass-through mode). Safe to call more than once. */
int esca_init(void) ESCA_HOOK_ATTR;

/* Opens a batching segment for the calling thread. */
void batch_start(void) ESCA_HOOK_ATTR;

/* Runs every call recorded since batch_start() and closes the segment: when
 * it returns, every call has been made.  Returns the number of calls run,
 * or -1 with errno set. */
int batch_flush(void) ESCA_HOOK_ATTR;

struct epoll_event;

/* In place of batch_flush() followed by epoll_wait(epfd, events, maxevents,
 * timeout): runs every call recorded since batch_start(), closes the
 * segment, then waits, in one kernel entry where the backend can.  Returns
 * what epoll_wait() returns, with errno as it sets it. */
int batch_flush_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
	ESCA_HOOK_ATTR;

#define ESCA_INIT()		do { if (esca_init) esca_init(); } while (0)
#define ESCA_BATCH_START()	do { if (batch_start) batch_start(); } while (0)
#define ESCA_BATCH_FLUSH()	do { if (batch_flush) batch_flush(); } while (0)
/* epoll_wait() with the batch sent in the same kernel entry (<sys/epoll.h>
 * must be included where it is used). */
#define ESCA_BATCH_FLUSH_WAIT(epfd, events, maxevents, timeout)			\
	(batch_flush_wait ? batch_flush_wait(epfd, events, maxevents, timeout) :	\
			    epoll_wait(epfd, events, maxevents, timeout))

/*
 * Counters.  One struct esca_stats per process; with ESCA_STATS_DIR set it
 * lives in the file $ESCA_STATS_DIR/esca-<pid>.stats (mapped shared, removed
 * at exit) so that a reader can show it while the process runs.  Every field
 * is a 64-bit counter updated with relaxed atomic adds at each flush.
 */
#define ESCA_STATS_MAGIC	0x5354534143534500ULL	/* "\0ESCASTS" */
#define ESCA_STATS_VERSION	1

enum esca_call_kind {
	ESCA_CALL_CLOSE,
	ESCA_CALL_SHUTDOWN,
	ESCA_CALL_WRITE,
	ESCA_CALL_WRITEV,
	ESCA_CALL_SEND,		/* send, sendto */
	ESCA_CALL_SENDMSG,
	ESCA_CALL_SENDFILE,
	ESCA_CALL_SETSOCKOPT,
	ESCA_CALL_KINDS
};

struct esca_stats {
	uint64_t magic;			/* ESCA_STATS_MAGIC */
	uint32_t version;		/* ESCA_STATS_VERSION */
	uint32_t backend;		/* enum: 0 off, 1 module, 2 uring */
	uint64_t pid;
	uint64_t segments;		/* batch_start() calls */
	uint64_t deferred[ESCA_CALL_KINDS];
	uint64_t direct_in_segment;	/* intercepted in a segment but run at once */
	uint64_t flushes;		/* flushes that ran at least one call */
	uint64_t flushed_calls;		/* calls run by those flushes */
	uint64_t kernel_entries;	/* ioctl / io_uring_enter calls made by flushes */
	uint64_t arena_bytes;		/* payload bytes copied at record time */
	uint64_t short_writes_completed;
	uint64_t bytes_completed;	/* bytes sent to complete short writes */
	uint64_t errors_dropped;	/* peer-gone errors (EPIPE, ECONNRESET, ...) */
	uint64_t errors_other;		/* any other error of a deferred call */
	uint64_t bytes_lost;		/* bytes a deferred write could not send */
	uint64_t batched_flushes;	/* ESCA_ADAPT: flushes through the backend */
	uint64_t direct_flushes;	/* ESCA_ADAPT: flushes run as direct calls */
	uint64_t segments_passthrough;	/* segments not batched (ESCA_ADAPT: would not pay) */
	uint64_t direct_calls;		/* calls flushes ran as plain system calls */
	uint64_t waits_carried;		/* batch_flush_wait() waits that took the flush into the kernel */
	uint64_t writes_held;		/* deferred writes that came out short: the rest held, sent as the socket drains */
	uint64_t bytes_held;		/* bytes held that way */
	uint64_t resets;		/* connections reset: held bytes unread for ESCA_WRITE_TIMEOUT_MS, a file shorter than its sendfile */
};

#ifdef __cplusplus
}
#endif

#endif /* ESCA_H */
