// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: /dev/esca, a batch executor for the system calls libesca defers.
 *
 * One context per open file.  REGISTER binds one user table, and so the
 * context, to the calling process's address space; FLUSH runs entries of
 * that table; UNREGISTER (or the last close, or the exit of the address
 * space, whichever comes first) unpins it.  A process with another address
 * space (a forked child, a process the fd was passed to) is refused with
 * -EBADFD.  Threads of one process share the address space; libesca opens
 * the device once per thread, so each thread has its own context.
 *
 * Copyright (c) the ESCA for Debian authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "esca.h"

struct esca_ctx {
	struct mutex lock;		/* serialises ioctls, guards mm */
	struct mm_struct *mm;		/* bound address space, NULL when unbound */
	struct esca_table *table;	/* NULL once unpinned (even while bound); xchg() */
	struct mmu_notifier mn;		/* unpins at the exit of mm */
};

static atomic_t esca_contexts = ATOMIC_INIT(0);
static struct dentry *esca_debugfs;

/*
 * Take the table away from the context, exactly once: the exit of the
 * address space (esca_mn_release) may race with the last close in another
 * process that was given the file.
 */
static struct esca_table *esca_ctx_take_table(struct esca_ctx *ctx)
{
	return xchg(&ctx->table, NULL);
}

/*
 * The address space is being torn down (its last user exited) or the
 * notifier is being unregistered: unpin now, even if some other process
 * still holds the file.
 */
static void esca_mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct esca_ctx *ctx = container_of(mn, struct esca_ctx, mn);

	esca_table_free(esca_ctx_take_table(ctx));
}

static const struct mmu_notifier_ops esca_mn_ops = {
	.release = esca_mn_release,
};

/* Called with ctx->lock held: the context's bound mm may be used by current. */
static int esca_ctx_check_owner(struct esca_ctx *ctx)
{
	if (!ctx->mm)
		return -ENXIO;
	if (ctx->mm != current->mm)
		return -EBADFD;
	return 0;
}

/*
 * Unbind: unpin the table, drop the mm.  Called with ctx->lock held (the
 * notifier's release callback does not take it).
 */
static void esca_ctx_unbind(struct esca_ctx *ctx)
{
	struct mm_struct *mm = ctx->mm;

	esca_table_free(esca_ctx_take_table(ctx));
	/* Waits for a concurrent esca_mn_release(), drops the mm reference. */
	mmu_notifier_unregister(&ctx->mn, mm);
	ctx->mm = NULL;
}

static long esca_ioc_version(void __user *uarg)
{
	struct esca_version v = {
		.abi_version = ESCA_ABI_VERSION,
		.max_entries = ESCA_MAX_ENTRIES,
	};

	if (copy_to_user(uarg, &v, sizeof(v)))
		return -EFAULT;
	return 0;
}

static long esca_ioc_register(struct esca_ctx *ctx, void __user *uarg)
{
	struct esca_register reg;
	struct esca_table *t;
	int ret;

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
	/* Entries would bypass the filter: a confined task may not use esca. */
	if (esca_task_seccomp(current))
		return -EPERM;

	if (mutex_lock_killable(&ctx->lock))
		return -EINTR;
	if (ctx->mm) {
		ret = ctx->mm == current->mm ? -EBUSY : -EBADFD;
		goto out_unlock;
	}
	ret = esca_table_pin(reg.table, reg.nentries, &t);
	if (ret)
		goto out_unlock;

	memset(&ctx->mn, 0, sizeof(ctx->mn));
	ctx->mn.ops = &esca_mn_ops;
	ret = mmu_notifier_register(&ctx->mn, current->mm);
	if (ret) {
		esca_table_free(t);
		goto out_unlock;
	}
	ctx->mm = current->mm;
	WRITE_ONCE(ctx->table, t);
out_unlock:
	mutex_unlock(&ctx->lock);
	return ret;
}

