// SPDX-License-Identifier: MIT
/*
 * The module backend: the client side of /dev/esca (dkms/include/uapi/esca_abi.h).
 *
 * Each thread opens the device once and registers its own table: one
 * context per open file, one table per context.  A run is one ioctl over
 * the runnable entries from the table's head on; the module runs them in
 * order and stops after an entry that failed or was short (flush.c finishes
 * it, and the run goes on after it), before an entry when a signal is
 * pending, and at an entry it refuses (docs/abi.md), which then runs as a
 * plain system call.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Not through libc's syscall(): a flush is one of these, and its cost is
 * what batching saves. */
static long esca_ioctl(int fd, unsigned long cmd, void *arg)
{
	long r = esca_raw(SYS_ioctl, fd, (long)cmd, (long)(uintptr_t)arg, 0, 0, 0);

	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static int open_device(void)
{
	int fd = (int)REAL(syscall)(SYS_openat, AT_FDCWD, ESCA_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* The module's ESCA_FEATURE_* bits, read with its version. */
static _Atomic uint64_t module_features;

static int check_version(int fd)
{
	struct esca_version v;

	memset(&v, 0, sizeof(v));
	if (esca_ioctl(fd, ESCA_IOC_VERSION, &v) < 0)
		return -errno;
	if (v.abi_version != ESCA_ABI_VERSION) {
		esca_log("%s speaks ABI version %u, this libesca %u: install matching esca-dkms "
			 "and libesca packages", ESCA_DEVICE_PATH, v.abi_version, ESCA_ABI_VERSION);
		return -EPROTO;
	}
	atomic_store_explicit(&module_features, v.features, memory_order_relaxed);
	return 0;
}

static int module_probe(void)
{
	int fd = open_device(), err;

	if (fd < 0)
		return fd;
	err = check_version(fd);
	REAL(syscall)(SYS_close, fd);
	return err;
}

static int module_thread_init(struct esca_thread *t)
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
	if (esca_ioctl(fd, ESCA_IOC_REGISTER, &reg) < 0) {
		err = -errno;
		goto fail;
	}
	/* out of the program's way: its fd numbers stay what they would be */
	t->module_fd = esca_own_fd(fd);
	/* one kernel entry for the batch and the wait, where no other thread
	 * could be kept waiting for this one's batch through a long wait */
	t->can_wait = esca_cfg.flush_wait &&
		      (atomic_load_explicit(&module_features, memory_order_relaxed) &
		       ESCA_FEATURE_FLUSH_WAIT);
	t->can_open = atomic_load_explicit(&module_features, memory_order_relaxed) &
		      ESCA_FEATURE_FLUSH_OPEN;
	return 0;
fail:
	REAL(syscall)(SYS_close, fd);
	return err;
}

static void module_thread_fini(struct esca_thread *t, bool after_fork)
{
	if (t->module_fd < 0)
		return;
	/* after fork the context belongs to the parent: just drop our fd */
	if (!after_fork)
		esca_ioctl(t->module_fd, ESCA_IOC_UNREGISTER, NULL);
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
	t->can_wait = false;
	t->can_open = false;
	t->setup_failed = true;
}

static void module_failed(void)
{
	static _Atomic int warned;

	if (!atomic_exchange(&warned, 1))
		esca_log("%s flush failed (%s); running the calls directly", ESCA_DEVICE_PATH,
			 strerror(errno));
}

/*
 * Entries [first, end) the module processed: one it refused runs as a
 * plain system call now (for the thread's state -- seccomp, ptrace, audit
 * -- every later one of the batch will be refused too and run so).
 */
static void take_refused(struct esca_thread *t, unsigned first, unsigned end)
{
	bool confined = false;

	for (unsigned i = first; i < end; i++) {
		struct esca_entry *e = &t->table[i];

		if (e->status != ESCA_ST_REFUSED)
			continue;
		esca_debug("module refused entry %u (nr %u, reason %lld): running it directly", i,
			   e->nr, (long long)e->result);
		confined |= e->result == ESCA_REFUSED_SECCOMP;
		esca_run_direct(t, i);
	}
	if (confined)
		module_leave_confined(t);
}

/*
 * The module ran an entry and could not write its result back: the program
 * made the table unwritable under the flush (ENOTRECOVERABLE, docs/abi.md).
 * The entries before it are DONE, nothing after it ran.  It is LOST: never
 * run again (flush.c settles it; a data entry's connection is reset).
 * Returns the entries processed, the lost one included.
 */
static unsigned take_lost(struct esca_thread *t, unsigned first, unsigned end)
{
	static _Atomic int warned;
	unsigned i = first;

	while (i < end && t->table[i].status == ESCA_ST_DONE)
		i++;
	if (!atomic_exchange(&warned, 1))
		esca_log("%s ran a call and could not write its result back (the program made "
			 "libesca's table unwritable): not running it again", ESCA_DEVICE_PATH);
	if (i == end)
		return end - first;
	t->table[i].status = ESCA_ST_LOST;
	return i - first + 1;
}

/* The runnable entries from first on (at most to the end of the table). */
static unsigned runnable_end(const struct esca_thread *t, unsigned first)
{
	unsigned end = first;

	while (end < t->n && esca_entry_runnable(t, end))
		end++;
	return end;
}

static unsigned module_run(struct esca_thread *t, unsigned first)
{
	unsigned end = runnable_end(t, first), done;
	struct esca_flush f;
	long k;

	if (end == first)
		return 0;
	memset(&f, 0, sizeof(f));
	f.first = first;
	f.count = end - first;
	k = esca_ioctl(t->module_fd, ESCA_IOC_FLUSH, &f);
	t->st.kernel_entries++;
	if (k < 0 && errno == ENOTRECOVERABLE)
		return take_lost(t, first, end);
	if (k < 0) {
		module_failed();
		return 0;
	}
	/* 0: a signal was pending, nothing ran; the caller runs one directly */
	done = (unsigned)k < f.count ? (unsigned)k : f.count;
	take_refused(t, first, first + done);
	return done;
}

/*
 * FLUSH_WAIT: the pending entries, then the wait in the slot after them, in
 * one ioctl.  When the module stopped before the wait (an entry failed or
 * was short, a signal was pending, an entry was refused) the entries it did
 * not run stay queued for flush.c, and the caller makes the wait itself:
 * the order of calls, handlers and the wait is that of plain calls.
 */
static bool module_run_wait(struct esca_thread *t, const struct esca_entry *w, long *res)
{
	unsigned first = t->head, n = t->n, done;
	struct esca_entry *we = &t->table[n];
	struct esca_flush f;
	bool ran;
	long k;

	*we = *w;
	we->status = ESCA_ST_QUEUED;
	memset(&f, 0, sizeof(f));
	f.first = first;
	f.count = n - first + 1;
	k = esca_ioctl(t->module_fd, ESCA_IOC_FLUSH_WAIT, &f);
	t->st.kernel_entries++;
	if (k < 0 && errno == ENOTRECOVERABLE) {
		/*
		 * The wait itself ran when every entry before it is DONE: its
		 * events (or new fd) cannot be known; the program sees an
		 * interrupted wait, never a second one.
		 */
		if (take_lost(t, first, n + 1) == n + 1 - first) {
			we->status = ESCA_ST_FINISHED;
			*res = -EINTR;
			return true;
		}
		return false;
	}
	if (k < 0) {
		module_failed();
		return false;
	}
	/* the wait's result, before anything may reuse its slot */
	ran = (unsigned)k == f.count && we->status == ESCA_ST_DONE;
	*res = (long)we->result;
	if ((unsigned)k == f.count && we->status == ESCA_ST_REFUSED &&
	    we->result == ESCA_REFUSED_SECCOMP) {
		module_leave_confined(t);
		return false;
	}
	done = (unsigned)k < n - first ? (unsigned)k : n - first;
	take_refused(t, first, first + done);
	return ran;
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
	.probe = module_probe,
	.thread_init = module_thread_init,
	.thread_fini = module_thread_fini,
	.run = module_run,
	.run_wait = module_run_wait,
	.own_fd = module_own_fd,
	.fd_moved = module_fd_moved,
};
