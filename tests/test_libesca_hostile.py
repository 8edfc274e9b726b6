"""The hostile suite (issue 19, rule 8): programs that do what real programs
do around libesca's hooks -- slow readers, fork and vfork in a segment, fds
under two numbers or closed behind libesca's back, fds handed between
threads, waits libesca cannot see, exit() from another thread, signal
handlers that write or siglongjmp, resets, calls that must fail at once,
files truncated under a sendfile, fd numbers.

Each program of tests/c/hostile runs without libesca (the truth) and with it
on every backend, once with ESCA_ADAPT=0 (every segment records) and once
with the default; what it can observe (stdout, stderr, exit status) must be
the same: libesca may make no difference but speed.  The behaviour each
program checks, and what it prints without libesca, is at the top of its
source.  A hang is a failure: each program has a watchdog that kills it and
everything it started (5 to 20 s, up to 50 s in a QEMU guest), and
each run a 60 s timeout.  Loops are smaller in a QEMU guest (TCG).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from libesca_support import run_prog
from test_libesca_transparency import fd_limits, in_qemu, plain_env, quiet_env, seen

#: how Debian builds packages (dpkg-buildflags): reads go through __read_chk ...
FORTIFY = ("-O2", "-D_FORTIFY_SOURCE=2")
TIMEOUT = 60
#: what each program with its arguments printed without libesca, once per
#: session (the same for every backend: in a QEMU guest, half the time)
PLAIN: dict[tuple[str, tuple[str, ...]], tuple[int, str, str]] = {}


@pytest.fixture(params=["adapt0", "adaptdefault"])
def adapt(request: pytest.FixtureRequest, backend: str) -> str:
    """ESCA_ADAPT=0 (quiet_env's, every segment records) or unset (the default)."""
    if request.param == "adaptdefault" and backend == "module" and in_qemu():
        pytest.skip(
            "the default's pass-through segments are the same code on every backend "
            "(the host runs them); the QEMU guest's time goes to the module's own path"
        )
    return str(request.param)


def hostile(
    cprog, libesca: Path, backend: str, adapt: str, tmp_path: Path, name: str, *args: str
) -> str:
    """Runs tests/c/hostile/NAME with args without libesca (once) and with it;
    both must look the same.  The programs keep their files under tmp_path."""
    prog = cprog(f"hostile/{name}", *(FORTIFY if name == "waits" else ()))
    env = quiet_env(libesca, backend, T_TMPDIR=str(tmp_path))
    if adapt == "adaptdefault":
        del env["ESCA_ADAPT"]
    key = (str(prog), args)
    if key not in PLAIN:
        plain = dict(plain_env(), T_TMPDIR=str(tmp_path))
        without = run_prog(prog, list(args), plain, timeout=TIMEOUT, preexec_fn=fd_limits)
        assert without.returncode == 0, f"{name} {args} fails without libesca:\n{seen(without)}"
        PLAIN[key] = seen(without)
    with_esca = run_prog(prog, list(args), env, timeout=TIMEOUT, preexec_fn=fd_limits)
    _code, out, err = PLAIN[key]
    assert seen(with_esca) == PLAIN[key], (
        f"{name} {' '.join(args)}: without libesca\n{out}{err}"
        f"--- with libesca ({backend}, {adapt})\n{with_esca.stdout}{with_esca.stderr}"
    )
    return with_esca.stdout


@pytest.mark.parametrize("mode", ["flush", "flushwait"])
def test_slow_reader(cprog, libesca, backend, adapt, tmp_path, mode):
    """1. A full send buffer: the loop sees short writes and EAGAIN and
    waits for EPOLLOUT; the slow peer gets every byte in order, and a
    second client is answered (within 300 ms) while the first one pauses.
    flushwait: the loop uses batch_flush_wait()."""
    out = hostile(cprog, libesca, backend, adapt, tmp_path, "slow_reader", mode)
    assert "intact, in order" in out and "paused: yes" in out


@pytest.mark.parametrize("variant", ["exit127", "reply"])
def test_fork_child_write(cprog, libesca, backend, adapt, tmp_path, variant):
    """2. fork() in a segment; the child writes and _exit(127)s (failed exec),
    or writes a request and reads the reply."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "fork_child_write", variant)


def test_vfork_child(cprog, libesca, backend, adapt, tmp_path):
    """3. vfork() in a segment, the child's close + dup2 + exec of /bin/echo:
    the parent's fds stay its own."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "vfork_child")


def test_alias_dup(cprog, libesca, backend, adapt, tmp_path):
    """4. One socket under several numbers (dup, F_DUPFD, dup2 onto 1, 2>&1):
    the writes through them arrive in program order."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "alias_dup")


def test_hidden_close(cprog, libesca, backend, adapt, tmp_path):
    """5. fclose(fdopen), pclose, closedir, fclose(fopen) close a number with
    deferred writes behind libesca's back; a new file takes the number."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "hidden_close")


@pytest.mark.parametrize("variant", ["segment", "flushed"])
def test_thread_handover(cprog, libesca, backend, adapt, tmp_path, variant):
    """6. A thread writes, hands the fd to another that closes it and opens a
    log under the same number: the data goes to the socket, not the log."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "thread_handover", variant)


def test_file_order(cprog, libesca, backend, adapt, tmp_path):
    """7. pwrite, ftruncate, pread, fstat, fsync + rename, stdio, sendmmsg
    after deferred writes to the same file or socket see them first."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "file_order")


def test_cross_fd_order(cprog, libesca, backend, adapt, tmp_path):
    """8. A log record, then a send that wakes a peer which reads the log:
    the record is always there."""
    out = hostile(cprog, libesca, backend, adapt, tmp_path, "cross_fd_order")
    assert "missed: 0 of" in out


def test_mutex_order(cprog, libesca, backend, adapt, tmp_path):
    """9. Threads writing under a mutex: the records arrive in its order.
    A reordering is a race: on the host 5 runs of 2000 segments per thread
    (the libesca before issue 19 failed 7 of 10 single runs of that size
    here, 3 of 10 of the program's default 200)."""
    args = () if in_qemu() else ("2000",)
    for _ in range(1 if in_qemu() else 5):
        hostile(cprog, libesca, backend, adapt, tmp_path, "mutex_order", *args)


def test_thread_churn(cprog, libesca, backend, adapt, tmp_path):
    """9b. Threads end while others begin (at most four alive, each a few
    segments under the mutex): the records arrive whole and in its order.
    A state left by an ending thread, taken by a new one, must not lose its
    backend context, or its claim, to the thread that left it (CI on 6.1:
    the module's flush failed with ENXIO and records arrived reordered).
    On the host 5 runs of 2000 threads (the libesca before the fix died of
    SIGPIPE in 5 of 10 such runs here, 2 of 10 of the default 400)."""
    args = () if in_qemu() else ("2000",)
    for _ in range(1 if in_qemu() else 5):
        hostile(cprog, libesca, backend, adapt, tmp_path, "thread_churn", *args)


EXIT_LINE = "exit: a thread's flush has not moved for 1000 ms"


@pytest.mark.parametrize("variant", ["send", "wait"])
def test_exit_blocked_flush(cprog, libesca, backend, adapt, tmp_path, variant):
    """11b. exit() while another thread is blocked in its own flush (a send on
    a blocking socket whose peer reads nothing) ends the process, as it ends a
    thread blocked in the plain send: after ESCA_WRITE_TIMEOUT_MS without an
    entry finishing (rule 5, as held bytes), with one line on stderr; a
    thread idle in batch_flush_wait() does not delay it.  (Before: the exit
    waited for the flush for ever; the program's watchdog killed it.)"""
    prog = cprog("hostile/exit_blocked_flush")
    plain = run_prog(prog, [variant], dict(plain_env(), T_TMPDIR=str(tmp_path)), timeout=TIMEOUT)
    assert plain.returncode == 0, seen(plain)
    env = quiet_env(libesca, backend, T_TMPDIR=str(tmp_path), ESCA_WRITE_TIMEOUT_MS="1000")
    if adapt == "adaptdefault":
        del env["ESCA_ADAPT"]
    run = run_prog(prog, [variant], env, timeout=TIMEOUT, preexec_fn=fd_limits)
    assert (run.returncode, run.stdout) == (0, plain.stdout), seen(run)
    lines = [ln for ln in run.stderr.splitlines() if ln]
    if backend == "off" or variant == "wait":
        assert lines == [], run.stderr
    elif adapt == "adapt0":
        assert len(lines) == 1 and EXIT_LINE in lines[0], run.stderr
    else:
        # the default may pass the segment through: then the plain send
        # blocked, and nothing is said
        assert all(EXIT_LINE in ln for ln in lines), run.stderr


WAITS = [
    "read_chk",
    "recv_chk",
    "recvfrom_chk",
    "poll_chk",
    "ppoll_chk",
    "getc",
    "fread",
    "recvmmsg",
    "splice",
    "fionread",
    "raw_read",
    "eventfd_read",
    "system",
    "wait4",
    "clockjoin",
    "condwait",
    "mutex",
    "sem_clockwait",
    "mq_receive",
    "msgrcv",
    "flock",
]


@pytest.mark.parametrize("where", ["after", "in"])
@pytest.mark.parametrize("kind", WAITS)
def test_waits(cprog, libesca, backend, adapt, tmp_path, kind, where):
    """10. After an event loop of 20 iterations, a wait libesca does not
    interpose (fortified reads, stdio, eventfd, system, wait4, joins,
    semaphores, message queues, flock, ...) for the peer's answer to the
    last write, after batch_flush() or inside the segment: no hang."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "waits", kind, where)


def test_waits_build_is_fortified(cprog):
    """The waits program reads through the fortified entry points, as a
    Debian-built server does (else test_waits would test plain read)."""
    prog = cprog("hostile/waits", *FORTIFY)
    syms = subprocess.run(["nm", "-D", str(prog)], capture_output=True, text=True, check=True)
    for chk in ("__read_chk", "__recv_chk", "__recvfrom_chk", "__poll_chk", "__ppoll_chk"):
        assert chk in syms.stdout, f"{prog} does not call {chk}"


@pytest.mark.parametrize("variant", ["segment", "carried"])
def test_exit_other_thread(cprog, libesca, backend, adapt, tmp_path, variant):
    """11. exit() in the main thread while a worker's write is pending (in
    its segment, or carried after its batch_flush): the bytes arrive."""
    out = hostile(cprog, libesca, backend, adapt, tmp_path, "exit_other_thread", variant)
    assert "lost in 0 of" in out


def test_siglongjmp_out(cprog, libesca, backend, adapt, tmp_path):
    """12. A SIGALRM handler siglongjmp()s out of write() and epoll_wait():
    the stream stays whole and ordered, later segments arrive."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "siglongjmp_out")


