// SPDX-License-Identifier: MIT
/*
 * esca_init(): configuration from the environment and the choice of backend.
 * The configuration is process-wide and written once, before any segment.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct esca_config esca_cfg = {
	.backend = ESCA_BACKEND_OFF,
	.table_entries = 256,
	.arena_bytes = 1u << 20,
	.defer_max = 16384,
	.sendfile_max = 65536,
	.uring_copy_max = 4096,
	.held_max = 64u << 20,
	.uring_min_ops = 2,
	.adapt = true,
	.flush_wait = true,
	.uring_sockopt = false,	/* measured dearer than the plain call (docs/libesca.md) */
	.uring_setup = ESCA_RING_ALL,
	.write_timeout_ms = 60000,
};
_Atomic int esca_initialized;
static int init_result;
static int init_errno;

void esca_log(const char *fmt, ...)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "libesca[%d]: ",
			 (int)esca_raw(SYS_getpid, 0, 0, 0, 0, 0, 0));
	va_list ap;

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(buf))
		n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* not through libc: the drainer thread (held.c) logs too */
	esca_raw(SYS_write, STDERR_FILENO, (long)buf, (long)n, 0, 0, 0);
}

/*
 * Every setting is read with secure_getenv(): in a process with AT_SECURE
 * (set-user-ID, set-group-ID, file capabilities) the environment is the
 * unprivileged caller's, so libesca uses its defaults there -- backend
 * auto, no stats file, no stderr summary (docs/libesca.md, Privileged
 * processes).
 */
static unsigned long env_ulong(const char *name, unsigned long def, unsigned long lo,
			       unsigned long hi)
{
	const char *s = secure_getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v < lo || v > hi) {
		esca_log("%s=%s is not a number in [%lu, %lu]; using %lu", name, s, lo, hi, def);
		return def;
	}
	return v;
}

static bool env_flag(const char *name)
{
	const char *s = secure_getenv(name);

	return s && *s && strcmp(s, "0") != 0;
}

/* ESCA_URING_SETUP: "all", "none", or a comma list of coop, defer, register. */
static unsigned env_uring_setup(void)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
		{ "coop", ESCA_RING_COOP },
		{ "defer", ESCA_RING_DEFER },
		{ "register", ESCA_RING_REGISTER },
		{ "all", ESCA_RING_ALL },
		{ "none", 0 },
	};
	const char *s = secure_getenv("ESCA_URING_SETUP"), *p;
	unsigned v = 0, k;
	size_t len;

	if (!s || !*s)
		return ESCA_RING_ALL;
	for (p = s; *p; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
			if (strlen(words[k].name) == len && !strncmp(p, words[k].name, len))
				break;
		if (k == sizeof(words) / sizeof(words[0])) {
			esca_log("ESCA_URING_SETUP=%s: not a comma list of coop, defer, register "
				 "(or all, none); using all", s);
			return ESCA_RING_ALL;
		}
		v |= words[k].bit;
	}
	return v;
}

static void read_config(void)
{
	esca_cfg.debug = env_flag("ESCA_DEBUG");
	esca_cfg.stats = env_flag("ESCA_STATS");
	/* at least room for a signal handler's queue (thread.c) twice over */
	esca_cfg.table_entries = env_ulong("ESCA_TABLE_ENTRIES", esca_cfg.table_entries,
					   2 * ESCA_SQ_SLOTS, ESCA_MAX_ENTRIES - 1);
	esca_cfg.arena_bytes = env_ulong("ESCA_ARENA_BYTES", esca_cfg.arena_bytes, 65536,
					 1ul << 30);
	esca_cfg.defer_max = env_ulong("ESCA_DEFER_MAX", esca_cfg.defer_max, 0,
				       esca_cfg.arena_bytes / 4);
	esca_cfg.sendfile_max = env_ulong("ESCA_SENDFILE_MAX", esca_cfg.sendfile_max, 0,
					  1ul << 30);
	esca_cfg.uring_copy_max = env_ulong("ESCA_URING_COPY_MAX", esca_cfg.uring_copy_max, 0,
					    esca_cfg.defer_max);
	esca_cfg.uring_min_ops = env_ulong("ESCA_URING_MIN_OPS", esca_cfg.uring_min_ops, 1,
					   ESCA_MAX_ENTRIES);
	esca_cfg.held_max = env_ulong("ESCA_HELD_MAX", esca_cfg.held_max, 1u << 20, 1ul << 34);
	esca_cfg.adapt = env_ulong("ESCA_ADAPT", 1, 0, 1) != 0;
	esca_cfg.flush_wait = env_ulong("ESCA_FLUSH_WAIT", 1, 0, 1) != 0;
	esca_cfg.uring_sockopt = env_ulong("ESCA_URING_SOCKOPT", 0, 0, 1) != 0;
	esca_cfg.uring_setup = env_uring_setup();
	esca_cfg.write_timeout_ms = (int)env_ulong("ESCA_WRITE_TIMEOUT_MS",
						   esca_cfg.write_timeout_ms, 1, 3600000);
}

