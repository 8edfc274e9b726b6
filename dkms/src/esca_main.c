// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: /dev/esca, a batch executor for the system calls libesca defers.
 *
 * One context per open file.  REGISTER binds one user table, and so the
 * context, to the calling process's address space; FLUSH runs entries of
 * that table (esca_flush.c), FLUSH_WAIT those and then a wait as the last
 * entry; UNREGISTER or the last close unbinds it.  The
 * table stays ordinary user memory: nothing is pinned, mapped into the
 * kernel or charged.  A process with another address space (a forked
 * child, a process the fd was passed to) is refused with -EBADFD.  Threads
 * of one process share the address space; libesca opens the device once
 * per thread, so each thread has its own context.
 *
 * Copyright (c) the ESCA for Debian authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/compat.h>
#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#include "esca.h"

struct esca_ctx {
	spinlock_t lock;		/* guards the binding below */
	struct mm_struct *mm;		/* bound address space (mmgrab), NULL when unbound */
	u64 table;			/* user address of the table */
	u32 nentries;
};

static atomic_t esca_contexts = ATOMIC_INIT(0);
static atomic_t esca_tables = ATOMIC_INIT(0);
static struct dentry *esca_debugfs;

static long esca_ioc_version(void __user *uarg)
{
	struct esca_version v = {
		.abi_version = ESCA_ABI_VERSION,
		.max_entries = ESCA_MAX_ENTRIES,
		.features = ESCA_FEATURE_FLUSH_WAIT | ESCA_FEATURE_FLUSH_OPEN,
	};

	if (copy_to_user(uarg, &v, sizeof(v)))
		return -EFAULT;
	return 0;
}

/* The table must be user memory the caller can read and write, now. */
static int esca_table_check(u64 uaddr, u32 nentries)
{
	void __user *p = u64_to_user_ptr(uaddr);
	size_t len = (size_t)nentries * sizeof(struct esca_entry);

	if (uaddr != (unsigned long)uaddr)
		return -EFAULT;
	if (uaddr & (__alignof__(struct esca_entry) - 1))
		return -EINVAL;
	if (!access_ok(p, len))
		return -EFAULT;
	/* Faults the pages in as a write would, without writing. */
	if (fault_in_safe_writeable(p, len))
		return -EFAULT;
	return 0;
}

static long esca_ioc_register(struct file *file, struct esca_ctx *ctx, void __user *uarg)
{
	struct esca_register reg;
	int ret;

	/*
	 * Who binds a table must be allowed to open the device, not only
	 * whoever opened this file: a descriptor passed to (or kept across a
	 * privilege drop by) a task outside the device's group runs nothing.
	 */
	ret = esca_current_may_open(file);
	if (ret)
		return ret;
	if (copy_from_user(&reg, uarg, sizeof(reg)))
		return -EFAULT;
	if (reg.abi_version != ESCA_ABI_VERSION)
		return -EPROTO;
	if (reg.reserved[0] || reg.reserved[1])
		return -EINVAL;
	if (!reg.nentries || reg.nentries > ESCA_MAX_ENTRIES)
		return -EINVAL;
	if (!current->mm)
		return -EINVAL;
	/*
	 * Every entry of a thread under seccomp would be refused, for good:
	 * say so once, so that user space does not pay a refused FLUSH per
	 * batch.  Tracing, syscall user dispatch and audit come and go; they
	 * are checked per entry.
	 */
	if (esca_current_seccomp())
		return -EPERM;
	ret = esca_table_check(reg.table, reg.nentries);
	if (ret)
		return ret;

	spin_lock(&ctx->lock);
	if (ctx->mm) {
		ret = ctx->mm == current->mm ? -EBUSY : -EBADFD;
	} else {
		mmgrab(current->mm);
		ctx->mm = current->mm;
		ctx->table = reg.table;
		ctx->nentries = reg.nentries;
		atomic_inc(&esca_tables);
	}
	spin_unlock(&ctx->lock);
	return ret;
}

static long esca_ioc_flush(struct esca_ctx *ctx, void __user *uarg, bool wait)
{
	struct esca_flush fl;
	u32 nentries;
	u64 table;
	long ret = 0;

	if (copy_from_user(&fl, uarg, sizeof(fl)))
		return -EFAULT;
	if (fl.reserved)
		return -EINVAL;

	/* A snapshot: no lock is held while the calls run. */
	spin_lock(&ctx->lock);
	if (!ctx->mm)
		ret = -ENXIO;
	else if (ctx->mm != current->mm)
		ret = -EBADFD;
	table = ctx->table;
	nentries = ctx->nentries;
	spin_unlock(&ctx->lock);
	if (ret)
		return ret;

	if (fl.first > nentries || fl.count > nentries - fl.first)
		return -EINVAL;
	if (wait && !fl.count)
		return -EINVAL;		/* no entry for the wait */
	return esca_flush_run(table, nentries, fl.first, fl.count, wait);
}

