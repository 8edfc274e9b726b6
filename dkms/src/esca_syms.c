// SPDX-License-Identifier: GPL-2.0-only
/*
 * esca: where the system calls are.
 *
 * The module runs each allowed call through its slot of sys_call_table (a
 * pointer to an __x64_sys_* wrapper; slots are indirect-call targets, so
 * this is IBT-safe).  Neither the table nor the wrappers are exported, so:
 *
 *  1. the build's symbols (scripts/esca-symbols.sh writes them into
 *     generated/esca_symbols.h): from the kernel's own image, whose kallsyms
 *     tables scripts/esca_image_symbols.py reads and checks, or from a real
 *     System.map; corrected for KASLR at load time with the runtime address
 *     of kfree, which the module can take;
 *  2. only where the build found neither, and never in a kernel built with
 *     CONFIG_X86_KERNEL_IBT (which seals kallsyms_lookup_name's ENDBR64 at
 *     boot), kallsyms_lookup_name, whose address a kprobe reveals.
 *
 * Either way, every allowed slot of the table must hold the handler resolved
 * for it; if not, the module refuses to load with one line saying why.
 * The table is only ever read.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/seq_file.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>

#include "esca.h"

#if !__has_include("esca_symbols.h")
#error "generated/esca_symbols.h is missing: build with the module's Kbuild (it runs scripts/esca-symbols.sh)"
#endif
#include "esca_symbols.h"
#if !defined(ESCA_SYMBOLS_FORMAT) || ESCA_SYMBOLS_FORMAT != 2 || \
	!defined(ESCA_SYMBOLS_COMPLETE) || !defined(ESCA_SYMBOLS_HAVE_MAP) || \
	!defined(ESCA_SYMBOLS_RELEASE) || !defined(ESCA_SYMBOLS_SOURCE)
#error "generated/esca_symbols.h is malformed: delete it and rebuild (scripts/esca-symbols.sh writes it)"
#endif

static char *symbols = "auto";
module_param(symbols, charp, 0444);
MODULE_PARM_DESC(symbols,
		 "where to find sys_call_table: auto (the build's symbols, else kprobe), map (the build's symbols only), kprobe");

/* Syscall numbers of the allowlist are all below this. */
#define ESCA_SLOTS	64

struct esca_allowed {
	u32 nr;
	const char *name;
};

/*
 * Every call whose handler the module resolves: the allowlist, then the
 * waits of FLUSH_WAIT (esca_allowed[ESCA_NR_ALLOWED...]).
 */
#define ESCA_ALLOWED_ENTRY(nr, name) { nr, #name },
static const struct esca_allowed esca_allowed[] = {
	ESCA_ALLOWED_SYSCALLS(ESCA_ALLOWED_ENTRY)
	ESCA_WAIT_SYSCALLS(ESCA_ALLOWED_ENTRY)
};

#define ESCA_COUNT_ENTRY(nr, name) + 1
#define ESCA_NR_ALLOWED		(0 ESCA_ALLOWED_SYSCALLS(ESCA_COUNT_ENTRY))
#define ESCA_NR_WAITS		(0 ESCA_WAIT_SYSCALLS(ESCA_COUNT_ENTRY))

