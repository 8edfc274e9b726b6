"""The one measurer of a running server: wrk against it (pinned to the client
CPUs), the server's CPU time over the run, and perf counting the serving
processes' system calls for exactly the time wrk runs.  measure() is the
short form (requests/s and syscalls per request) the demo and the tests use;
esca-bench drives the parts itself.

perf is started with its events disabled (`--delay=-1`) and enabled and
disabled through its control descriptors (`--control fd:CTL,ACK`) right
around wrk, so perf's attach and exit do not add idle time to the count.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from esca_pkg import proc
from esca_pkg.log import die
from esca_pkg.servers.serve import ServerRun

TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TOTAL_EVENT = "raw_syscalls:sys_enter"
#: the esca module's choice under enabled syscall tracepoints (docs/module.md)
TRACE_BYPASS = Path("/sys/module/esca/parameters/trace_bypass")

#: calls libesca can defer (x86-64 tracepoint names: send() is sendto(),
#: sendfile() is sendfile64())
DEFERRABLE = (
    "close",
    "shutdown",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "sendfile64",
    "setsockopt",
)
#: calls counted for the breakdown in the report; they cannot be deferred
OTHERS = (
    "read",
    "readv",
    "recvfrom",
    "openat",
    "newfstatat",
    "statx",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "accept4",
    "io_uring_enter",
    "ioctl",
)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    socket_errors: int
    non2xx: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


_WRK_REQ = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_ERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> WrkResult:
    m = _WRK_REQ.search(text)
    if not m:
        die(
            "cannot read wrk's output: " + text.strip()[-300:],
            hint="run the same wrk command by hand (esca-bench --debug shows it)",
        )
    seconds = float(m.group(2)) * _UNIT[m.group(3)]
    err = _WRK_ERR.search(text)
    non2xx = _WRK_NON2XX.search(text)
    return WrkResult(
        int(m.group(1)),
        seconds,
        sum(int(x) for x in err.groups()) if err else 0,
        int(non2xx.group(1)) if non2xx else 0,
    )


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def run_wrk(url: str, connections: int, threads: int, seconds: int, cpus: str | None) -> WrkResult:
    argv = pinned(
        [
            "wrk",
            "-t",
            str(min(threads, connections)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "5s",
            url,
        ],
        cpus,
    )
    res = proc.run(
        argv,
        capture=True,
        timeout=seconds + 60,
        hint="check that the server still runs (its error log is in the run directory)",
    )
    return parse_wrk(res.stdout)


def cpu_ns(pids: Sequence[int]) -> int:
    """Time on CPU of every thread of pids so far (schedstat, nanoseconds)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


def cpu_busy_ns(cpus: Sequence[int]) -> int:
    """Time the given CPUs spent busy so far (/proc/stat: all but idle and iowait)."""
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    want = {f"cpu{c}" for c in cpus}
    total = 0
    with open("/proc/stat") as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] in want:
                vals = [int(v) for v in parts[1:9]]
                total += sum(vals) - vals[3] - vals[4]  # minus idle, iowait
    return int(total * tick)


def tracefs() -> Path | None:
    for p in TRACEFS:
        if (p / "events" / "raw_syscalls" / "sys_enter").is_dir():
            return p
    return None


def syscall_events() -> list[str]:
    """perf events to count: the total and one per named syscall this kernel traces."""
    fs = tracefs()
    if fs is None:
        die(
            "the raw_syscalls tracepoints are not available",
            hint="mount tracefs (mount -t tracefs nodev /sys/kernel/tracing) on a kernel "
            "with CONFIG_FTRACE_SYSCALLS",
        )
    names = [
        n
        for n in (*DEFERRABLE, *OTHERS)
        if (fs / "events" / "syscalls" / f"sys_enter_{n}").is_dir()
    ]
    return [TOTAL_EVENT, *(f"syscalls:sys_enter_{n}" for n in names)]


@contextlib.contextmanager
def module_runs_counted_calls() -> Iterator[None]:
    """Counting system calls enables the syscall tracepoints, and under them
    the esca module refuses its batches (they run as plain calls, which a
    syscall monitor must see) unless its trace_bypass is Y: for the count,
    the module runs them as it does unobserved; the setting is restored."""
    if not TRACE_BYPASS.exists() or TRACE_BYPASS.read_text().strip() == "Y":
        yield
        return
    try:
        TRACE_BYPASS.write_text("Y")
    except OSError as err:
        die(
            f"cannot set {TRACE_BYPASS} for the count: {err}",
            hint="run as root: counting system calls under the esca module needs it",
        )
    try:
        yield
    finally:
        TRACE_BYPASS.write_text("N")


