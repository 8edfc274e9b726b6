/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel API differences, kept out of the module's own files: those never
 * test LINUX_VERSION_CODE, they use the esca_* helpers below.  Newest kernel
 * first, each with the release that changed the API.
 */
#ifndef _ESCA_COMPAT_H
#define _ESCA_COMPAT_H

#include <linux/version.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
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

/* Whether a task runs under a seccomp filter (or strict mode). */
static inline bool esca_task_seccomp(struct task_struct *task)
{
#ifdef CONFIG_SECCOMP
	return task->seccomp.mode != SECCOMP_MODE_DISABLED;
#else
	return false;
#endif
}

#endif /* _ESCA_COMPAT_H */
