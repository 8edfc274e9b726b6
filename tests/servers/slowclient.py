"""A slow reader beside fast clients, against a real server (issue 19).

Used by test_slow_reader.py; also a program with two commands:

    python slowclient.py scenario SPEC.json   # one scenario; prints its result as JSON
    python slowclient.py fast SPEC.json       # the fast clients (a child of `scenario`)

`scenario` runs in a network namespace of its own (unshare(CLONE_NEWNET),
loopback brought up there), where it lowers net.ipv4.tcp_wmem (a sysctl per
namespace since Linux 4.15: the host's value is never touched), starts the
server there (esca_pkg.servers.serve.start: vanilla, or under esca-run),
starts the fast clients in a child process and runs the slow client itself:

- the slow client (SO_RCVBUF set before connect) pipelines its requests in
  one send, then either stops reading for some seconds and then reads
  everything (mode "pause"; with a pause longer than ESCA_WRITE_TIMEOUT_MS,
  the "never reads" case), or reads a few KB at a time with a sleep between
  (mode "slow").  While it does not read it polls the socket for an error or
  a hang-up, so a reset is seen when it happens.  Every byte of every
  response is checked against the file (status line, Content-Length, the
  responses back to back);
- each fast client asks a small file every `interval` seconds on one kept-alive
  connection and checks each answer.  Its latency is measured from the time
  the request was *scheduled*, not sent (as wrk2 does): a client held up for
  3 s counts 3 s of late answers, not one (no coordinated omission).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import math
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
TCP_WMEM = Path("/proc/sys/net/ipv4/tcp_wmem")
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
_MAX_HEADER = 16384


# ---------------------------------------------------------------------------
# The verifier of a stream of pipelined responses


@dataclass
class StreamCheck:
    """Checks a byte stream that must be the responses to `bodies`, in order,
    back to back: status 200, a Content-Length equal to the file's length, the
    file's bytes.  feed() takes whatever recv() returned; the first deviation
    is kept in `problem` and nothing after it is checked."""

    bodies: list[bytes]
    names: list[str]
    done: int = 0  # responses complete and intact
    received: int = 0  # bytes of the stream received
    problem: str | None = None
    _header: bytearray = field(default_factory=bytearray)
    _in_body: bool = False
    _pos: int = 0  # position in the current body

    @property
    def complete(self) -> bool:
        return self.done == len(self.bodies) and self.problem is None

    def _fail(self, what: str) -> None:
        if self.problem is None:
            self.problem = (
                f"response {self.done + 1}/{len(self.bodies)} "
                f"({self.names[self.done] if self.done < len(self.names) else '-'}), "
                f"stream byte {self.received}: {what}"
            )

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.problem is None:
            if self.done >= len(self.bodies):
                self._fail(f"{len(view)} bytes after the last response: {bytes(view[:40])!r}")
                break
            if not self._in_body:
                view = self._feed_header(view)
                continue
            want = self.bodies[self.done]
            n = min(len(view), len(want) - self._pos)
            got = view[:n]
            if got != want[self._pos : self._pos + n]:
                first = next(i for i in range(n) if got[i] != want[self._pos + i])
                self.received += first
                self._fail(
                    f"body byte {self._pos + first} of {len(want)} differs "
                    f"(got {bytes(got[first : first + 24])!r})"
                )
                break
            self._pos += n
            self.received += n
            view = view[n:]
            if self._pos == len(want):
                self.done += 1
                self._in_body = False
                self._pos = 0

    def _feed_header(self, view: memoryview) -> memoryview:
        before = len(self._header)
        self._header += view
        end = self._header.find(b"\r\n\r\n")
        if end < 0:
            if len(self._header) > _MAX_HEADER:
                self._fail(f"no end of header in {len(self._header)} bytes")
            self.received += len(view)
            return view[len(view) :]
        used = end + 4 - before
        self.received += used
        header = bytes(self._header[: end + 4])
        self._header.clear()
        want = self.bodies[self.done]
        m = _STATUS.match(header)
        if not m:
            self._fail(f"not a status line: {header[:60]!r}")
        elif m.group(1) != b"200":
            self._fail(f"status {m.group(1).decode()}, expected 200")
        else:
            lengths = re.findall(rb"\r\ncontent-length:\s*(\d+)", header, re.IGNORECASE)
            if lengths != [str(len(want)).encode()]:
                self._fail(f"Content-Length {lengths}, expected {len(want)}")
            else:
                self._in_body = True
                self._pos = 0
        return view[used:]


# ---------------------------------------------------------------------------
# The slow client


@dataclass
class SlowResult:
    outcome: str  # complete | reset | closed | corrupt | timeout | error
    responses: int  # complete and intact
    requested: int
    bytes: int  # bytes of the stream received (intact up to `problem`, if any)
    seconds: float  # from the requests sent to the end
    reset_at: float | None  # seconds after the requests when an error/hang-up was seen
    detail: str = ""


def request_bytes(name: str) -> bytes:
    return f"GET /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: esca-slow\r\n\r\n".encode()


def slow_client(
    port: int,
    names: list[str],
    files: dict[str, bytes],
    *,
    mode: str,
    pause: float = 0.0,
    chunk: int = 8192,
    every: float = 0.05,
    rcvbuf: int = 4096,
    deadline: float = 60.0,
) -> SlowResult:
    check = StreamCheck([files[n] for n in names], list(names))
    start = time.monotonic()
    reset_at: float | None = None
    outcome, detail = "timeout", ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"".join(request_bytes(n) for n in names))
        start = time.monotonic()
        end = start + deadline
        if mode == "pause":
            # Read nothing, but watch for an error or a hang-up (a reset by the
            # server) while the data waits in the receive buffer.
            poller = select.poll()
            poller.register(s, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
            until = start + pause
            while (now := time.monotonic()) < until:
                if reset_at is None and poller.poll(max(1, int(min(0.05, until - now) * 1000))):
                    reset_at = time.monotonic() - start
                elif reset_at is not None:
                    time.sleep(min(0.05, until - now))
        s.settimeout(1.0)
        while not check.complete and check.problem is None:
            if time.monotonic() > end:
                outcome, detail = "timeout", f"{deadline:g} s deadline"
                break
            try:
                data = s.recv(chunk if mode == "slow" else 1 << 20)
            except TimeoutError:
                continue
            except OSError as e:
                if reset_at is None:
                    reset_at = time.monotonic() - start
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    outcome, detail = "reset", errno.errorcode[e.errno or 0]
                else:
                    outcome, detail = "error", f"{type(e).__name__}: {e}"
                break
            if not data:
                if reset_at is None:
                    reset_at = time.monotonic() - start
                outcome, detail = "closed", "EOF"
                break
            check.feed(data)
            if mode == "slow":
                time.sleep(every)
        if check.problem is not None:
            outcome, detail = "corrupt", check.problem
        elif check.complete:
            outcome = "complete"
    return SlowResult(
        outcome=outcome,
        responses=check.done,
        requested=len(names),
        bytes=check.received,
        seconds=time.monotonic() - start,
        reset_at=reset_at,
        detail=detail,
    )


# ---------------------------------------------------------------------------
# The fast clients


@dataclass
class FastResult:
    latencies_ms: list[float]  # per request, from its scheduled time to its full answer
    service_ms: list[float]  # per request, from its send to its full answer
    errors: list[str]
    reconnects: int

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _read_response(s: socket.socket, buf: bytearray, want: bytes) -> str | None:
    """One response off s (buf: bytes already read); None when it is `want`."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = s.recv(65536)
        if not data:
            return "connection closed before the header"
        buf += data
    header = bytes(buf[: end + 4])
    del buf[: end + 4]
    m = _STATUS.match(header)
    lengths = re.findall(rb"\r\ncontent-length:\s*(\d+)", header, re.IGNORECASE)
    if not m or m.group(1) != b"200" or len(lengths) != 1:
        return f"bad header {header[:80]!r}"
    n = int(lengths[0])
    while len(buf) < n:
        data = s.recv(65536)
        if not data:
            return "connection closed in the body"
        buf += data
    body = bytes(buf[:n])
    del buf[:n]
    return None if body == want else f"body of {n} bytes differs from the file"