class SyscallCounter:
    """perf stat on pids, counting only between enable() and disable()
    (with the esca module's trace_bypass on meanwhile: module_runs_counted_calls)."""

    def __init__(self, pids: Sequence[int], events: Sequence[str], cpus: str | None) -> None:
        self.pids = list(pids)
        self.events = list(events)
        self.cpus = cpus
        self._out = tempfile.NamedTemporaryFile("r", suffix=".perf", delete=False)
        self._ctl_r, self._ctl_w = os.pipe()
        self._ack_r, self._ack_w = os.pipe()
        self._perf: subprocess.Popen[bytes] | None = None
        self._bypass = contextlib.ExitStack()

    def __enter__(self) -> SyscallCounter:
        self._bypass.enter_context(module_runs_counted_calls())
        argv = pinned(
            [
                "perf",
                "stat",
                "-x",
                ",",
                "-o",
                self._out.name,
                "--delay=-1",
                f"--control=fd:{self._ctl_r},{self._ack_w}",
                "-e",
                ",".join(self.events),
                "-p",
                ",".join(str(p) for p in self.pids),
            ],
            self.cpus,
        )
        # Runs in the background for the length of one wrk run.
        try:
            self._perf = proc.spawn(
                argv, stderr=subprocess.PIPE, pass_fds=(self._ctl_r, self._ack_w)
            )
        except BaseException:
            self._bypass.close()
            raise
        os.close(self._ctl_r)
        os.close(self._ack_w)
        return self

    def _command(self, word: str) -> None:
        assert self._perf is not None
        os.write(self._ctl_w, f"{word}\n".encode())
        ready, _, _ = select.select([self._ack_r], [], [], 10.0)
        if not ready or b"ack" not in os.read(self._ack_r, 64):
            self._fail(f"perf stat did not acknowledge '{word}'")

    def _fail(self, what: str) -> None:
        assert self._perf is not None
        with contextlib.suppress(ProcessLookupError):
            self._perf.kill()
        _, err = self._perf.communicate(timeout=10)
        die(
            f"{what}: {err.decode(errors='replace').strip()[-400:]}",
            hint="run as root; perf needs the raw_syscalls tracepoints "
            "(perf stat -e raw_syscalls:sys_enter -p PID)",
        )

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def __exit__(self, *exc: object) -> None:
        assert self._perf is not None
        if self._perf.poll() is None:
            self._perf.send_signal(signal.SIGINT)
        try:
            self._perf.wait(15)
        except subprocess.TimeoutExpired:
            self._perf.kill()
            self._perf.wait()
        os.close(self._ctl_w)
        os.close(self._ack_r)
        self._bypass.close()

    def counts(self) -> dict[str, int]:
        """Counts per event, named by syscall ('total' for raw_syscalls)."""
        text = Path(self._out.name).read_text()
        os.unlink(self._out.name)
        out: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split(",")
            if len(parts) < 3 or line.startswith("#"):
                continue
            event = parts[2]
            if not parts[0].strip().isdigit():
                die(
                    f"perf could not count {event} ({parts[0]})",
                    hint="the serving processes must exist for the whole run; "
                    "see esca-bench --debug",
                )
            name = "total" if event == TOTAL_EVENT else event.removeprefix("syscalls:sys_enter_")
            out[name] = int(parts[0])
        if "total" not in out:
            die(
                "perf stat wrote no count for raw_syscalls:sys_enter: " + text.strip()[-300:],
                hint="run as root; perf stat -e raw_syscalls:sys_enter -p PID must work",
            )
        return out


def require_tools() -> None:
    """wrk, perf and taskset, each with the package that provides it."""
    for tool, pkg in (("wrk", "wrk"), ("perf", "linux-perf"), ("taskset", "util-linux")):
        if shutil.which(tool, path=proc.SYSTEM_PATH) is None:
            die(
                f"{tool} is not installed; measuring a server needs it",
                hint=f"apt-get install {pkg}",
            )


@dataclass(frozen=True)
class Measurement:
    requests: int
    seconds: float
    syscalls: int
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def syscalls_per_request(self) -> float:
        return self.syscalls / self.requests if self.requests else float("nan")


def measure(
    run: ServerRun,
    path: str,
    seconds: int = 5,
    connections: int = 50,
    threads: int = 2,
    cpus: str | None = None,
) -> Measurement:
    """wrk against run for `seconds`, with perf counting the serving processes'
    system calls (raw_syscalls:sys_enter) for exactly that time."""
    require_tools()
    with SyscallCounter(run.serving_pids(), [TOTAL_EVENT], cpus) as counter:
        counter.enable()
        w = run_wrk(run.url + path, connections, threads, seconds, cpus)
        counter.disable()
    return Measurement(w.requests, w.seconds, counter.counts()["total"], w.socket_errors + w.non2xx)
