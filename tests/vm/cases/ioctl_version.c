/* VERSION answers; unknown ioctls get ENOTTY; ioctl arguments at bad addresses get EFAULT. */
#include "esca_test.h"

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
	close(fd);
	return T_PASS;
}