def fast_client(
    port: int,
    name: str,
    want: bytes,
    interval: float,
    phase: float,
    t0: float,
    stop: threading.Event,
    out: FastResult,
    timeout: float,
) -> None:
    sock: socket.socket | None = None
    buf = bytearray()
    k = 0
    req = request_bytes(name)
    stopped_at = math.inf
    while True:
        scheduled = t0 + phase + k * interval
        if stop.is_set():
            stopped_at = min(stopped_at, time.monotonic())
        # after the stop: the slots scheduled before it, for `timeout` at most
        if scheduled > stopped_at or time.monotonic() > stopped_at + timeout:
            break
        k += 1
        now = time.monotonic()
        if scheduled > now:
            time.sleep(scheduled - now)
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf.clear()
            sent = time.monotonic()
            sock.sendall(req)
            problem = _read_response(sock, buf, want)
        except OSError as e:
            problem = f"{type(e).__name__}: {e}"
        done = time.monotonic()
        if problem is None:
            out.latencies_ms.append((done - scheduled) * 1000)
            out.service_ms.append((done - sent) * 1000)
        else:
            out.errors.append(f"request {k}: {problem}")
            if sock is not None:
                sock.close()
                sock = None
                out.reconnects += 1
    if sock is not None:
        sock.close()


