/* SPDX-License-Identifier: (GPL-2.0-only WITH Linux-syscall-note) OR MIT */
/*
 * ESCA user/kernel ABI: the batch table shared by libesca and the esca
 * kernel module, and the ioctls of /dev/esca.
 *
 * This header is the single definition of the ABI.  It is included by the
 * module (dkms/) and by libesca (libesca/).  Every structure has fixed-width
 * types and explicit padding so that its layout is the same for every
 * compiler and architecture; sizes are checked at build time on both sides.
 *
 * Versioning: ESCA_ABI_VERSION changes whenever a structure, an ioctl number
 * or the meaning of a field changes in a way that user space of the previous
 * version would misread.  Additions that such user space already handles
 * correctly (a new refusal reason of a REFUSED entry, which it runs as a
 * direct call) keep the version.  User space reads the module's version with
 * ESCA_IOC_VERSION and passes its own in struct esca_register; the module
 * refuses a mismatch with -EPROTO.
 */
#ifndef _UAPI_ESCA_ABI_H
#define _UAPI_ESCA_ABI_H

#include <linux/errno.h>
#include <linux/types.h>
#ifdef __KERNEL__
#include <linux/ioctl.h>
#else
#include <sys/ioctl.h>
#endif

#define ESCA_ABI_VERSION	1
#define ESCA_DEVICE_NAME	"esca"
#define ESCA_DEVICE_PATH	"/dev/esca"

/* Upper bound on the entries of one registered table. */
#define ESCA_MAX_ENTRIES	4096

/* struct esca_entry.flags, set by user space. */
/*
 * The result must equal esca_entry.expect (a write that must transfer all of
 * its bytes).  Any other result stops the flush after this entry, like a
 * negative result does, so that later entries on the same file are not run
 * ahead of bytes that are still unsent.
 */
#define ESCA_ENTRY_EXPECT	(1U << 0)
#define ESCA_ENTRY_FLAGS_ALL	(ESCA_ENTRY_EXPECT)

/* struct esca_entry.status, written by the kernel. */
enum esca_entry_status {
	ESCA_ST_QUEUED = 0,	/* not run (yet): user space owns it */
	ESCA_ST_DONE = 1,	/* ran; result holds the return value */
	ESCA_ST_REFUSED = 2,	/* not run; result holds an ESCA_REFUSED_* reason */
};

/*
 * The result of an ESCA_ST_REFUSED entry: why the module did not run it.
 * The flush stops at a refused entry (it counts as processed); user space
 * runs it as a plain system call.
 *
 * ESCA_REFUSED_CALL: the number is not on the allowlist, or the flags are
 *	unknown.  Only this entry is concerned.
 * ESCA_REFUSED_SECCOMP: the calling thread runs under seccomp (any mode).
 *	That never ends for the thread: run this entry and the rest of the
 *	batch as plain system calls, and stop using the module on this thread
 *	(REGISTER refuses such a thread with -EPERM).
 * ESCA_REFUSED_ENTRY_PATH: the calling thread's system calls must pass
 *	the syscall entry path right now: it is ptrace syscall-traced,
 *	emulated or single-stepped, has syscall user dispatch on, a syscall
 *	tracepoint is enabled (unless the module's trace_bypass), audit has
 *	syscall rules, or there is entry work the module does not know.  Run
 *	this entry and the rest of the batch as plain system calls; later
 *	flushes may go through again.
 */
#define ESCA_REFUSED_CALL	(-EINVAL)
#define ESCA_REFUSED_SECCOMP	(-EPERM)
#define ESCA_REFUSED_ENTRY_PATH	(-EAGAIN)

/*
 * One deferred system call.  72 bytes.
 * args[] holds the raw syscall arguments (user pointers as integers).
 */
struct esca_entry {
	__u32 nr;		/* x86-64 syscall number */
	__u16 flags;		/* ESCA_ENTRY_* */
	__u16 status;		/* enum esca_entry_status */
	__u64 args[6];
	__u64 expect;		/* with ESCA_ENTRY_EXPECT: the full-success result */
	__s64 result;		/* return value, or -errno */
};

/* ESCA_IOC_VERSION: the module's ABI version, limits and features. */
struct esca_version {
	__u32 abi_version;
	__u32 max_entries;
	__u64 features;		/* ESCA_FEATURE_*; 0 from modules before them */
	__u64 reserved;
};

/*
 * struct esca_version.features.  A module that predates a feature wrote 0
 * in this (then reserved) field: user space of version 1 that does not find
 * a bit does without the feature.
 */
