// SPDX-License-Identifier: MIT
/*
 * Counters.  Each thread counts in its own struct (no sharing on the hot
 * path) and adds its counts to the process-wide struct at the end of each
 * flush with relaxed atomic adds.  The process-wide struct is anonymous
 * memory, or with ESCA_STATS_DIR a shared mapping of
 * $ESCA_STATS_DIR/esca-<pid>.stats that a reader can map while we run.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct esca_stats *global;
static char stats_path[PATH_MAX];

static const char *const kind_names[ESCA_CALL_KINDS] = {
	[ESCA_CALL_CLOSE] = "close",
	[ESCA_CALL_SHUTDOWN] = "shutdown",
	[ESCA_CALL_WRITE] = "write",
	[ESCA_CALL_WRITEV] = "writev",
	[ESCA_CALL_SEND] = "send",
	[ESCA_CALL_SENDMSG] = "sendmsg",
	[ESCA_CALL_SENDFILE] = "sendfile",
	[ESCA_CALL_SETSOCKOPT] = "setsockopt",
};

static void map_stats(void)
{
	const char *dir = esca_stats_dir;
	void *p = MAP_FAILED;
	int fd;

	stats_path[0] = '\0';
	if (dir && *dir) {
		snprintf(stats_path, sizeof(stats_path), "%s/esca-%d.stats", dir, (int)getpid());
		fd = open(stats_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0 && ftruncate(fd, sizeof(*global)) == 0)
			p = mmap(NULL, sizeof(*global), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (fd >= 0)
			close(fd);
		if (p == MAP_FAILED) {
			esca_log("cannot create %s (ESCA_STATS_DIR): %m; counters stay private",
				 stats_path);
			stats_path[0] = '\0';
		}
	}
	if (p == MAP_FAILED)
		p = mmap(NULL, sizeof(*global), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (p == MAP_FAILED)
		return;
	global = p;
	memset(global, 0, sizeof(*global));
	global->version = ESCA_STATS_VERSION;
	global->backend = esca_cfg.backend;
	global->pid = (uint64_t)getpid();
	atomic_thread_fence(memory_order_release);
	global->magic = ESCA_STATS_MAGIC;
}

void esca_stats_init(void)
{
	if (!global)
		map_stats();
}

void esca_stats_after_fork(void)
{
	/* The child must not count into (or unlink) its parent's file. */
	if (global)
		munmap(global, sizeof(*global));
	global = NULL;
	map_stats();
}

static void add(uint64_t *dst, uint64_t *src)
{
	if (*src) {
		__atomic_fetch_add(dst, *src, __ATOMIC_RELAXED);
		*src = 0;
	}
}

void esca_stats_publish(struct esca_thread *t)
{
	struct esca_stats *s = &t->st;
	unsigned k;

	if (!global)
		return;
	add(&global->segments, &s->segments);
	for (k = 0; k < ESCA_CALL_KINDS; k++)
		add(&global->deferred[k], &s->deferred[k]);
	add(&global->direct_in_segment, &s->direct_in_segment);
	add(&global->flushes, &s->flushes);
	add(&global->flushed_calls, &s->flushed_calls);
	add(&global->kernel_entries, &s->kernel_entries);
	add(&global->arena_bytes, &s->arena_bytes);
	add(&global->short_writes_completed, &s->short_writes_completed);
	add(&global->bytes_completed, &s->bytes_completed);
	add(&global->errors_dropped, &s->errors_dropped);
	add(&global->errors_other, &s->errors_other);
	add(&global->bytes_lost, &s->bytes_lost);
	add(&global->batched_flushes, &s->batched_flushes);
	add(&global->direct_flushes, &s->direct_flushes);
	add(&global->segments_passthrough, &s->segments_passthrough);
	add(&global->direct_calls, &s->direct_calls);
}

static const char *backend_name(uint32_t b)
{
	switch (b) {
	case ESCA_BACKEND_MODULE:
		return "module";
	case ESCA_BACKEND_URING:
		return "uring";
	default:
		return "off";
	}
}

void esca_stats_exit(void)
{
	char line[1024];
	size_t len = 0;
	uint64_t total = 0;
	unsigned k;

	if (!global)
		return;
	if (esca_cfg.stats) {
		for (k = 0; k < ESCA_CALL_KINDS; k++)
			total += global->deferred[k];
		len += snprintf(line + len, sizeof(line) - len,
				"esca: pid=%d backend=%s segments=%llu deferred=%llu (",
				(int)getpid(), backend_name(esca_cfg.backend),
				(unsigned long long)global->segments, (unsigned long long)total);
		for (k = 0; k < ESCA_CALL_KINDS && len < sizeof(line); k++)
			len += snprintf(line + len, sizeof(line) - len, "%s%s=%llu", k ? " " : "",
					kind_names[k], (unsigned long long)global->deferred[k]);
		if (len < sizeof(line))
			len += snprintf(line + len, sizeof(line) - len,
				") direct_in_segment=%llu flushes=%llu mean_batch=%.1f kernel_entries=%llu"
				" arena_bytes=%llu short_writes_completed=%llu bytes_completed=%llu"
				" errors_dropped=%llu errors_other=%llu bytes_lost=%llu"
				" batched_flushes=%llu direct_flushes=%llu segments_passthrough=%llu\n",
				(unsigned long long)global->direct_in_segment,
				(unsigned long long)global->flushes,
				global->flushes ? (double)global->flushed_calls / (double)global->flushes : 0.0,
				(unsigned long long)global->kernel_entries,
				(unsigned long long)global->arena_bytes,
				(unsigned long long)global->short_writes_completed,
				(unsigned long long)global->bytes_completed,
				(unsigned long long)global->errors_dropped,
				(unsigned long long)global->errors_other,
				(unsigned long long)global->bytes_lost,
				(unsigned long long)global->batched_flushes,
				(unsigned long long)global->direct_flushes,
				(unsigned long long)global->segments_passthrough);
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		(void)!syscall(1, 2, line, len);
	}
	if (stats_path[0])
		unlink(stats_path);
}
