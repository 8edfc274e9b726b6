// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: running a batch.
 *
 * The table is ordinary memory of the caller, read and written with user
 * accesses: each entry is copied in before it is checked (user space
 * rewriting it meanwhile cannot change what was checked), its result and
 * status are written back with put_user().  Nothing is pinned, so a table
 * in any mapping behaves the same, and a table unmapped under a flush is
 * -EFAULT, never a write to pages the process no longer has.
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

/* Why the entry may not run here (an ESCA_REFUSED_* reason), or 0. */
static long esca_entry_refusal(const struct esca_entry *e)
{
	if (esca_current_seccomp())
		return ESCA_REFUSED_SECCOMP;
	if (esca_current_entry_path_needed())
		return ESCA_REFUSED_ENTRY_PATH;
	if (!esca_syscall_handler(e->nr) || (e->flags & ~ESCA_ENTRY_FLAGS_ALL))
		return ESCA_REFUSED_CALL;
	return 0;
}

static long esca_entry_run(const struct esca_entry *e)
{
	esca_syscall_fn fn = esca_syscall_handler(e->nr);
	struct pt_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.orig_ax = e->nr;
	regs.ax = -ENOSYS;
	regs.di = e->args[0];
	regs.si = e->args[1];
	regs.dx = e->args[2];
	regs.r10 = e->args[3];
	regs.r8 = e->args[4];
	regs.r9 = e->args[5];
	return esca_user_result(fn(&regs));
}

long esca_flush_run(u64 table, u32 nentries, u32 first, u32 count)
{
	struct esca_entry __user *entries = u64_to_user_ptr(table);
	u32 i, done = 0;

	trace_esca_flush(first, count);
	for (i = first; i < first + count; i++) {
		struct esca_entry __user *ue = &entries[array_index_nospec(i, nentries)];
		struct esca_entry e;
		u16 status = ESCA_ST_DONE;
		long ret;

		if (signal_pending(current))
			break;
		if (copy_from_user(&e, ue, sizeof(e)))
			return done ? done : -EFAULT;

		ret = esca_entry_refusal(&e);
		if (ret) {
			status = ESCA_ST_REFUSED;
			trace_esca_refused(i, e.nr, ret);
		} else {
			ret = esca_entry_run(&e);
			trace_esca_call(i, &e, ret);
		}
		/* The result first: a reader that sees the status sees it. */
		if (put_user(ret, &ue->result) || put_user(status, &ue->status))
			return -EFAULT;
		done++;

		if (status != ESCA_ST_DONE || ret < 0 ||
		    ((e.flags & ESCA_ENTRY_EXPECT) && ret != (long)e.expect))
			break;
		cond_resched();
	}
	return done;
}
