/*
 * VERSION answers; unknown ioctls get ENOTTY; ioctl arguments at bad
 * addresses get EFAULT; 32-bit (int $0x80) and x32 ioctls are refused with
 * ENOTTY, whatever the command.
 */
#include "esca_test.h"

#define X32_SYSCALL_BIT	0x40000000
#define X32_IOCTL	514
#define IA32_IOCTL	54

/* ioctl(2) through the ia32 entry, from this 64-bit process. */
static long ia32_ioctl(int fd, unsigned int cmd, uint32_t arg)
{
	long ret = IA32_IOCTL;

	asm volatile ("int $0x80" : "+a"(ret) : "b"(fd), "c"(cmd), "d"(arg) : "memory");
	return ret;
}

static void check_compat(int fd)
{
	struct esca_version *v = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	long r;

	CHECK(v != MAP_FAILED);
	r = ia32_ioctl(fd, ESCA_IOC_VERSION, (uint32_t)(uintptr_t)v);
	if (r != -ENOTTY)
		FAIL("ia32 VERSION returned %ld, expected -ENOTTY", r);
	r = ia32_ioctl(fd, ESCA_IOC_FLUSH, (uint32_t)(uintptr_t)v);
	if (r != -ENOTTY)
		FAIL("ia32 FLUSH returned %ld, expected -ENOTTY", r);
	/* x32 is off unless booted with syscall.x32=y: ENOSYS, else ENOTTY. */
	errno = 0;
	r = syscall(X32_SYSCALL_BIT | X32_IOCTL, fd, ESCA_IOC_VERSION, v);
	if (r != -1 || (errno != ENOTTY && errno != ENOSYS))
		FAIL("x32 VERSION returned %ld errno %d", r, errno);
}

int main(void)
{
	struct esca_version v;
	int fd = esca_open();

	memset(&v, 0xff, sizeof(v));
	CHECK(ioctl(fd, ESCA_IOC_VERSION, &v) == 0);
	if (v.abi_version != ESCA_ABI_VERSION || v.max_entries != ESCA_MAX_ENTRIES)
		FAIL("version %u max %u", v.abi_version, v.max_entries);

	CHECK_ERR(ioctl(fd, _IO(ESCA_IOC_MAGIC, 0x42)), ENOTTY);
	CHECK_ERR(ioctl(fd, _IOW('x', 0x01, struct esca_register), &v), ENOTTY);
	/* Right number, wrong size or direction: another command. */
	CHECK_ERR(ioctl(fd, _IOW(ESCA_IOC_MAGIC, 0x01, uint32_t), &v), ENOTTY);
	CHECK_ERR(ioctl(fd, _IOR(ESCA_IOC_MAGIC, 0x02, struct esca_flush), &v), ENOTTY);
	CHECK_ERR(ioctl(fd, 0), ENOTTY);

	CHECK_ERR(ioctl(fd, ESCA_IOC_VERSION, NULL), EFAULT);
	CHECK_ERR(ioctl(fd, ESCA_IOC_VERSION, (void *)0xffffffff81000000UL), EFAULT);
	CHECK_ERR(ioctl(fd, ESCA_IOC_REGISTER, (void *)16), EFAULT);
	CHECK_ERR(ioctl(fd, ESCA_IOC_FLUSH, (void *)0xffff888000000000UL), EFAULT);

	/* Not seekable, not readable. */
	CHECK_ERR(lseek(fd, 0, SEEK_SET), ESPIPE);
	{
		char c;
		CHECK_ERR(read(fd, &c, 1), EINVAL);
	}
	check_compat(fd);
	close(fd);
	return T_PASS;
}
