// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: running a batch.
 *
 * The table is ordinary memory of the caller, read and written with user
 * accesses: entries are copied in, a chunk of ESCA_FLUSH_CHUNK at a time,
 * before they are checked (user space rewriting them meanwhile cannot change
 * what was checked); results and statuses of a chunk are written back when
 * it is done or the flush stops.  Nothing is pinned, so a table in any
 * mapping behaves the same, and a table unmapped under a flush is -EFAULT,
 * never a write to pages the process no longer has.
 *
 * Before each entry the module looks at what the syscall entry path would
 * do for the calling thread: under seccomp, ptrace syscall tracing or
 * emulation, syscall user dispatch or audit rules the entry is refused (left
 * to user space, which makes it a plain system call), so the filter, the
 * tracer and audit see it exactly as without ESCA.  Any pending signal stops
 * the flush between entries, so that handlers, job control and the freezer
 * are not held up by a long batch.
 */
#include <linux/errno.h>
#include <linux/nospec.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/ptrace.h>

#include "esca.h"

/* Entries read with one user access (576 bytes of stack). */
#define ESCA_FLUSH_CHUNK	8

#define CREATE_TRACE_POINTS
#include "esca_trace.h"

/*
 * A handler may return a restart code when a signal interrupted it; that
 * is for the syscall exit path, which does not look at entries.  User
 * space sees what a non-restarted call returns: -EINTR.
 */
static long esca_user_result(long ret)
{
	switch (ret) {
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
	case -ERESTART_RESTARTBLOCK:
		return -EINTR;
	default:
		return ret;
	}
}

/*
 * The handler entry e may run through: an allowlisted call, or for the
 * last entry of FLUSH_WAIT (wait_slot) a wait and nothing else.
 */
static esca_syscall_fn esca_entry_handler(const struct esca_entry *e, bool wait_slot)
{
	if (wait_slot)
		return e->flags ? NULL : esca_wait_handler(e->nr);
	if (e->flags & ~ESCA_ENTRY_FLAGS_ALL)
		return NULL;
	return esca_syscall_handler(e->nr);
}

/* Why the entry may not run here (an ESCA_REFUSED_* reason), or 0. */
static long esca_entry_refusal(esca_syscall_fn fn)
{
	if (esca_current_seccomp())
		return ESCA_REFUSED_SECCOMP;
	if (esca_current_entry_path_needed())
		return ESCA_REFUSED_ENTRY_PATH;
	if (!fn)
		return ESCA_REFUSED_CALL;
	return 0;
}

/*
 * regs: zeroed once per flush; the handlers take it const, so only the
 * fields set here differ from one entry to the next.
 */
static long esca_entry_run(const struct esca_entry *e, esca_syscall_fn fn,
			   struct pt_regs *regs)
{
	regs->orig_ax = e->nr;
	regs->ax = -ENOSYS;
	regs->di = e->args[0];
	regs->si = e->args[1];
	regs->dx = e->args[2];
	regs->r10 = e->args[3];
	regs->r8 = e->args[4];
	regs->r9 = e->args[5];
	return esca_user_result(fn(regs));
}

/*
 * Copies up to n whole entries in, with one user access; returns how many.
 * Word by word with unsafe_get_user(): an entry is 72 bytes, which
 * copy_from_user() would move with rep movsb, a loop per byte under QEMU
 * TCG (where the suite measures).
 */
static unsigned int esca_read_entries(struct esca_entry *e, const struct esca_entry __user *ue,
				      unsigned int n)
{
	unsigned int j, w;

	BUILD_BUG_ON(sizeof(*e) % sizeof(u64));
	if (!user_read_access_begin(ue, n * sizeof(*ue)))
		return 0;
	for (j = 0; j < n; j++) {
		const u64 __user *from = (const u64 __user *)&ue[j];
		u64 *to = (u64 *)&e[j];

		for (w = 0; w < sizeof(*e) / sizeof(u64); w++)
			unsafe_get_user(to[w], &from[w], efault);
	}
efault:
	user_read_access_end();
	return j;
}

/*
 * Writes result and status of the n entries that ran back to the user
 * table, the result first: a reader that sees the status sees the result.
 */
static int esca_write_back(struct esca_entry __user *ue, const struct esca_entry *e,
			   unsigned int n)
{
	unsigned int j;

	if (!n)
		return 0;
	if (!user_write_access_begin(ue, n * sizeof(*ue)))
		return -EFAULT;
	for (j = 0; j < n; j++) {
		unsafe_put_user(e[j].result, &ue[j].result, efault);
		unsafe_put_user(e[j].status, &ue[j].status, efault);
	}
	user_write_access_end();
	return 0;
efault:
	user_write_access_end();
	return -EFAULT;
}

/*
 * With wait, the last entry is a wait (FLUSH_WAIT): it is reached only when
 * every entry before it ran and none stopped the flush, and like them only
 * when no signal is pending, so that user space, which then makes the wait
 * itself, sees the same order of handler and wait as with plain calls.  It
 * blocks like the plain call; a signal ends it with -EINTR, and a signal
 * mask of epoll_pwait is restored on the way back to user space, as at the
 * end of the plain call.
 */
long esca_flush_run(u64 table, u32 nentries, u32 first, u32 count, bool wait)
{
	struct esca_entry __user *entries = u64_to_user_ptr(table);
	/*
	 * Not zeroed on entry (CONFIG_INIT_STACK_ALL_ZERO would, on every
	 * flush): only entries esca_read_entries() filled are looked at.
	 */
	struct esca_entry chunk[ESCA_FLUSH_CHUNK] __uninitialized;
	u32 i = first, end = first + count, done = 0;
	struct pt_regs regs;
	bool stop = false;

	memset(&regs, 0, sizeof(regs));
	trace_esca_flush(first, count);
	while (i < end && !stop) {
		struct esca_entry __user *uc = &entries[array_index_nospec(i, nentries)];
		u32 n = min_t(u32, end - i, ESCA_FLUSH_CHUNK), got, j;

		/* Whole entries only: the flush stops before one it cannot read. */
		got = esca_read_entries(chunk, uc, n);
		if (!got)
			return done ? done : -EFAULT;

		for (j = 0; j < got && !stop; j++) {
			struct esca_entry *e = &chunk[j];
			esca_syscall_fn fn;

			if (signal_pending(current))
				break;
			fn = esca_entry_handler(e, wait && i + j == end - 1);
			e->result = esca_entry_refusal(fn);
			if (e->result) {
				e->status = ESCA_ST_REFUSED;
				trace_esca_refused(i + j, e->nr, e->result);
				stop = true;
				continue;
			}
			e->result = esca_entry_run(e, fn, &regs);
			e->status = ESCA_ST_DONE;
			trace_esca_call(i + j, e, e->result);
			/*
			 * Work queued for the return to user space (a close's
			 * final fput() before 6.6) must not wait behind a
			 * later entry or the wait: stop and let it run; user
			 * space goes on with the rest.
			 */
			stop = e->result < 0 ||
			       ((e->flags & ESCA_ENTRY_EXPECT) && e->result != (s64)e->expect) ||
			       esca_current_task_work_pending();
			cond_resched();
		}
		if (esca_write_back(uc, chunk, j))
			return -EFAULT;
		done += j;
		i += j;
		if (j < got)	/* stopped inside the chunk */
			break;
	}
	return done;
}