/*
 * The environment is read when libesca is loaded, not in esca_init(): nginx
 * gives its workers a cleared environment (only its `env` directives), and
 * the worker is where esca_init() runs.
 */
static char want_backend[16];
char esca_stats_dir[256];

__attribute__((constructor)) static void esca_read_environment(void)
{
	const char *s;

	read_config();
	s = secure_getenv("ESCA_BACKEND");
	if (s)
		snprintf(want_backend, sizeof(want_backend), "%s", s);
	s = secure_getenv("ESCA_STATS_DIR");
	if (s)
		snprintf(esca_stats_dir, sizeof(esca_stats_dir), "%s", s);
}

/* The backends, in the order auto tries them. */
static const struct esca_backend_ops *const backends[] = { &esca_module_ops, &esca_uring_ops };

const struct esca_backend_ops *esca_backend_ops(enum esca_backend b)
{
	for (size_t k = 0; k < sizeof(backends) / sizeof(backends[0]); k++)
		if (backends[k]->id == b)
			return backends[k];
	return NULL;
}

const char *esca_backend_name(enum esca_backend b)
{
	const struct esca_backend_ops *ops = esca_backend_ops(b);

	return ops ? ops->name : "off";
}

/*
 * Whether the calling thread runs under a seccomp filter or strict mode
 * (/proc/thread-self/status; read at set-up only).  io_uring would run its
 * ops where the filter never sees them, and the module refuses such a
 * thread: libesca then passes the thread's calls straight through.
 */
bool esca_thread_seccomp(void)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = (int)REAL(syscall)(SYS_openat, AT_FDCWD, "/proc/thread-self/status",
			      O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = REAL(syscall)(SYS_read, fd, buf, sizeof(buf) - 1);
	REAL(syscall)(SYS_close, fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strstr(buf, "\nSeccomp:");
	return p && strtol(p + 9, NULL, 10) != 0;
}

static int choose_backend(void)
{
	const char *want = want_backend;
	const struct esca_backend_ops *ops;
	size_t k;
	int err;

	esca_cfg.backend = ESCA_BACKEND_OFF;
	if (!*want || !strcmp(want, "auto")) {
		for (k = 0; k < sizeof(backends) / sizeof(backends[0]); k++) {
			/* never probe io_uring under a filter: it may kill */
			if (backends[k] == &esca_uring_ops && esca_thread_seccomp())
				continue;
			if (backends[k]->probe() == 0) {
				esca_cfg.backend = backends[k]->id;
				break;
			}
		}
		esca_debug("backend auto: %s", esca_backend_name(esca_cfg.backend));
		return 0;
	}
	if (!strcmp(want, "off"))
		return 0;
	for (k = 0; k < sizeof(backends) / sizeof(backends[0]); k++) {
		ops = backends[k];
		if (strcmp(want, ops->name))
			continue;
		err = ops->probe();
		if (err == 0) {
			esca_cfg.backend = ops->id;
			return 0;
		}
		esca_log("ESCA_BACKEND=%s: %s is not usable (%s); running without batching. "
			 "Fix: %s", ops->name, ops->what, strerror(-err), ops->fix);
		return err;
	}
	esca_log("ESCA_BACKEND=%s is not one of auto, module, uring, off; running without "
		 "batching", want);
	return -EINVAL;
}

/* One set of fork handlers for the whole library (docs/libesca.md, Fork). */
static void fork_child(void)
{
	esca_thread_fork_child();
	esca_held_after_fork();
	esca_stats_after_fork();
}

ESCA_API int esca_init(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	int err;

	if (atomic_load_explicit(&esca_initialized, memory_order_acquire))
		goto out;
	pthread_mutex_lock(&lock);
	if (!atomic_load_explicit(&esca_initialized, memory_order_relaxed)) {
		esca_fd_init();
		esca_guard_install();
		err = choose_backend();
		init_result = err ? -1 : 0;
		init_errno = -err;
		if (esca_cfg.backend != ESCA_BACKEND_OFF)
			esca_held_init();
		esca_stats_init();
		pthread_atfork(esca_thread_fork_prepare, esca_thread_fork_parent, fork_child);
		atomic_store_explicit(&esca_initialized, 1, memory_order_release);
	}
	pthread_mutex_unlock(&lock);
out:
	if (init_result)
		errno = init_errno;
	return init_result;
}
