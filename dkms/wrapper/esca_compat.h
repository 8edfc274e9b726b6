/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel API differences, kept out of the module's own files: those never
 * test LINUX_VERSION_CODE, they use the esca_* helpers below.  Newest kernel
 * first, each with the release that changed the API.
 */
#ifndef _ESCA_COMPAT_H
#define _ESCA_COMPAT_H

#include <linux/version.h>
#include <linux/audit.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/task_work.h>
#include <linux/thread_info.h>
#include <asm/cpufeature.h>
#include <asm/syscall.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "esca needs Linux 6.1 or later (Debian 12's kernels are 6.1 and 6.12)"
#endif

#ifndef CONFIG_X86_64
#error "esca runs x86-64 system calls: it builds for x86-64 kernels only"
#endif

/*
 * Linux 6.12 removed no_llseek (stream_open() clearing FMODE_LSEEK is
 * enough there); before it, file_operations named it explicitly.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#define ESCA_FOPS_NO_LLSEEK
#else
#define ESCA_FOPS_NO_LLSEEK	.llseek = no_llseek,
#endif

/*
 * The type of a sys_call_table slot: since Linux 4.17 on x86-64 every slot
 * points at an __x64_sys_* wrapper taking the saved registers.
 */
typedef sys_call_ptr_t esca_syscall_fn;

/*
 * Indirect Branch Tracking (Linux 5.18+, CONFIG_X86_KERNEL_IBT): an indirect
 * call must land on ENDBR64.  Functions the kernel never calls indirectly
 * may have had theirs sealed at boot.
 */
#define ESCA_ENDBR64_INSN	0xfa1e0ff3U	/* f3 0f 1e fa */

static inline bool esca_ibt_enforced(void)
{
#ifdef CONFIG_X86_KERNEL_IBT
	return cpu_feature_enabled(X86_FEATURE_IBT);
#else
	return false;
#endif
}

/*
 * What the syscall entry path would do for the calling thread besides
 * calling the handler.  Since Linux 5.11 (CONFIG_GENERIC_ENTRY, which x86
 * always selects) the entry code reads it from the thread's syscall_work
 * bits; the module reads the same bits, so it sees exactly what a plain
 * system call made at that moment would see:
 *
 *  - SECCOMP: strict mode or a filter (also one installed by another
 *    thread with SECCOMP_FILTER_FLAG_TSYNC); never cleared;
 *  - SYSCALL_TRACEPOINT: a raw_syscalls or syscalls tracepoint is enabled
 *    (perf trace, a BPF monitor): set on every thread of the system;
 *  - SYSCALL_TRACE, SYSCALL_EMU: a ptrace tracer wants syscall stops
 *    (PTRACE_SYSCALL) or emulates the calls (PTRACE_SYSEMU);
 *  - SYSCALL_USER_DISPATCH: prctl(PR_SET_SYSCALL_USER_DISPATCH) is on;
 *  - SYSCALL_EXIT_TRAP: ptrace single-steps the thread (a trap after
 *    every call);
 *  - SYSCALL_AUDIT: the thread has an audit context; it records system
 *    calls only while audit is enabled and has rules (a non-dummy context:
 *    the flag is set at each syscall entry, but only while audit is
 *    enabled, so a context is not "dummy" after audit was switched off);
 *  - any bit a later kernel adds (7.x: SYSCALL_RSEQ_SLICE) is work the
 *    module does not know, so it needs the entry path.
 */
#ifndef SYSCALL_WORK_SECCOMP
#error "esca reads a thread's syscall entry work from syscall_work (CONFIG_GENERIC_ENTRY)"
#endif

static inline unsigned long esca_current_syscall_work(void)
{
	return READ_ONCE(current_thread_info()->syscall_work);
}

/* The calling thread runs under seccomp (any mode). */
static inline bool esca_current_seccomp(void)
{
	return esca_current_syscall_work() & SYSCALL_WORK_SECCOMP;
}

/*
 * The calling thread's system calls must pass the entry path now: any
 * syscall work but seccomp (answered above), audit without rules and, when
 * tracepoints_ok, enabled syscall tracepoints.
 */
static inline bool esca_current_entry_path_needed(bool tracepoints_ok)
{
	unsigned long work = esca_current_syscall_work();
	unsigned long harmless = SYSCALL_WORK_SECCOMP | SYSCALL_WORK_SYSCALL_AUDIT;

	if (tracepoints_ok)
		harmless |= SYSCALL_WORK_SYSCALL_TRACEPOINT;
	if (work & ~harmless)
		return true;
	return (work & SYSCALL_WORK_SYSCALL_AUDIT) && audit_enabled && !audit_dummy_context();
}

/*
 * Audit may start recording the calling thread's calls: it has an audit
 * context and audit is on.  Whether it has rules is decided at syscall
 * entry (the context is "dummy" without), so rules added while a call of
 * the flush slept apply only from the next system call.
 */
static inline bool esca_current_audit_on(void)
{
	return (esca_current_syscall_work() & SYSCALL_WORK_SYSCALL_AUDIT) && audit_enabled;
}

/* Context switches of the calling thread so far: it slept when this moved. */
static inline unsigned long esca_current_switches(void)
{
	return current->nvcsw + current->nivcsw;
}

/*
 * Work the calling thread has queued for its return to user space, which a
 * plain call would have had done before the next one:
 *  - task work before Linux 6.6: close(2) leaves the final fput() of a
 *    file there (the FIN of a socket, EOF at the other end of a pipe,
 *    flock release, leaving epoll interest lists), so a flush that went on
 *    to block after such a call -- in a later entry, or in the wait of
 *    FLUSH_WAIT -- would hold all of that back until it returned.  From
 *    6.6 close(2) releases the file itself (__fput_sync()), and the task
 *    work a flush meets is the scheduler's (mm_cid compaction, queued from
 *    the tick since 6.4): no reason to end it;
 *  - cgroup throttling: a charge over memory.high (memcg_nr_pages_over_high,
 *    paid in mem_cgroup_handle_over_high()) or a blkcg I/O limit
 *    (blkcg_maybe_throttle_current(); Linux 6.2 made the queue it names a
 *    gendisk).
 * Not TIF_NOTIFY_RESUME itself: before 6.19 rseq sets it on every
 * preemption, which is no reason to end a flush either.
 */
static inline bool esca_current_user_return_work(void)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 6, 0)
	if (task_work_pending(current))
		return true;
#endif
#ifdef CONFIG_MEMCG
	if (READ_ONCE(current->memcg_nr_pages_over_high))
		return true;
#endif
#ifdef CONFIG_BLK_CGROUP
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	if (READ_ONCE(current->throttle_disk))
		return true;
#else
	if (READ_ONCE(current->throttle_queue))
		return true;
#endif
#endif
	return false;
}

/*
 * Whether the calling task may open file's inode for reading and writing
 * now (the check open(2) made for whoever opened it).  Linux 6.3 passes
 * the mount's idmap where 6.1 passed its user namespace.
 */
static inline int esca_current_may_open(struct file *file)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	return inode_permission(file_mnt_idmap(file), file_inode(file), MAY_READ | MAY_WRITE);
#else
	return inode_permission(file_mnt_user_ns(file), file_inode(file), MAY_READ | MAY_WRITE);
#endif
}

#endif /* _ESCA_COMPAT_H */