#define ESCA_FEATURE_FLUSH_WAIT	(1ULL << 0)	/* ESCA_IOC_FLUSH_WAIT */
#define ESCA_FEATURE_FLUSH_OPEN	(1ULL << 1)	/* openat as its last entry */

/*
 * ESCA_IOC_REGISTER: bind a table of the calling process to this open file.
 * The table stays ordinary memory of the process (nothing is pinned): any
 * mapping that is readable and writable will do.
 */
struct esca_register {
	__u64 table;		/* user address of struct esca_entry[nentries], 8-byte aligned */
	__u32 nentries;		/* 1 .. ESCA_MAX_ENTRIES */
	__u32 abi_version;	/* must be ESCA_ABI_VERSION */
	__u64 reserved[2];	/* must be zero */
};

/*
 * ESCA_IOC_FLUSH: run entries [first, first + count) in order.
 * Returns the number of entries processed (>= 0, a refused entry counts);
 * processing stops early after an entry that was refused, whose result is
 * negative or, with ESCA_ENTRY_EXPECT, differs from expect; and before an
 * entry when any signal is pending (so 0 is possible: nothing ran).  The
 * table is read and written with ordinary user accesses, one entry at a
 * time, each when its turn comes: when the entry at which the flush starts
 * cannot be read, FLUSH fails with -EFAULT (nothing ran).  When an entry
 * ran and its result cannot be written back, FLUSH fails with
 * -ENOTRECOVERABLE: the entries before it are DONE, that entry ran with an
 * unknown result (its status is still what user space left there), nothing
 * after it ran; user space must not run it again.
 */
struct esca_flush {
	__u32 first;
	__u32 count;
	__u64 reserved;		/* must be zero */
};

/*
 * ESCA_IOC_FLUSH_WAIT (struct esca_flush): FLUSH, whose last entry
 * (first + count - 1) is a call of ESCA_WAIT_SYSCALLS -- an epoll wait, or
 * the openat that must follow the batch's closes (it gets the number one of
 * them freed) -- : the entries before it run exactly as FLUSH runs them;
 * the last one runs only when all of them ran and none stopped the flush,
 * no signal is pending, and the thread may use the module (the refusal
 * rules of FLUSH apply to it too).  It blocks like the plain call (a signal
 * ends a wait with -EINTR) and its result (the number of events, the new
 * fd, or -errno) is the last entry's result.  Returns the number of entries
 * processed, count when the last one ran or was refused; count 0 (no last
 * entry) is -EINVAL.  One of these calls anywhere else (in FLUSH, or before
 * the last entry) and a last entry that is not one of them, or has flags,
 * are refused with ESCA_REFUSED_CALL.
 */
#define ESCA_IOC_MAGIC		0xE5
#define ESCA_IOC_VERSION	_IOR(ESCA_IOC_MAGIC, 0x00, struct esca_version)
#define ESCA_IOC_REGISTER	_IOW(ESCA_IOC_MAGIC, 0x01, struct esca_register)
#define ESCA_IOC_FLUSH		_IOW(ESCA_IOC_MAGIC, 0x02, struct esca_flush)
#define ESCA_IOC_UNREGISTER	_IO(ESCA_IOC_MAGIC, 0x03)
#define ESCA_IOC_FLUSH_WAIT	_IOW(ESCA_IOC_MAGIC, 0x04, struct esca_flush)

/*
 * The system calls libesca defers, and so the module's allowlist.  Numbers
 * are x86-64's; the module resolves each to its __x64_sys_* handler.
 */
#define ESCA_ALLOWED_SYSCALLS(X)	\
	X(1,   write)			\
	X(3,   close)			\
	X(20,  writev)			\
	X(40,  sendfile)		\
	X(44,  sendto)			\
	X(46,  sendmsg)			\
	X(48,  shutdown)		\
	X(54,  setsockopt)

/*
 * The calls ESCA_IOC_FLUSH_WAIT runs as its last entry (never in FLUSH):
 * the event loop's wait, and the open that follows closes of the batch
 * (libesca runs a pending close before a call that makes an fd, so that
 * the number is the one the program would get).  Their handlers are
 * resolved and validated like the allowlist's.
 */
#define ESCA_WAIT_SYSCALLS(X)		\
	X(232, epoll_wait)		\
	X(257, openat)			\
	X(281, epoll_pwait)		\
	X(441, epoll_pwait2)

#endif /* _UAPI_ESCA_ABI_H */
