// SPDX-License-Identifier: MIT
/*
 * The module backend: the client side of /dev/esca (dkms/include/uapi/esca_abi.h).
 *
 * Each thread opens the device once and registers its own table: one
 * context per open file, one table per context.  A flush is one ioctl; the
 * module stops after an entry that failed or was short, so that later
 * entries never run ahead of bytes still unsent.  That entry is completed
 * here and the flush continues after it.  The module also stops before an
 * entry when a signal is pending, and at an entry it refuses (docs/abi.md).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int open_device(void)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, ESCA_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* The module's ESCA_FEATURE_* bits, read with its version. */
static _Atomic uint64_t module_features;

static int check_version(int fd)
{
	struct esca_version v;

	memset(&v, 0, sizeof(v));
	if (ioctl(fd, ESCA_IOC_VERSION, &v) < 0)
		return -errno;
	if (v.abi_version != ESCA_ABI_VERSION) {
		esca_log("%s speaks ABI version %u, this libesca %u: install matching esca-dkms "
			 "and libesca packages", ESCA_DEVICE_PATH, v.abi_version, ESCA_ABI_VERSION);
		return -EPROTO;
	}
	atomic_store_explicit(&module_features, v.features, memory_order_relaxed);
	return 0;
}

int esca_module_probe(void)
{
	int fd = open_device(), err;

	if (fd < 0)
		return fd;
	err = check_version(fd);
	syscall(SYS_close, fd);
	return err;
}

int esca_module_thread_init(struct esca_thread *t)
{
	struct esca_register reg;
	int fd = open_device(), err;

	if (fd < 0)
		return fd;
	err = check_version(fd);
	if (err)
		goto fail;
	memset(&reg, 0, sizeof(reg));
	reg.table = (uint64_t)(uintptr_t)t->table;
	reg.nentries = t->cap + 1;	/* and the slot of a wait (FLUSH_WAIT) */
	reg.abi_version = ESCA_ABI_VERSION;
	if (ioctl(fd, ESCA_IOC_REGISTER, &reg) < 0) {
		err = -errno;
		goto fail;
	}
	/* out of the program's way: its fd numbers stay what they would be */
	t->module_fd = esca_own_fd(fd);
	t->can_carry = esca_cfg.flush_wait &&
		       (atomic_load_explicit(&module_features, memory_order_relaxed) &
			ESCA_FEATURE_FLUSH_WAIT);
	return 0;
fail:
	syscall(SYS_close, fd);
	return err;
}

void esca_module_thread_fini(struct esca_thread *t, bool after_fork)
{
	if (t->module_fd < 0)
		return;
	/* after fork the context belongs to the parent: just drop our fd */
	if (!after_fork)
		ioctl(t->module_fd, ESCA_IOC_UNREGISTER);
	esca_own_close(t->module_fd);
	t->module_fd = -1;
}

/*
 * The thread runs under seccomp now (a filter came after REGISTER, maybe
 * from another thread with TSYNC): the module refuses every entry of it for
 * good.  Stop using the module on this thread; its calls run directly, where
 * the filter sees them.  Nothing new (io_uring) is set up under a filter
 * that was not there when the backend was chosen.
 */
static void module_leave_confined(struct esca_thread *t)
{
	esca_log("thread %d now runs under seccomp: %s refuses its calls; they run directly",
		 (int)gettid(), ESCA_DEVICE_PATH);
	esca_own_close(t->module_fd);
	t->module_fd = -1;
	t->ops = NULL;
	t->can_carry = false;
	t->setup_failed = true;
}

/*
 * Finishes entries [first, end) that an ioctl processed: a DONE entry is
 * checked (a short write completed), an entry refused for itself runs
 * directly.  At a refusal because of the thread's state (seccomp, ptrace,
 * syscall user dispatch, audit) it stops: *next is that entry, which with
 * the rest of the batch must run as plain system calls.  Returns false
 * then.
 */
static bool module_finish(struct esca_thread *t, unsigned first, unsigned end, unsigned *next,
			  bool *confined)
{
	unsigned i;

	for (i = first; i < end; i++) {
		struct esca_entry *e = &t->table[i];

		if (e->status == ESCA_ST_DONE) {
			esca_finish_entry(t, i);
			continue;
		}
		esca_debug("module refused entry %u (nr %u, reason %lld): running it directly",
			   i, e->nr, (long long)e->result);
		if (e->result == ESCA_REFUSED_SECCOMP || e->result == ESCA_REFUSED_ENTRY_PATH) {
			*confined = e->result == ESCA_REFUSED_SECCOMP;
			*next = i;
			return false;
		}
		esca_run_direct(t, i);
	}
	*next = end;
	return true;
}

