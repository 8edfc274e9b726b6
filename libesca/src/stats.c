// SPDX-License-Identifier: MIT
/*
 * Counters.  Each thread counts in its own struct (no sharing on the hot
 * path) and adds its counts to the process-wide struct at the end of each
 * flush with relaxed atomic adds.  The process-wide struct is anonymous
 * memory, or with ESCA_STATS_DIR a shared mapping of
 * $ESCA_STATS_DIR/esca-<pid>.stats that a reader can map while we run.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct esca_stats *global;
/* the live file, when global maps one: its name in esca_stats_dir and its
 * identity (only that file is ever unlinked) */
static char file_name[32];
static dev_t file_dev;
static ino_t file_ino;
static bool file_linked;

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

#define PRIVATE "counters stay private"

/*
 * Opens ESCA_STATS_DIR, refusing a directory where someone else could put
 * files under our names: it must be owned by root or by this process's
 * euid, and not be writable by others unless sticky (the rules of
 * systemd-tmpfiles and OpenSSH's StrictModes).  Group-writable is allowed:
 * the package's /run/esca is root's, writable by the servers' group.
 * Everything after this goes through the directory fd.
 */
static int open_dir(void)
{
	const char *dir = esca_stats_dir;
	struct stat st;
	int fd;

	fd = (int)REAL(syscall)(SYS_openat, AT_FDCWD, dir,
			  O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		esca_log("ESCA_STATS_DIR=%s: %m; " PRIVATE, dir);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		esca_log("ESCA_STATS_DIR=%s: %m; " PRIVATE, dir);
		goto refused;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		esca_log("ESCA_STATS_DIR=%s is owned by uid %u, neither root nor this process "
			 "(uid %u): refused, " PRIVATE ". Fix: a directory of root's or this "
			 "user's (the esca package's /run/esca)", dir, (unsigned)st.st_uid,
			 (unsigned)geteuid());
		goto refused;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		esca_log("ESCA_STATS_DIR=%s is writable by others and not sticky (mode %04o): "
			 "refused, " PRIVATE ". Fix: chmod o-w %s (or +t)", dir,
			 (unsigned)(st.st_mode & 07777), dir);
		goto refused;
	}
	return fd;
refused:
	REAL(syscall)(SYS_close, fd);
	return -1;
}

static const char *file_type(mode_t m)
{
	return S_ISLNK(m) ? "a symbolic link" : S_ISDIR(m) ? "a directory" :
	       S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : S_ISREG(m) ? "a file" :
	       "a device";
}

/*
 * Creates esca-<pid>.stats in the directory: always a new file
 * (O_CREAT|O_EXCL|O_NOFOLLOW: a planted symlink, FIFO or directory is never
 * opened), mode 0640 whatever the umask (the directory's group may read).
 * A file left by an earlier process of the same pid is removed first, but
 * only a regular file of our own euid: anything else is left alone.
 */