static long esca_ioc_unregister(struct esca_ctx *ctx)
{
	struct mm_struct *mm = NULL;
	long ret = 0;

	spin_lock(&ctx->lock);
	if (!ctx->mm) {
		ret = -ENXIO;
	} else if (ctx->mm != current->mm) {
		ret = -EBADFD;
	} else {
		mm = ctx->mm;
		ctx->mm = NULL;
	}
	spin_unlock(&ctx->lock);
	if (mm) {
		atomic_dec(&esca_tables);
		mmdrop(mm);
	}
	return ret;
}

static long esca_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct esca_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret;

	/* Entries hold x86-64 numbers and layouts: see esca_compat_ioctl(). */
	if (in_compat_syscall())
		return -ENOTTY;

	switch (cmd) {
	case ESCA_IOC_VERSION:
		return esca_ioc_version(uarg);
	case ESCA_IOC_REGISTER:
		return esca_ioc_register(file, ctx, uarg);
	case ESCA_IOC_FLUSH:
	case ESCA_IOC_FLUSH_WAIT:
		/*
		 * An entry may close this very fd.  close() may drop the last
		 * reference synchronously (Linux 6.12 does: __fput_sync) and
		 * ioctl(2) holds none in a single-threaded process: hold one,
		 * so that esca_release() runs after the flush, never inside.
		 */
		get_file(file);
		ret = esca_ioc_flush(ctx, uarg, cmd == ESCA_IOC_FLUSH_WAIT);
		fput(file);
		return ret;
	case ESCA_IOC_UNREGISTER:
		return esca_ioc_unregister(ctx);
	default:
		return -ENOTTY;
	}
}

/*
 * 32-bit (ia32) and x32 callers: entries hold x86-64 syscall numbers and
 * argument layouts, which such a task's own calls do not have.  Refused,
 * whatever the command.
 */
static long esca_compat_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return -ENOTTY;
}

static int esca_open(struct inode *inode, struct file *file)
{
	struct esca_ctx *ctx;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	spin_lock_init(&ctx->lock);
	file->private_data = ctx;
	atomic_inc(&esca_contexts);
	return stream_open(inode, file);
}

static int esca_release(struct inode *inode, struct file *file)
{
	struct esca_ctx *ctx = file->private_data;

	/*
	 * The last reference: no ioctl runs on this file, nothing else can
	 * reach ctx, and no lock is needed (an entry of another context's
	 * flush may be what closed it).
	 */
	if (ctx->mm) {
		atomic_dec(&esca_tables);
		mmdrop(ctx->mm);
	}
	kfree(ctx);
	atomic_dec(&esca_contexts);
	return 0;
}

static const struct file_operations esca_fops = {
	.owner = THIS_MODULE,
	.open = esca_open,
	.release = esca_release,
	.unlocked_ioctl = esca_ioctl,
	.compat_ioctl = esca_compat_ioctl,
	ESCA_FOPS_NO_LLSEEK
};

static struct miscdevice esca_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = ESCA_DEVICE_NAME,
	.fops = &esca_fops,
	/*
	 * root only, from the moment the node exists (devtmpfs, before udev;
	 * or where udev never runs).  The esca-dkms package's udev rule opens
	 * it to the group esca.
	 */
	.mode = 0600,
};

static int esca_symbols_show(struct seq_file *m, void *unused)
{
	esca_syms_show(m);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(esca_symbols);

static void esca_debugfs_init(void)
{
	esca_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_atomic_t("contexts", 0444, esca_debugfs, &esca_contexts);
	debugfs_create_atomic_t("tables", 0444, esca_debugfs, &esca_tables);
	/* Addresses: root only, as /proc/kallsyms shows them. */
	debugfs_create_file("symbols", 0400, esca_debugfs, NULL, &esca_symbols_fops);
}

static int __init esca_init(void)
{
	int ret;

	ret = esca_syms_init();
	if (ret)
		return ret;
	esca_debugfs_init();
	/* The device node last: it is usable as soon as it exists. */
	ret = misc_register(&esca_misc);
	if (ret) {
		pr_err("refusing to load: cannot register /dev/%s (%d)\n", ESCA_DEVICE_NAME, ret);
		debugfs_remove_recursive(esca_debugfs);
		return ret;
	}
	return 0;
}

static void __exit esca_exit(void)
{
	/* The device node first; open files pin the module, so none is left. */
	misc_deregister(&esca_misc);
	debugfs_remove_recursive(esca_debugfs);
}

module_init(esca_init);
module_exit(esca_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ESCA: run a batch of deferred system calls in one kernel entry");
MODULE_AUTHOR("ESCA for Debian");
MODULE_VERSION(ESCA_MODULE_VERSION);