#define ESCA_ALLOWED_NR_CHECK(nr, name) \
	static_assert((nr) < ESCA_SLOTS, "allowlist: " #name " beyond ESCA_SLOTS");
ESCA_ALLOWED_SYSCALLS(ESCA_ALLOWED_NR_CHECK)

/*
 * The handler of a call is __x64_sys_<name>, except where the x86-64
 * syscall table (arch/x86/entry/syscalls/syscall_64.tbl) says otherwise.
 * scripts/esca-symbols.sh knows the same exceptions.
 */
static const struct {
	const char *name;
	const char *handler;
} esca_handler_aliases[] = {
	{ "sendfile", "__x64_sys_sendfile64" },
};

static esca_syscall_fn esca_handlers[ESCA_SLOTS] __ro_after_init;
static esca_syscall_fn esca_wait_handlers[ESCA_NR_WAITS] __ro_after_init;
static const char *esca_source __ro_after_init = "none";
static bool esca_kaslr_shifted __ro_after_init;
static unsigned long esca_table __ro_after_init;

struct esca_addrs {
	unsigned long table;
	unsigned long handler[ARRAY_SIZE(esca_allowed)];
};

esca_syscall_fn esca_syscall_handler(u32 nr)
{
	if (nr >= ESCA_SLOTS)
		return NULL;
	return esca_handlers[array_index_nospec(nr, ESCA_SLOTS)];
}

esca_syscall_fn esca_wait_handler(u32 nr)
{
	unsigned int i;

	for (i = 0; i < ESCA_NR_WAITS; i++)
		if (esca_allowed[ESCA_NR_ALLOWED + i].nr == nr)
			return esca_wait_handlers[i];
	return NULL;
}

/* The handler resolved for esca_allowed[i] (a call of the allowlist or a wait). */
static esca_syscall_fn esca_allowed_handler(unsigned int i)
{
	if (i < ESCA_NR_ALLOWED)
		return esca_handlers[esca_allowed[i].nr];
	return esca_wait_handlers[i - ESCA_NR_ALLOWED];
}

/*
 * debugfs "symbols" (root only): where the addresses came from and what they
 * are, for comparison with /proc/kallsyms.
 */
void esca_syms_show(struct seq_file *m)
{
	unsigned int i;

	seq_printf(m, "source: %s\n", esca_source);
	if (strcmp(esca_source, "kprobe")) {
		seq_printf(m, "built from: %s\n", ESCA_SYMBOLS_FILE);
		seq_printf(m, "kaslr: %s\n", esca_kaslr_shifted ? "shifted" : "not shifted");
	} else {
		seq_puts(m, "kaslr: unknown\n");
	}
	seq_printf(m, "%px sys_call_table\n", (void *)esca_table);
	for (i = 0; i < ARRAY_SIZE(esca_allowed); i++)
		seq_printf(m, "%px %s %u\n", esca_allowed_handler(i), esca_allowed[i].name,
			   esca_allowed[i].nr);
}

/* Every allowed slot of the running kernel's table holds its handler. */
static int esca_addrs_check(const struct esca_addrs *a, const char **why)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(esca_allowed); i++) {
		unsigned long slot, addr;
		u32 insn;

		addr = a->table + esca_allowed[i].nr * sizeof(unsigned long);
		if (copy_from_kernel_nofault(&slot, (void *)addr, sizeof(slot))) {
			*why = "sys_call_table address is not readable";
			return -EFAULT;
		}
		if (!a->handler[i] || slot != a->handler[i]) {
			*why = "a sys_call_table slot does not hold the resolved __x64_sys_* handler";
			return -ENOENT;
		}
		if (esca_ibt_enforced() &&
		    (copy_from_kernel_nofault(&insn, (void *)slot, sizeof(insn)) ||
		     insn != ESCA_ENDBR64_INSN)) {
			*why = "a syscall handler has no ENDBR64 under IBT";
			return -EPERM;
		}
	}
	return 0;
}

#if ESCA_SYMBOLS_HAVE_MAP
static int esca_resolve_map(struct esca_addrs *a, bool *shifted, const char **why)
{
	unsigned long offset = (unsigned long)&kfree - ESCA_MAP_kfree;
	unsigned int i = 0;

	if (strcmp(init_utsname()->release, ESCA_SYMBOLS_RELEASE)) {
		*why = "the build's symbols are for another kernel release";
		return -EINVAL;
	}
	/* KASLR moves the kernel by a multiple of CONFIG_PHYSICAL_ALIGN (>= 2 MiB). */
	if (offset & (SZ_2M - 1)) {
		*why = "the build's symbols do not match the running kernel (kfree)";
		return -EINVAL;
	}
	a->table = ESCA_MAP_sys_call_table + offset;
#define ESCA_MAP_HANDLER(nr, name) a->handler[i++] = ESCA_MAP_HANDLER_##name + offset;
	ESCA_ALLOWED_SYSCALLS(ESCA_MAP_HANDLER)
	ESCA_WAIT_SYSCALLS(ESCA_MAP_HANDLER)
#undef ESCA_MAP_HANDLER
	*shifted = offset != 0;
	return 0;
}
#else
static int esca_resolve_map(struct esca_addrs *a, bool *shifted, const char **why)
{
	*why = "module built without symbols";
	return -ENOENT;
}
#endif