static long esca_ioc_flush(struct esca_ctx *ctx, void __user *uarg)
{
	struct esca_table *t;
	struct esca_flush fl;
	long ret;

	if (copy_from_user(&fl, uarg, sizeof(fl)))
		return -EFAULT;
	if (fl.reserved)
		return -EINVAL;
	/* A filter may have been installed since REGISTER. */
	if (esca_task_seccomp(current))
		return -EPERM;

	if (mutex_lock_killable(&ctx->lock))
		return -EINTR;
	ret = esca_ctx_check_owner(ctx);
	if (ret)
		goto out_unlock;
	/* Cannot go away meanwhile: only the exit of current's mm takes it. */
	t = READ_ONCE(ctx->table);
	if (!t) {
		ret = -ENXIO;
		goto out_unlock;
	}
	if (fl.first > t->nentries || fl.count > t->nentries - fl.first) {
		ret = -EINVAL;
		goto out_unlock;
	}
	ret = esca_flush_run(t, fl.first, fl.count);
out_unlock:
	mutex_unlock(&ctx->lock);
	return ret;
}

static long esca_ioc_unregister(struct esca_ctx *ctx)
{
	long ret;

	if (mutex_lock_killable(&ctx->lock))
		return -EINTR;
	ret = esca_ctx_check_owner(ctx);
	if (!ret)
		esca_ctx_unbind(ctx);
	mutex_unlock(&ctx->lock);
	return ret;
}

static long esca_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct esca_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret;

	switch (cmd) {
	case ESCA_IOC_VERSION:
		return esca_ioc_version(uarg);
	case ESCA_IOC_REGISTER:
		return esca_ioc_register(ctx, uarg);
	case ESCA_IOC_FLUSH:
		/*
		 * An entry may close this very fd.  close() may drop the last
		 * reference synchronously (Linux 6.12 does: __fput_sync) and
		 * ioctl(2) holds none in a single-threaded process: hold one,
		 * so that esca_release() runs after the flush, never inside.
		 */
		get_file(file);
		ret = esca_ioc_flush(ctx, uarg);
		fput(file);
		return ret;
	case ESCA_IOC_UNREGISTER:
		return esca_ioc_unregister(ctx);
	default:
		return -ENOTTY;
	}
}

static int esca_open(struct inode *inode, struct file *file)
{
	struct esca_ctx *ctx;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	mutex_init(&ctx->lock);
	file->private_data = ctx;
	atomic_inc(&esca_contexts);
	return stream_open(inode, file);
}

static int esca_release(struct inode *inode, struct file *file)
{
	struct esca_ctx *ctx = file->private_data;

	/* Last reference: no ioctl can be running on this file. */
	mutex_lock(&ctx->lock);
	if (ctx->mm)
		esca_ctx_unbind(ctx);
	mutex_unlock(&ctx->lock);
	mutex_destroy(&ctx->lock);
	kfree(ctx);
	atomic_dec(&esca_contexts);
	return 0;
}

static const struct file_operations esca_fops = {
	.owner = THIS_MODULE,
	.open = esca_open,
	.release = esca_release,
	.unlocked_ioctl = esca_ioctl,
	/* No compat_ioctl: entries hold x86-64 syscall numbers and layouts. */
	ESCA_FOPS_NO_LLSEEK
};

static struct miscdevice esca_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = ESCA_DEVICE_NAME,
	.fops = &esca_fops,
	/* Only calls any process may make anyway; pinning is charged to RLIMIT_MEMLOCK. */
	.mode = 0666,
};

static int esca_symbols_show(struct seq_file *m, void *unused)
{
	seq_printf(m, "source: %s\n", esca_syms_source());
	if (!strcmp(esca_syms_source(), "system-map"))
		seq_printf(m, "kaslr: %s\n", esca_syms_kaslr_shifted() ? "shifted" : "not shifted");
	else
		seq_puts(m, "kaslr: unknown\n");
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(esca_symbols);

static void esca_debugfs_init(void)
{
	esca_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_atomic_t("pinned_pages", 0444, esca_debugfs, &esca_pinned_pages);
	debugfs_create_atomic_t("contexts", 0444, esca_debugfs, &esca_contexts);
	debugfs_create_file("symbols", 0444, esca_debugfs, NULL, &esca_symbols_fops);
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
