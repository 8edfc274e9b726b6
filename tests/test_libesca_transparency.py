"""libesca is invisible (issue 10): a program cannot tell it runs under ESCA
except by its speed.

Each case runs a program of tests/c without libesca and with it, on each
backend (off, uring; module in the QEMU guests), and compares what the program
can see: its output (stdout and stderr, where it prints its fd numbers, return
values and errno), its exit status.  The programs and what each one checks are
described at the top of their source.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from libesca_support import esca_env, parse_stats, run_prog


def plain_env() -> dict[str, str]:
    """The environment without libesca."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("ESCA_")}


def quiet_env(libesca: Path, backend: str, **extra: str) -> dict[str, str]:
    """libesca on `backend`, every segment recording, no summary on stderr."""
    return esca_env(libesca, backend, ESCA_STATS="0", **extra)


@pytest.fixture(params=["ring-registered", "ring-fd"])
def ring(request: pytest.FixtureRequest, backend: str) -> dict[str, str]:
    """How the uring backend holds its ring: registered with the thread and
    with no fd (Linux 5.18 on), or -- ring registration refused by a seccomp
    filter of the test program, as before 5.18 -- through an fd among
    libesca's own, the way the module backend always holds its device fd.
    Returns the environment that selects it."""
    if request.param == "ring-fd":
        if backend != "uring":
            pytest.skip("only the uring backend has a ring to register")
        return {"T_REFUSE_RING_REGISTER": "1"}
    return {}


def fd_limits() -> None:
    """The child's RLIMIT_NOFILE: soft 1024 under the hard limit, as systemd
    gives services, so that libesca's own fds go above the soft limit (the
    dup2 case raises the soft limit past 4096 itself)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def seen(proc: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout, proc.stderr


def assert_same(prog: Path, args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Runs prog without and with libesca (same limits); both must look the same."""
    plain = plain_env()
    plain.update({k: v for k, v in env.items() if k.startswith("T_")})
    without = run_prog(prog, args, plain, timeout=timeout, preexec_fn=fd_limits)
    assert without.returncode == 0, f"{prog.name} {args} fails without libesca:\n{seen(without)}"
    with_esca = run_prog(prog, args, env, timeout=timeout, preexec_fn=fd_limits)
    assert seen(with_esca) == seen(without), (
        f"{prog.name} {' '.join(args)}: without libesca\n{without.stdout}{without.stderr}"
        f"--- with libesca ({env.get('ESCA_BACKEND')})\n{with_esca.stdout}{with_esca.stderr}"
    )
    return with_esca.stdout


# --- the event loop of the issue ---------------------------------------------------


def in_qemu() -> bool:
    vendor = Path("/sys/class/dmi/id/sys_vendor")
    return vendor.exists() and vendor.read_text().strip() == "QEMU"


def evloop_scale() -> tuple[int, int]:
    """(runs, iterations): the issue's 50 x 100,000, or what the environment
    says; in a QEMU TCG guest (the module backend) 4 x 10,000: TCG runs this
    loop some 50 times slower, and the guest step has 900 s for all of
    libesca's tests."""
    runs, iterations = (4, 10_000) if in_qemu() else (50, 100_000)
    return (
        int(os.environ.get("ESCA_EVLOOP_RUNS", runs)),
        int(os.environ.get("ESCA_EVLOOP_ITERATIONS", iterations)),
    )


def test_event_loop_no_spurious_eintr(cprog, libesca, backend):
    """epoll_wait -> read one byte -> three 1-byte writes in a segment, a forked
    peer playing ping-pong, no signal handler anywhere: epoll_wait() never
    fails with EINTR.  Half the runs with ESCA_ADAPT=0, half with the default."""
    prog = cprog("t_evloop")
    runs, iterations = evloop_scale()
    baseline = run_prog(prog, [str(iterations)], plain_env(), timeout=600)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr

    def one(k: int) -> subprocess.CompletedProcess[str]:
        env = quiet_env(libesca, backend, ESCA_ADAPT=str(k % 2))
        return run_prog(prog, [str(iterations)], env, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(one, range(runs)))
    eintr = [int(m.group(1)) for p in procs for m in [re.search(r"eintr=(\d+)", p.stdout)] if m]
    assert len(eintr) == runs, [seen(p) for p in procs if "eintr=" not in p.stdout]
    assert sum(eintr) == 0, f"{sum(eintr)} spurious EINTR in {runs} runs of {iterations}: {eintr}"
    for p in procs:
        assert seen(p) == seen(baseline)


# --- blocking waits ------------------------------------------------------------------

WAITS = ["epoll_wait", "epoll_pwait", "poll", "select", "nanosleep", "read", "accept", "futex"]


@pytest.mark.parametrize("kind", WAITS)
def test_blocking_wait_not_cut_short(cprog, libesca, backend, kind):
    """A timer-driven peer ends each wait; set-up, flushes, a thread exiting
    and a forked child batching on its own must not end it earlier."""
    assert_same(cprog("t_waits"), [kind, "3"], quiet_env(libesca, backend))