def test_sigpipe(cprog, libesca, backend, adapt, tmp_path):
    """13. Writes to a reset connection and to a pipe without reader: EPIPE
    and SIGPIPE when the call returns (none with MSG_NOSIGNAL, death by the
    default disposition)."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "sigpipe")


def test_immediate_errors(cprog, libesca, backend, adapt, tmp_path):
    """14. Calls that fail at once without libesca fail at once with it."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "immediate_errors")


@pytest.mark.parametrize("variant", ["self", "other"])
def test_sendfile_truncated(cprog, libesca, backend, adapt, tmp_path, variant):
    """15. A file truncated after its sendfile (by the program, or by another
    process while the segment is open): no desynchronised framing."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "sendfile_truncated", variant)


def test_fd_numbers(cprog, libesca, backend, adapt, tmp_path):
    """16. close() then socket/open/accept/pipe/dup/eventfd/epoll in a
    segment: the numbers of a plain run; close(1) + open(log) is stdout."""
    hostile(cprog, libesca, backend, adapt, tmp_path, "fd_numbers")


@pytest.mark.parametrize("variant", ["alarm", "thread"])
def test_handler_order(cprog, libesca, backend, adapt, tmp_path, variant):
    """17. A signal handler and the main loop write numbered records to one
    socket: they arrive whole and in the order they were numbered.  Run 20
    times in a QEMU guest (5 on the host): a handler's write that landed
    while the signal queue moved an earlier handler's write into the table
    went out first, in 2-8 of 80 runs on the module backend in Debian 13's
    guest, never in a single run on the host."""
    for _ in range(20 if in_qemu() else 5):
        hostile(cprog, libesca, backend, adapt, tmp_path, "handler_order", variant)
