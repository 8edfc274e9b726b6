/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * esca: internal interfaces between the module's files.
 */
#ifndef _ESCA_H
#define _ESCA_H

#include <linux/types.h>

#include <uapi/esca_abi.h>
#include "esca_compat.h"

/* Symbol resolution (esca_syms.c). */
int esca_syms_init(void);
esca_syscall_fn esca_syscall_handler(u32 nr);	/* allowlist: NULL if not on it */
esca_syscall_fn esca_wait_handler(u32 nr);	/* ESCA_WAIT_SYSCALLS: NULL if not one */
struct seq_file;
void esca_syms_show(struct seq_file *m);

/*
 * The batch executor (esca_flush.c): runs entries [first, first + count)
 * of the caller's table of nentries entries at user address table; with
 * wait, the last of them is a wait (ESCA_IOC_FLUSH_WAIT).
 */
long esca_flush_run(u64 table, u32 nentries, u32 first, u32 count, bool wait);

#endif /* _ESCA_H */
