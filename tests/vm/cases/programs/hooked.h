/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the hooked programs: programs patched with libesca's hooks
 * (weak, as in the servers), run by tests/vm/guest/observe.sh with libesca
 * preloaded and the module backend.  Exit 0 pass, 1 fail (with a line
 * saying what).
 */
#ifndef HOOKED_H
#define HOOKED_H

#include "../esca_test.h"
#include "../../../../libesca/include/esca.h"

/* The hooks must be there: the program is useless without libesca. */
static inline void hooked_init(void)
{
	if (!esca_init || !batch_start || !batch_flush)
		FAIL("libesca is not preloaded");
	CHECK(esca_init() == 0);
}

/* Opens path for writing as fd `at` (a number audit rules can name). */
static inline int open_at(const char *path, int at)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0 && dup2(fd, at) == at);
	close(fd);
	return at;
}

#endif
