"""Flush with the wait (docs/libesca.md): batch_flush_wait() sends the batch
with the wait, in one kernel entry, and every other call that waits finds
the batch sent.

tests/c/t_flushwait.c runs each case; its output must be the same with and
without libesca on every backend.  With the module backend (the QEMU suite
runs these with ESCA_BACKEND=module), and with io_uring on kernels that have
IORING_OP_EPOLL_WAIT, the loop's waits must actually take their batches:
one kernel entry per iteration for the flush and the wait.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from libesca_support import esca_env, parse_stats, run_prog
from test_libesca_transparency import assert_same, quiet_env


def uring_epoll_wait() -> bool:
    """Whether this kernel has IORING_OP_EPOLL_WAIT (Linux 6.15)."""
    release = os.uname().release.split(".")
    return (int(release[0]), int(release[1].split("-")[0])) >= (6, 15)


BREAKS = [
    "poll",
    "ppoll",
    "select",
    "pselect",
    "read",
    "recv",
    "recvfrom",
    "recvmsg",
    "readv",
    "nanosleep",
    "usleep",
    "waitpid",
    "join",
    "exit",
]


@pytest.mark.parametrize("kind", BREAKS)
def test_other_blocking_call_finds_the_batch_sent(cprog, libesca: Path, backend: str, kind: str):
    """After 20 iterations of the loop, with the last iteration's segment still
    open, KIND instead of the wait: the write of that batch reached the peer
    before KIND blocked (or, for _exit, before the process ended).  A batch
    left pending would hang the program until the timeout."""
    out = assert_same(
        cprog("t_flushwait"), ["break", kind], quiet_env(libesca, backend), timeout=60
    )
    assert "yes" in out or "sent before _exit" in out


@pytest.mark.parametrize("kind", ["signal", "timeout", "pwait"])
def test_flush_wait_behaves_like_epoll_wait(cprog, libesca: Path, backend: str, kind: str):
    """batch_flush_wait() ended by a signal (SA_RESTART: still EINTR, the
    handler ran), by its timeout (0); a plain epoll_pwait in the open segment
    ended by a pending signal its mask lets in (EINTR, the mask back
    afterwards); the batch went out with or before the wait."""
    assert_same(cprog("t_flushwait"), [kind], quiet_env(libesca, backend), timeout=60)


def test_loop_sends_its_batches_with_the_wait(cprog, libesca: Path, backend: str):
    """The event loop (with short writes every 7th iteration): same bytes as
    without libesca; with the module, nearly every batch travels with the
    next wait, in one kernel entry."""
    iterations = 300
    assert_same(cprog("t_flushwait"), ["loop", str(iterations)], quiet_env(libesca, backend))
    proc = run_prog(cprog("t_flushwait"), ["loop", str(iterations)], esca_env(libesca, backend))
    assert proc.returncode == 0, proc.stderr
    stats = parse_stats(proc.stderr)
    if backend == "off":
        assert stats["waits_carried"] == 0, stats
    elif backend == "module" or uring_epoll_wait():
        # a short write (every 7th: 45,000 bytes into a 4 KiB buffer) stops
        # the batch before the wait, which then runs on its own; so does a
        # batch behind bytes held for the peer
        assert stats["waits_carried"] >= iterations - 2 * (iterations // 7) - 2, stats
