/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * esca: internal interfaces between the module's files.
 */
#ifndef _ESCA_H
#define _ESCA_H

#include <linux/types.h>
#include <linux/atomic.h>
#include <linux/mm_types.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>

#include <uapi/esca_abi.h>
#include "esca_compat.h"

/* A user table pinned and mapped into the kernel (esca_table.c). */
struct esca_table {
	struct mm_struct *mm;		/* its address space; locked_vm charged there */
	struct page **pages;
	unsigned int npages;
	void *vaddr;			/* vmap() of pages */
	struct esca_entry *entries;	/* vaddr + offset of the table in page 0 */
	u32 nentries;
};

int esca_table_pin(u64 uaddr, u32 nentries, struct esca_table **out);
void esca_table_free(struct esca_table *table);
extern atomic_t esca_pinned_pages;

/* Symbol resolution (esca_syms.c). */
int esca_syms_init(void);
esca_syscall_fn esca_syscall_handler(u32 nr);
const char *esca_syms_source(void);
bool esca_syms_kaslr_shifted(void);

/* The batch executor (esca_flush.c). */
u32 esca_flush_run(struct esca_table *table, u32 first, u32 count);

#endif /* _ESCA_H */
