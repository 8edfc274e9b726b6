// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: running a batch.
 *
 * The table is ordinary memory of the caller, read and written with user
 * accesses, one entry at a time: an entry is copied in when its turn comes
 * (what an earlier entry wrote into the table is seen, as by a later plain
 * call) and checked on the copy (user space rewriting it meanwhile cannot
 * change what was checked); its result and status are written back as soon
 * as it ran.  Nothing is pinned, so a table in any mapping behaves the same,
 * and a table unmapped under a flush is never a write to pages the process
 * no longer has: the flush stops before an entry it cannot read, and an
 * entry whose result cannot be written back ends it with -ENOTRECOVERABLE
 * (that entry ran, nothing after it did).
 *
 * Before each entry the module looks at what the syscall entry path would
 * do for the calling thread: under seccomp, ptrace, syscall user dispatch,
 * audit rules, enabled syscall tracepoints (unless the administrator chose
 * trace_bypass) or any entry work it does not know, the entry is refused
 * (left to user space, which makes it a plain system call), so filters,
 * tracers, audit and monitors see it exactly as without ESCA.  Any pending
 * signal stops the flush between entries, so that handlers, job control and
 * the freezer are not held up by a long batch.  After an entry, the flush
 * stops when the thread has work for its return to user space (a close's
 * final fput() before 6.6, cgroup throttling) or, with audit on, when the
 * entry slept: user space goes on with the rest from the next system call,
 * as plain calls would have.
 */
#include <linux/errno.h>
#include <linux/moduleparam.h>
#include <linux/nospec.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/ptrace.h>

#include "esca.h"

static bool trace_bypass;
module_param(trace_bypass, bool, 0644);
MODULE_PARM_DESC(trace_bypass,
		 "Run batched calls while raw_syscalls/syscalls tracepoints are enabled "
		 "(default N: such calls are refused and run as plain system calls, which "
		 "every syscall monitor sees; Y: monitors see them only as esca:esca_call)");

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
	if (esca_current_entry_path_needed(READ_ONCE(trace_bypass)))
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
 * Copies one entry in, with one user access; false if it cannot be read.
 * Word by word with unsafe_get_user(): copy_from_user() would move the 72
 * bytes with rep movsb, a loop per byte under QEMU TCG (where the suite
 * measures).
 */
static bool esca_read_entry(struct esca_entry *e, const struct esca_entry __user *ue)
{
	const u64 __user *from = (const u64 __user *)ue;
	u64 *to = (u64 *)e;
	unsigned int w;

	BUILD_BUG_ON(sizeof(*e) % sizeof(u64));
	if (!user_read_access_begin(ue, sizeof(*ue)))
		return false;
	for (w = 0; w < sizeof(*e) / sizeof(u64); w++)
		unsafe_get_user(to[w], &from[w], efault);
	user_read_access_end();
	return true;
efault:
	user_read_access_end();
	return false;
}

/*
 * Writes an entry's result and status back to the user table, the result
 * first: a reader that sees the status sees the result.
 */
static int esca_write_back(struct esca_entry __user *ue, const struct esca_entry *e)
{
	if (!user_write_access_begin(ue, sizeof(*ue)))
		return -EFAULT;
	unsafe_put_user(e->result, &ue->result, efault);
	unsafe_put_user(e->status, &ue->status, efault);
	user_write_access_end();
	return 0;
efault:
	user_write_access_end();
	return -EFAULT;
}

/*
 * After entry e ran: whether the flush ends here.  A failed or short call
 * (later entries on the file must not run ahead of its unsent bytes); work
 * for the return to user space, which must not wait behind a later entry or
 * the wait (a close's final fput() before 6.6, cgroup throttling: once per
 * call, as for plain calls); with audit on, an entry that slept (audit
 * rules added meanwhile apply from the next system call).
 */
static bool esca_entry_stops(const struct esca_entry *e, unsigned long switches)
{
	if (e->result < 0 || ((e->flags & ESCA_ENTRY_EXPECT) && e->result != (s64)e->expect))
		return true;
	if (esca_current_user_return_work())
		return true;
	return esca_current_audit_on() && esca_current_switches() != switches;
}

/*
 * With wait, the last entry is a wait (FLUSH_WAIT): it is reached only when
 * every entry before it ran and none stopped the flush, and like them only
 * when no signal is pending, so that user space, which then makes the wait
 * itself, sees the same order of handler and wait as with plain calls.  It
 * blocks like the plain call; a signal ends it with -EINTR, and a signal
 * mask of epoll_pwait is restored on the way back to user space, as at the
 * end of the plain call.
 *
 * Returns the number of entries processed; -EFAULT when the first cannot
 * be read (nothing ran); -ENOTRECOVERABLE when an entry ran and its result
 * could not be written back (user space must not run it again).
 */
long esca_flush_run(u64 table, u32 nentries, u32 first, u32 count, bool wait)
{
	struct esca_entry __user *entries = u64_to_user_ptr(table);
	/*
	 * Not zeroed on entry (CONFIG_INIT_STACK_ALL_ZERO would, on every
	 * flush): only what esca_read_entry() filled is looked at.
	 */
	struct esca_entry e __uninitialized;
	u32 i, end = first + count;
	struct pt_regs regs;

	memset(&regs, 0, sizeof(regs));
	trace_esca_flush(first, count);
	for (i = first; i < end; i++) {
		struct esca_entry __user *ue = &entries[array_index_nospec(i, nentries)];
		unsigned long switches;
		esca_syscall_fn fn;

		if (signal_pending(current))
			break;
		/* Whole entries only: the flush stops before one it cannot read. */
		if (!esca_read_entry(&e, ue))
			return i > first ? i - first : -EFAULT;
		fn = esca_entry_handler(&e, wait && i == end - 1);
		e.result = esca_entry_refusal(fn);
		if (e.result) {
			e.status = ESCA_ST_REFUSED;
			trace_esca_refused(i, e.nr, e.result);
			/* Not written back: not processed, user space runs it. */
			if (esca_write_back(ue, &e))
				break;
			return i - first + 1;
		}
		switches = esca_current_switches();
		e.result = esca_entry_run(&e, fn, &regs);
		e.status = ESCA_ST_DONE;
		trace_esca_call(i, &e, e.result);
		if (esca_write_back(ue, &e))
			return -ENOTRECOVERABLE;
		if (esca_entry_stops(&e, switches))
			return i - first + 1;
		cond_resched();
	}
	return i - first;
}
