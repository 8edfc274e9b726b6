/*
 * An unrelated process (a fresh exec, so another mm) given the fd over a
 * unix socket cannot use the context: EBADFD; VERSION still answers.
 */
#include <sys/socket.h>
#include "esca_test.h"

static int recv_fd(int sock)
{
	char data, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	CHECK(recvmsg(sock, &mh, 0) == 1);
	cm = CMSG_FIRSTHDR(&mh);
	CHECK(cm && cm->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char data = 'f', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
	CHECK(sendmsg(sock, &mh, 0) == 1);
}

static int receiver(int sock)
{
	struct esca_entry *t = table_alloc(4);
	struct esca_version v;
	int fd = recv_fd(sock);

	CHECK(ioctl(fd, ESCA_IOC_VERSION, &v) == 0);
	CHECK_ERR(esca_flush(fd, 0, 1), EBADFD);
	CHECK_ERR(ioctl(fd, ESCA_IOC_UNREGISTER), EBADFD);
	CHECK_ERR(esca_register(fd, t, 4), EBADFD);
	close(fd);
	return T_PASS;
}

int main(int argc, char **argv)
{
	struct esca_entry *t;
	int sv[2], fd, p[2];
	char arg[16];
	pid_t pid;

	if (argc == 3 && !strcmp(argv[1], "receive"))
		return receiver(atoi(argv[2]));

	fd = esca_open();
	t = table_alloc(4);
	CHECK(esca_register(fd, t, 4) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		snprintf(arg, sizeof(arg), "%d", sv[1]);
		execl("/proc/self/exe", argv[0], "receive", arg, (char *)NULL);
		_exit(T_FAIL);
	}
	send_fd(sv[0], fd);
	if (wait_child(pid) != T_PASS)
		FAIL("receiver failed");
	CHECK(pipe(p) == 0);
	entry_set(&t[0], SYS_write, p[1], (uintptr_t)"ok", 2, 0);
	CHECK(esca_flush(fd, 0, 1) == 1 && t[0].result == 2);
	close(fd);
	expect_tables(0);
	return T_PASS;
}
