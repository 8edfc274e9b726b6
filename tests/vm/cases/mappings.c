/*
 * The table may live in any mapping the process can read and write, and
 * each behaves the same: anonymous private memory, shared anonymous memory
 * (shmem), a memfd, a MAP_SHARED file on ext4 (the page cache: the pinning
 * module pinned it writable on 6.1 and refused it on 6.12) and hugetlb.
 * Unmapped after REGISTER, FLUSH is EFAULT and the kernel writes nothing
 * into what was the table (for a file: its page cache stays as it was).
 */
#include <sys/mount.h>
#include "esca_test.h"

#define EXT4_DIR "/tmp/esca-ext4"
#define EXT4_IMG "/tmp/esca-ext4.img"
#define HUGE_LEN (2UL << 20)

static int sink[2];

static void run(const char *what, const char *cmd)
{
	if (system(cmd) != 0)
		FAIL("%s: '%s' failed", what, cmd);
}

/* Registers t, runs three writes through it, unmaps it, flushes again. */
static void check(const char *what, struct esca_entry *t, size_t len, int file)
{
	int fd = esca_open();
	struct esca_entry back;
	char buf[4];

	if (esca_register(fd, t, 64) != 0)
		FAIL("%s: REGISTER: %s", what, strerror(errno));
	entry_set(&t[0], SYS_write, sink[1], (uintptr_t)"a", 1, 0);
	entry_set(&t[1], SYS_write, sink[1], (uintptr_t)"b", 1, 0);
	entry_set(&t[2], SYS_write, sink[1], (uintptr_t)"c", 1, 0);
	if (esca_flush(fd, 0, 3) != 3)
		FAIL("%s: FLUSH: %s", what, strerror(errno));
	for (int i = 0; i < 3; i++)
		if (t[i].status != ESCA_ST_DONE || t[i].result != 1)
			FAIL("%s: entry %d status %u result %lld", what, i, t[i].status,
			     (long long)t[i].result);
	CHECK(read(sink[0], buf, 4) == 3 && !memcmp(buf, "abc", 3));
	if (file >= 0) {
		/* The results went through the page cache: the file has them. */
		CHECK(msync(t, len, MS_SYNC) == 0);
		CHECK(pread(file, &back, sizeof(back), 0) == sizeof(back));
		if (back.status != ESCA_ST_DONE || back.result != 1)
			FAIL("%s: the file holds status %u result %lld", what, back.status,
			     (long long)back.result);
		entry_set(&t[0], SYS_write, sink[1], (uintptr_t)"z", 1, 0);
		CHECK(msync(t, len, MS_SYNC) == 0);
	}
	CHECK(munmap(t, len) == 0);
	if (esca_flush(fd, 0, 1) != -1 || errno != EFAULT)
		FAIL("%s: FLUSH of an unmapped table did not fail with EFAULT", what);
	CHECK_ERR(read(sink[0], buf, 1), EAGAIN);
	if (file >= 0) {
		CHECK(pread(file, &back, sizeof(back), 0) == sizeof(back));
		if (back.status != 0xffff || back.result != 0x5a5a5a5a)
			FAIL("%s: written after unmapping: status %u result %lld", what,
			     back.status, (long long)back.result);
	}
	close(fd);
}

static struct esca_entry *map(int flags, int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);

	CHECK(p != MAP_FAILED);
	return p;
}

int main(void)
{
	size_t len = 64 * sizeof(struct esca_entry);
	int memfd, file;

	CHECK(pipe2(sink, O_NONBLOCK) == 0);
	check("anonymous", map(MAP_PRIVATE | MAP_ANONYMOUS, -1, len), len, -1);
	check("shared anonymous", map(MAP_SHARED | MAP_ANONYMOUS, -1, len), len, -1);
	memfd = memfd_create("esca-table", 0);
	CHECK(memfd >= 0 && ftruncate(memfd, 8192) == 0);
	check("memfd", map(MAP_SHARED, memfd, len), len, memfd);

	run("ext4", "modprobe -q loop && modprobe -q ext4 && mkdir -p " EXT4_DIR
	    " && truncate -s 16M " EXT4_IMG " && mkfs.ext4 -q -F " EXT4_IMG
	    " && mount -o loop " EXT4_IMG " " EXT4_DIR);
	file = open(EXT4_DIR "/table", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(file >= 0 && ftruncate(file, 8192) == 0);
	check("MAP_SHARED file on ext4", map(MAP_SHARED, file, len), len, file);
	close(file);
	run("ext4", "umount " EXT4_DIR " && rm -f " EXT4_IMG);

	run("hugetlb", "echo 4 > /proc/sys/vm/nr_hugepages");
	check("hugetlb", map(MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, HUGE_LEN), HUGE_LEN, -1);
	run("hugetlb", "echo 0 > /proc/sys/vm/nr_hugepages");
	expect_tables(0);
	return T_PASS;
}
