/*
 * h_lost: a call the module ran and could not write the result of back is
 * never run again (issue 21, N2).  A hooked program defers a 16 KiB write
 * to a TCP connection whose buffers are small (4 KiB), so the flush blocks in it;
 * meanwhile another thread finds that entry in libesca's table (an
 * anonymous mapping: /proc/self/maps), makes its page read-only and reads
 * the connection.  The module's write-back fails: FLUSH is ENOTRECOVERABLE
 * and libesca settles the entry as LOST -- the connection is reset, as its
 * stream cannot be known whole.  The program's own SIGSEGV handler (chained
 * behind libesca's) makes the page writable again when libesca stores into
 * it.  The peer must read at most the 16 KiB once: before, libesca ran the
 * write a second time (the peer read 32 KiB).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include "esca_test.h"

#define LEN 16384	/* libesca defers writes up to ESCA_DEFER_MAX, 16 KiB */

static int conn, peer;
static char *page_ro;
static long page;
static size_t got;
static int end_err;

static void writable_again(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (page_ro && (char *)si->si_addr >= page_ro && (char *)si->si_addr < page_ro + page) {
		mprotect(page_ro, page, PROT_READ | PROT_WRITE);
		return;
	}
	signal(sig, SIG_DFL);
}

/* The entry of the deferred write, in an anonymous read-write mapping. */
static struct esca_entry *find_entry(void)
{
	char line[512];
	FILE *maps = fopen("/proc/self/maps", "r");
	struct esca_entry *found = NULL;

	CHECK(maps != NULL);
	while (!found && fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;
		char perms[8], path[256] = "";

		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3)
			continue;
		if (strcmp(perms, "rw-p") || path[0])
			continue;
		/* 8-byte steps: the kernel may have merged the table's mapping
		 * with the one before it */
		for (unsigned long a = lo; a + sizeof(*found) <= hi; a += 8) {
			struct esca_entry *e = (struct esca_entry *)a;

			if (e->nr == SYS_sendto && e->args[0] == (uint64_t)conn &&
			    e->args[2] == LEN && e->status == ESCA_ST_QUEUED) {
				found = e;
				break;
			}
		}
	}
	fclose(maps);
	return found;
}

static void *spoiler(void *arg)
{
	static char buf[1 << 16];
	struct esca_entry *e;
	ssize_t r;

	usleep(300000);		/* the flush blocks in the write */
	e = find_entry();
	if (!e) {
		/* end the blocked write first: an exit now would wait for it */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(peer);
		FAIL("the deferred write is in no anonymous mapping");
	}
	page_ro = (char *)((uintptr_t)e & ~(uintptr_t)(page - 1));
	CHECK(mprotect(page_ro, page, PROT_READ) == 0);
	while ((r = read(peer, buf, sizeof(buf))) > 0)
		got += (size_t)r;
	end_err = r < 0 ? errno : 0;
	return arg;
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sigaction sa = { .sa_sigaction = writable_again, .sa_flags = SA_SIGINFO };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
	static char data[LEN];
	pthread_t th;

	page = sysconf(_SC_PAGESIZE);
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);	/* before libesca's */
	CHECK(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 1) == 0);
	CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
	peer = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
	CHECK(connect(peer, (struct sockaddr *)&a, sizeof(a)) == 0);
	conn = accept(l, NULL, NULL);
	CHECK(conn >= 0);
	CHECK(setsockopt(conn, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
	memset(data, 'L', sizeof(data));
	hooked_init();
	CHECK(pthread_create(&th, NULL, spoiler, NULL) == 0);
	batch_start();
	if (write(conn, data, LEN) != LEN)
		FAIL("the deferred write returned short");
	batch_flush();
	close(conn);
	CHECK(pthread_join(th, NULL) == 0);
	printf("the peer read %zu bytes of the %d-byte write, then %s\n", got, LEN,
	       end_err ? strerror(end_err) : "EOF");
	if (got > LEN)
		FAIL("the write ran twice: the peer read %zu bytes", got);
	if (got == LEN && !end_err)
		FAIL("the connection ended as if whole (EOF after all bytes): not reset");
	return T_PASS;
}