def run_fast(spec: dict[str, Any]) -> None:
    """The fast clients, one thread each; 'ready' on stdout once the schedule
    starts, then until a line on stdin (or its end) says stop; then the
    result as one JSON line."""
    sys.setswitchinterval(0.0005)
    want = Path(spec["file"]).read_bytes()
    name = Path(spec["file"]).name
    clients, interval = int(spec["clients"]), float(spec["interval"])
    stop = threading.Event()
    results = [FastResult([], [], [], 0) for _ in range(clients)]
    t0 = time.monotonic() + 0.05
    threads = [
        threading.Thread(
            target=fast_client,
            args=(
                spec["port"],
                name,
                want,
                interval,
                i * interval / clients,
                t0,
                stop,
                results[i],
                float(spec.get("timeout", 60)),
            ),
            daemon=True,
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    for t in threads:
        t.join()
    total = FastResult(
        [x for r in results for x in r.latencies_ms],
        [x for r in results for x in r.service_ms],
        [x for r in results for x in r.errors],
        sum(r.reconnects for r in results),
    )
    print(json.dumps(dataclasses.asdict(total)), flush=True)


# ---------------------------------------------------------------------------
# One scenario, in a network namespace of its own


def private_network(tcp_wmem: str | None) -> None:
    """This process into a new network namespace with loopback up and, there,
    net.ipv4.tcp_wmem = tcp_wmem (the kernel resolves /proc/sys/net in the
    writer's namespace; the test checks that the host's value never moves)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, siocgifflags, ifr))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))
    if tcp_wmem:
        TCP_WMEM.write_text(tcp_wmem)
        if TCP_WMEM.read_text().split() != tcp_wmem.split():
            raise RuntimeError(f"tcp_wmem is {TCP_WMEM.read_text()!r} after writing {tcp_wmem!r}")


def esca_exit_counters(text: str) -> dict[str, int]:
    """Counters summed over libesca's exit lines (`esca: pid=... name=value ...`)."""
    sums: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("esca: pid="):
            for k, v in re.findall(r"\b([a-z_]+)=(\d+)\b", line):
                if k != "pid":
                    sums[k] = sums.get(k, 0) + int(v)
    return sums


def nginx_template(base: Path, sndbuf: str) -> Path:
    """A copy of the recipe's serve.conf.j2 whose listen directive carries
    sndbuf=...; the directory of the copy (the recipe's own is never edited)."""
    from esca_pkg.servers import recipe

    src = recipe.get("nginx").directory / "serve.conf.j2"
    text = src.read_text()
    listen = "listen 127.0.0.1:{{ port }};"
    if listen not in text:
        raise RuntimeError(f"{src}: no line {listen!r} to add sndbuf to")
    d = base / "conf-template"
    d.mkdir(parents=True, exist_ok=True)
    (d / "serve.conf.j2").write_text(
        text.replace(listen, f"listen 127.0.0.1:{{{{ port }}}} sndbuf={sndbuf};")
    )
    return d


def run_scenario(spec: dict[str, Any]) -> dict[str, Any]:
    from esca_pkg.servers import recipe, serve

    private_network(spec.get("tcp_wmem"))
    base = Path(spec["base"])
    base.mkdir(parents=True, exist_ok=True)
    rec = recipe.get(spec["kind"])
    if spec["kind"] == "nginx" and spec.get("sndbuf"):
        rec = dataclasses.replace(rec, directory=nginx_template(base, spec["sndbuf"]))
    esca = None
    if spec.get("esca") is not None:
        e = spec["esca"]
        esca = serve.Esca(
            backend=e["backend"],
            library=Path(e["library"]),
            stats_dir=base / "stats",
            env=dict(e.get("env", {})),
        )
    www = Path(spec["www"])
    files = {p.name: p.read_bytes() for p in www.iterdir() if p.is_file()}
    result: dict[str, Any] = {"tcp_wmem": TCP_WMEM.read_text().split()}
    run = serve.start(rec, base / "server", www, 1, esca)
    fast: subprocess.Popen[str] | None = None
    try:
        fast_spec = {**spec["fast"], "port": run.port, "file": str(www / spec["fast"]["name"])}
        fast = subprocess.Popen(
            [sys.executable, __file__, "fast", json.dumps(fast_spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert fast.stdout is not None and fast.stdin is not None
        if fast.stdout.readline().strip() != "ready":
            raise RuntimeError("the fast clients did not start")
        began = time.monotonic()
        time.sleep(float(spec.get("lead", 0.5)))
        slow = spec.get("slow")
        if slow:
            res = slow_client(
                run.port,
                slow["names"],
                files,
                mode=slow["mode"],
                pause=float(slow.get("pause", 0)),
                chunk=int(slow.get("chunk", 8192)),
                every=float(slow.get("every", 0.05)),
                rcvbuf=int(slow.get("rcvbuf", 4096)),
                deadline=float(slow.get("deadline", 60)),
            )
            result["slow"] = dataclasses.asdict(res)
        rest = float(spec["duration"]) - (time.monotonic() - began)
        if rest > 0:
            time.sleep(rest)
        fast.stdin.write("stop\n")
        fast.stdin.flush()
        out, _ = fast.communicate(timeout=float(spec.get("fast_timeout", 120)))
        result["fast"] = json.loads(out.strip().splitlines()[-1])
        result["seconds"] = time.monotonic() - began
    finally:
        if fast is not None and fast.poll() is None:
            fast.kill()
            fast.wait()
        output = run.stop()
        log = run.error_log.read_text(errors="replace") if run.error_log.is_file() else ""
        result["server_exit"] = run.process.returncode
        result["esca"] = esca_exit_counters(log + "\n" + output)
        result["server_log_tail"] = (log + output)[-3000:]
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("scenario", "fast"):
        print(__doc__, file=sys.stderr)
        return 2
    arg = argv[2]
    spec = json.loads(Path(arg).read_text() if not arg.lstrip().startswith("{") else arg)
    if argv[1] == "fast":
        run_fast(spec)
        return 0
    # a SIGTERM from the test (its timeout) still stops the server (run_scenario's finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    try:
        result = run_scenario(spec)
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"}
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv))
