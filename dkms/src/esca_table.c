// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: pinning a registered user table.
 *
 * The pages of the table are pinned (FOLL_LONGTERM, writable), charged to
 * the owner's RLIMIT_MEMLOCK like io_uring's registered buffers, and mapped
 * contiguously with vmap() so that a flush reads and writes entries without
 * a user-access fault path.  esca_pinned_pages counts them all (debugfs).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "esca.h"

atomic_t esca_pinned_pages = ATOMIC_INIT(0);

int esca_table_pin(u64 uaddr, u32 nentries, struct esca_table **out)
{
	unsigned long start = uaddr, len, first;
	struct esca_table *t;
	unsigned int npages;
	long pinned;
	int ret;

	if (uaddr != (unsigned long)uaddr || !nentries || nentries > ESCA_MAX_ENTRIES)
		return -EINVAL;
	if (start & (__alignof__(struct esca_entry) - 1))
		return -EINVAL;
	len = (unsigned long)nentries * sizeof(struct esca_entry);
	if (!access_ok(u64_to_user_ptr(uaddr), len))
		return -EFAULT;

	first = start & PAGE_MASK;
	npages = (PAGE_ALIGN(start + len) - first) >> PAGE_SHIFT;

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	t->pages = kvmalloc_array(npages, sizeof(*t->pages), GFP_KERNEL);
	if (!t->pages) {
		ret = -ENOMEM;
		goto err_free;
	}

	ret = account_locked_vm(current->mm, npages, true);
	if (ret)
		goto err_free_pages;

	pinned = pin_user_pages_fast(first, npages, FOLL_WRITE | FOLL_LONGTERM, t->pages);
	if (pinned != npages) {
		if (pinned > 0)
			unpin_user_pages(t->pages, pinned);
		/* Unmapped, read-only or not pinnable: -EFAULT from GUP. */
		ret = pinned < 0 ? (int)pinned : -EFAULT;
		goto err_unaccount;
	}

	t->vaddr = vmap(t->pages, npages, VM_MAP, PAGE_KERNEL);
	if (!t->vaddr) {
		unpin_user_pages(t->pages, npages);
		ret = -ENOMEM;
		goto err_unaccount;
	}

	mmgrab(current->mm);
	t->mm = current->mm;
	t->npages = npages;
	t->entries = t->vaddr + (start - first);
	t->nentries = nentries;
	atomic_add(npages, &esca_pinned_pages);
	*out = t;
	return 0;

err_unaccount:
	account_locked_vm(current->mm, npages, false);
err_free_pages:
	kvfree(t->pages);
err_free:
	kfree(t);
	return ret;
}

void esca_table_free(struct esca_table *t)
{
	if (!t)
		return;
	vunmap(t->vaddr);
	unpin_user_pages_dirty_lock(t->pages, t->npages, true);
	atomic_sub(t->npages, &esca_pinned_pages);
	account_locked_vm(t->mm, t->npages, false);
	mmdrop(t->mm);
	kvfree(t->pages);
	kfree(t);
}