#if defined(CONFIG_KPROBES) && !defined(CONFIG_X86_KERNEL_IBT)
static void esca_handler_symbol(const char *name, char *sym, size_t len)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(esca_handler_aliases); i++) {
		if (!strcmp(esca_handler_aliases[i].name, name)) {
			strscpy(sym, esca_handler_aliases[i].handler, len);
			return;
		}
	}
	snprintf(sym, len, "__x64_sys_%s", name);
}

typedef unsigned long (*esca_kallsyms_lookup_fn)(const char *name);

static int esca_resolve_kprobe(struct esca_addrs *a, const char **why)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	esca_kallsyms_lookup_fn lookup;
	unsigned int i;
	int ret;

	ret = register_kprobe(&kp);
	if (ret) {
		*why = "no kprobe on kallsyms_lookup_name";
		return ret;
	}
	lookup = (esca_kallsyms_lookup_fn)kp.addr;
	unregister_kprobe(&kp);

	a->table = lookup("sys_call_table");
	if (!a->table) {
		*why = "kallsyms has no sys_call_table";
		return -ENOENT;
	}
	for (i = 0; i < ARRAY_SIZE(esca_allowed); i++) {
		char sym[KSYM_NAME_LEN];

		esca_handler_symbol(esca_allowed[i].name, sym, sizeof(sym));
		a->handler[i] = lookup(sym);
	}
	return 0;
}
#else
static int esca_resolve_kprobe(struct esca_addrs *a, const char **why)
{
	*why = IS_ENABLED(CONFIG_X86_KERNEL_IBT) ?
		"not used in a kernel built with CONFIG_X86_KERNEL_IBT" :
		"kernel built without CONFIG_KPROBES";
	return -ENOENT;
}
#endif

int esca_syms_init(void)
{
	bool want_map = !strcmp(symbols, "auto") || !strcmp(symbols, "map");
	bool want_kprobe = !strcmp(symbols, "auto") || !strcmp(symbols, "kprobe");
	const char *why_map = NULL, *why_kprobe = NULL;
	struct esca_addrs a = {};
	bool shifted = false;
	unsigned int i;

	if (!want_map && !want_kprobe) {
		pr_err("refusing to load: symbols=%s is not one of auto, map, kprobe\n", symbols);
		return -EINVAL;
	}
	if (want_map && !esca_resolve_map(&a, &shifted, &why_map) &&
	    !esca_addrs_check(&a, &why_map)) {
		esca_source = ESCA_SYMBOLS_SOURCE;
		esca_kaslr_shifted = shifted;
		goto found;
	}
	memset(&a, 0, sizeof(a));
	if (want_kprobe && !esca_resolve_kprobe(&a, &why_kprobe) &&
	    !esca_addrs_check(&a, &why_kprobe)) {
		esca_source = "kprobe";
		goto found;
	}
	pr_err("refusing to load: no trustworthy sys_call_table address (build: %s; kprobe: %s)\n",
	       want_map ? why_map : "not tried", want_kprobe ? why_kprobe : "not tried");
	/* Not -ENOENT: insmod would call that "Unknown symbol in module". */
	return -EOPNOTSUPP;

found:
	esca_table = a.table;
	for (i = 0; i < ESCA_NR_ALLOWED; i++)
		esca_handlers[esca_allowed[i].nr] = (esca_syscall_fn)a.handler[i];
	for (; i < ARRAY_SIZE(esca_allowed); i++)
		esca_wait_handlers[i - ESCA_NR_ALLOWED] = (esca_syscall_fn)a.handler[i];
	if (why_map && ESCA_SYMBOLS_HAVE_MAP)
		pr_warn("sys_call_table found with %s (build: %s)\n", esca_source, why_map);
	else
		pr_info("sys_call_table found with %s%s%s, %u calls allowed, %u waits\n",
			esca_source, ESCA_SYMBOLS_HAVE_MAP ? " of " : "",
			ESCA_SYMBOLS_HAVE_MAP ? ESCA_SYMBOLS_FILE : "",
			ESCA_NR_ALLOWED, ESCA_NR_WAITS);
	return 0;
}
