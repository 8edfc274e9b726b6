// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: running a batch.
 *
 * Each entry is copied out of the shared table before it is checked, so
 * that user space rewriting it meanwhile cannot change what was checked.
 * Then the call runs through its sys_call_table slot with a pt_regs built
 * from the entry, as the syscall entry code would have built it.
 */
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <asm/ptrace.h>

#include "esca.h"

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

static long esca_entry_run(const struct esca_entry *e, bool *refused)
{
	esca_syscall_fn fn = esca_syscall_handler(e->nr);
	struct pt_regs regs;

	*refused = !fn || (e->flags & ~ESCA_ENTRY_FLAGS_ALL);
	if (*refused)
		return -EINVAL;

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

u32 esca_flush_run(struct esca_table *t, u32 first, u32 count)
{
	u32 i, done = 0;

	for (i = first; i < first + count; i++) {
		struct esca_entry *shared = &t->entries[i];
		struct esca_entry e;
		bool refused;
		long ret;

		if (fatal_signal_pending(current))
			break;
		memcpy(&e, shared, sizeof(e));
		barrier();

		ret = esca_entry_run(&e, &refused);
		WRITE_ONCE(shared->result, ret);
		WRITE_ONCE(shared->status, refused ? ESCA_ST_REFUSED : ESCA_ST_DONE);
		done++;

		if (ret < 0 || ((e.flags & ESCA_ENTRY_EXPECT) && ret != (long)e.expect))
			break;
		cond_resched();
	}
	return done;
}