static void module_failed(void)
{
	static _Atomic int warned;

	if (!atomic_exchange(&warned, 1))
		esca_log("%s flush failed (%s); running the calls directly", ESCA_DEVICE_PATH,
			 strerror(errno));
}

/*
 * One ioctl runs entries from `first` on, until the end, an entry that
 * failed or was short (completed here, then the flush goes on after it), a
 * refused entry, or a pending signal (its handler has run when the ioctl
 * returns; the flush goes on where the module stopped).  A refusal because
 * of the thread's state (seccomp, ptrace, syscall user dispatch, audit)
 * leaves that entry and the rest to plain system calls, in order, once.
 */
/* Entries [first, t->n) as plain system calls; then, confined, no more
 * module on this thread. */
static void module_direct_tail(struct esca_thread *t, unsigned first, bool confined)
{
	unsigned i;

	for (i = first; i < t->n; i++)
		esca_run_direct(t, i);
	if (confined)
		module_leave_confined(t);
}

static void module_flush_from(struct esca_thread *t, unsigned first)
{
	unsigned n = t->n;
	bool confined = false;
	struct esca_flush f;
	long k;

	while (first < n) {
		memset(&f, 0, sizeof(f));
		f.first = first;
		f.count = n - first;
		k = ioctl(t->module_fd, ESCA_IOC_FLUSH, &f);
		t->st.kernel_entries++;
		if (k < 0) {
			module_failed();
			break;
		}
		if (k == 0) {	/* a signal was pending: nothing ran; one directly, go on */
			esca_run_direct(t, first++);
			continue;
		}
		if (!module_finish(t, first, first + (unsigned)k < n ? first + (unsigned)k : n,
				   &first, &confined))
			break;
	}
	module_direct_tail(t, first, confined);
}

void esca_module_flush(struct esca_thread *t)
{
	module_flush_from(t, 0);
}

/*
 * FLUSH_WAIT: the batch, then the wait in the slot after it, in one ioctl.
 * When the module stopped before the wait (an entry failed or was short, a
 * signal was pending, an entry was refused) the batch is finished as
 * module_flush_from() would, and the caller makes the wait itself: the
 * order of calls, handlers and the wait is that of plain calls.
 */
static bool module_flush_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	unsigned n = t->n, next = 0;
	struct esca_entry *we = &t->table[n];
	bool confined = false;
	struct esca_flush f;
	long k;

	*we = *w;
	we->status = ESCA_ST_QUEUED;
	memset(&f, 0, sizeof(f));
	f.count = n + 1;
	k = ioctl(t->module_fd, ESCA_IOC_FLUSH_WAIT, &f);
	t->st.kernel_entries++;
	if (k < 0) {
		module_failed();
		module_direct_tail(t, 0, false);
		return false;
	}
	if (k == 0) {	/* a signal was pending: nothing ran */
		esca_run_direct(t, 0);
		module_flush_from(t, 1);
		return false;
	}
	if (!module_finish(t, 0, (unsigned)k < n ? (unsigned)k : n, &next, &confined)) {
		module_direct_tail(t, next, confined);
		return false;
	}
	if ((unsigned)k <= n) {
		module_flush_from(t, next);
		return false;
	}
	if (we->status == ESCA_ST_DONE) {
		*res = (long)we->result;
		return true;
	}
	/* the wait was refused: the thread's state, as for any entry */
	if (we->result == ESCA_REFUSED_SECCOMP)
		module_leave_confined(t);
	return false;
}

static int module_own_fd(const struct esca_thread *t)
{
	return t->module_fd;
}

static void module_fd_moved(struct esca_thread *t, int fd)
{
	__atomic_store_n(&t->module_fd, fd, __ATOMIC_RELAXED);
}

const struct esca_backend_ops esca_module_ops = {
	.id = ESCA_BACKEND_MODULE,
	.name = "module",
	.what = ESCA_DEVICE_PATH,
	.fix = "install esca-dkms and 'modprobe esca', or use ESCA_BACKEND=uring",
	.probe = esca_module_probe,
	.thread_init = esca_module_thread_init,
	.thread_fini = esca_module_thread_fini,
	.flush = esca_module_flush,
	.flush_wait = module_flush_wait,
	.own_fd = module_own_fd,
	.fd_moved = module_fd_moved,
};
