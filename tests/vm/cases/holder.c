/*
 * Not a case: a helper of the load/unload cycles.  Opens N contexts with
 * registered tables, prints "ready", then sleeps until killed.
 */
#include "esca_test.h"

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;

	for (int i = 0; i < n; i++) {
		int fd = esca_open();

		CHECK(esca_register(fd, table_alloc(128), 128) == 0);
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