static int create_file(int dirfd)
{
	const int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
			  O_CLOEXEC;
	struct stat st;
	int fd, tries;

	for (tries = 0; tries < 2; tries++) {
		fd = (int)REAL(syscall)(SYS_openat, dirfd, file_name, flags, 0640);
		if (fd >= 0 || errno != EEXIST)
			break;
		if (fstatat(dirfd, file_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* gone meanwhile: try again */
		if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
			esca_log("ESCA_STATS_DIR=%s: %s exists and is %s of uid %u, not a file of "
				 "this process's (uid %u): left alone, " PRIVATE, esca_stats_dir,
				 file_name, file_type(st.st_mode), (unsigned)st.st_uid,
				 (unsigned)geteuid());
			return -1;
		}
		REAL(unlinkat)(dirfd, file_name, 0);	/* a stale file of a reused pid */
	}
	if (fd < 0) {
		esca_log("ESCA_STATS_DIR=%s: cannot create %s: %m; " PRIVATE, esca_stats_dir,
			 file_name);
		return -1;
	}
	if (fchmod(fd, 0640) < 0 || fstat(fd, &st) < 0 ||
	    ftruncate(fd, sizeof(*global)) < 0) {
		esca_log("ESCA_STATS_DIR=%s: cannot set up %s: %m; " PRIVATE, esca_stats_dir,
			 file_name);
		REAL(unlinkat)(dirfd, file_name, 0);
		REAL(syscall)(SYS_close, fd);
		return -1;
	}
	file_dev = st.st_dev;
	file_ino = st.st_ino;
	return fd;
}

/* A new live file for this process, or -1 (the message is printed). */
static int new_file(void)
{
	int dirfd, fd;

	snprintf(file_name, sizeof(file_name), "esca-%d.stats", (int)getpid());
	dirfd = open_dir();
	if (dirfd < 0)
		return -1;
	fd = create_file(dirfd);
	REAL(syscall)(SYS_close, dirfd);
	return fd;
}

/* Unlinks our live file, if the name is still ours. */
static void unlink_file(void)
{
	struct stat st;
	int dirfd;

	if (!file_linked)
		return;
	file_linked = false;
	dirfd = (int)REAL(syscall)(SYS_openat, AT_FDCWD, esca_stats_dir,
			     O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	if (fstatat(dirfd, file_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == file_dev &&
	    st.st_ino == file_ino)
		REAL(unlinkat)(dirfd, file_name, 0);
	REAL(syscall)(SYS_close, dirfd);
}

static void map_stats(void)
{
	void *p = MAP_FAILED;
	int fd;

	file_linked = false;
	if (esca_stats_dir[0]) {
		fd = new_file();
		if (fd >= 0) {
			p = mmap(NULL, sizeof(*global), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED)
				esca_log("ESCA_STATS_DIR=%s: cannot map %s: %m; " PRIVATE,
					 esca_stats_dir, file_name);
			file_linked = true;
			REAL(syscall)(SYS_close, fd);
			if (p == MAP_FAILED)
				unlink_file();
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

/*
 * exec: the live file would outlive the image that counts into it, so it
 * goes before the exec (the counters stay mapped); if the exec fails, a new
 * file takes the counters and replaces the mapping in place.  A vfork()
 * child (another pid) leaves its parent's file alone.
 */
void esca_stats_exec(pid_t pid, bool failed)
{
	void *p;
	int fd;

	if (!global || global->pid != (uint64_t)pid)
		return;
	if (!failed) {
		unlink_file();
		return;
	}
	if (!esca_stats_dir[0] || file_linked)
		return;
	fd = new_file();
	if (fd < 0)
		return;
	if (REAL(pwrite)(fd, global, sizeof(*global), 0) == (ssize_t)sizeof(*global)) {
		p = mmap(global, sizeof(*global), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			 fd, 0);
		file_linked = p != MAP_FAILED;
	}
	REAL(syscall)(SYS_close, fd);
	if (!file_linked) {
		file_linked = true;
		unlink_file();
	}
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
	add(&global->waits_carried, &s->waits_carried);
	add(&global->writes_held, &s->writes_held);
	add(&global->bytes_held, &s->bytes_held);
	add(&global->resets, &s->resets);
}

void esca_stats_add(size_t offset, uint64_t n)
{
	if (global && n)
		__atomic_fetch_add((uint64_t *)((char *)global + offset), n, __ATOMIC_RELAXED);
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
				(int)getpid(), esca_backend_name(esca_cfg.backend),
				(unsigned long long)global->segments, (unsigned long long)total);
		for (k = 0; k < ESCA_CALL_KINDS && len < sizeof(line); k++)
			len += snprintf(line + len, sizeof(line) - len, "%s%s=%llu", k ? " " : "",
					kind_names[k], (unsigned long long)global->deferred[k]);
		if (len < sizeof(line))
			len += snprintf(line + len, sizeof(line) - len,
				") direct_in_segment=%llu flushes=%llu mean_batch=%.1f kernel_entries=%llu"
				" arena_bytes=%llu short_writes_completed=%llu bytes_completed=%llu"
				" errors_dropped=%llu errors_other=%llu bytes_lost=%llu"
				" batched_flushes=%llu direct_flushes=%llu segments_passthrough=%llu"
				" waits_carried=%llu writes_held=%llu bytes_held=%llu resets=%llu\n",
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
				(unsigned long long)global->segments_passthrough,
				(unsigned long long)global->waits_carried,
				(unsigned long long)global->writes_held,
				(unsigned long long)global->bytes_held,
				(unsigned long long)global->resets);
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		(void)!REAL(syscall)(SYS_write, STDERR_FILENO, line, len);
	}
	unlink_file();
}