# --- file descriptors --------------------------------------------------------------


def test_fd_numbers_unchanged(cprog, libesca, backend, ring):
    """open, socket, accept, pipe, dup, epoll, eventfd, a thread's and a child's
    fds: the numbers of a run without libesca; a child forked while another
    thread batches has no fd of ours."""
    out = assert_same(cprog("t_fds"), ["numbers"], quiet_env(libesca, backend, **ring))
    assert "open: 3\n" in out


@pytest.mark.parametrize("limit", ["soft-1024", "soft-8192"])
def test_close_everything_keeps_deferred_calls(cprog, libesca, backend, ring, limit):
    """close_range(3, ~0U, 0), closefrom(3) and a close() loop over every fd
    (up to the soft limit: at 8192 libesca's fds are under it), inside
    segments with deferred writes: every write arrives, every close happens,
    an fd number reused by eventfd() is an eventfd to libesca, and libesca
    keeps batching afterwards."""
    prog = cprog("t_fds")
    args = ["closeall"] + (["high"] if limit == "soft-8192" else [])
    assert_same(prog, args, quiet_env(libesca, backend, **ring))
    proc = run_prog(prog, args, esca_env(libesca, backend, **ring), preexec_fn=fd_limits)
    stats = parse_stats(proc.stderr)
    assert stats["errors_other"] == 0 and stats["bytes_lost"] == 0, stats
    if backend != "off":
        assert stats["deferred"] > 0, stats


def test_dup2_onto_libesca_fds(cprog, libesca, backend, ring):
    """dup2/dup3 onto every number around 4096 (where libesca keeps its fds
    when the soft limit is high): the program gets them all, libesca goes on."""
    prog = cprog("t_fds")
    assert_same(prog, ["dup2"], quiet_env(libesca, backend, **ring))
    proc = run_prog(prog, ["dup2"], esca_env(libesca, backend, **ring), preexec_fn=fd_limits)
    stats = parse_stats(proc.stderr)
    assert stats["errors_other"] == 0 and stats["bytes_lost"] == 0, stats


def test_fd_table_grows_only_in_esca_init(cprog, libesca, backend, ring):
    """libesca's own fds sit above the soft limit, which grows the kernel's fd
    table: in esca_init(), never while the program serves -- growing a table
    that other tasks share (io-wq workers, threads) waits for an RCU grace
    period (15 ms here, at the first deferred send: lighttpd's SCGI backend,
    which gives a request 10 ms, answered 500)."""
    prog = cprog("t_fds")
    out = assert_same(prog, ["table"], quiet_env(libesca, backend, **ring))
    assert "did not grow" in out and "read 16 bytes" in out, out
    proc = run_prog(prog, ["table"], esca_env(libesca, backend, **ring), preexec_fn=fd_limits)
    stats = parse_stats(proc.stderr)
    if backend != "off":
        assert stats["write"] + stats["send"] >= 8, stats


# --- exec ----------------------------------------------------------------------------

EXECS = [
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
    "execle",
    "execlp",
    "execveat",
    "fexecve",
    "fail",
    "vfork",
]


@pytest.mark.parametrize("how", EXECS)
def test_exec_from_segment(cprog, libesca, backend, ring, how, tmp_path):
    """exec of a program that is not hooked, from inside a segment: the
    segment's writes come out first, no fd of libesca's reaches the new image
    (it lists its fds), no live stats file is left behind; a failed exec or
    a vfork() child's leaves the segment whole."""
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    env = quiet_env(libesca, backend, ESCA_STATS_DIR=str(stats_dir), **ring)
    out = assert_same(cprog("t_exec"), [how], env)
    if how not in ("fail", "vfork"):
        assert out.startswith("in the segment, before the exec\nstill before it\nafter the exec\n")
    assert list(stats_dir.iterdir()) == []


# --- RLIMIT_NOFILE -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["soft", "hard", "full"])
def test_exact_fd_limit(cprog, libesca, backend, ring, mode):
    """RLIMIT_NOFILE set to exactly what the program needs: its own opens
    succeed, the next one fails with EMFILE, a wait after a set-up that found
    no free fd is not cut short, the hooks leave errno alone."""
    if backend == "module" and mode == "hard":
        pytest.skip(
            "the module's device fd needs a number; with the hard limit at the "
            "program's need it takes the top one (docs/libesca.md, Transparency)"
        )
    out = assert_same(cprog("t_rlimit"), [mode], quiet_env(libesca, backend, **ring))
    assert "one more: -1 (Too many open files)" in out


# --- signals -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["restart", "norestart"])
def test_signals_during_segments(cprog, libesca, backend, mode):
    """A signal while blocked in read() or epoll_wait() inside a segment: the
    handler runs, the call restarts (SA_RESTART, read) or fails with EINTR,
    the stream keeps program order -- as without libesca."""
    out = assert_same(cprog("t_signals"), [mode, "6"], quiet_env(libesca, backend))
    assert "the stream: " + "aHb" * 6 in out
