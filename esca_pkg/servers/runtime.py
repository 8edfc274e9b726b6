"""Run an installed server on a private configuration, vanilla or under esca-run,
and measure it: requests per second (wrk) and system calls per request (perf
stat -e raw_syscalls:sys_enter on the serving processes).

Used by the integration tests (tests/servers/), the A/B benchmark and the demo.
Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from esca_pkg import proc
from esca_pkg.log import die

FILE_SIZES_KB = (1, 5, 10, 20, 50, 100, 200, 500)
SERVER_KINDS = ("nginx", "lighttpd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_site(
    root: Path, sizes_kb: tuple[int, ...] = FILE_SIZES_KB, seed: int = 1
) -> dict[str, bytes]:
    """Files f<N>k.bin of N KiB of pseudo-random bytes (reproducible) plus index.html."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    files: dict[str, bytes] = {}
    for kb in sizes_kb:
        data = rng.randbytes(kb * 1024)
        name = f"f{kb}k.bin"
        (root / name).write_bytes(data)
        files[name] = data
    index = b"<!doctype html><title>ESCA demo</title><p>Served under ESCA.</p>\n"
    (root / "index.html").write_bytes(index)
    files["index.html"] = index
    for p in root.iterdir():
        os.chmod(p, 0o644)
    return files


def nginx_config(base: Path, www: Path, port: int, workers: int) -> str:
    tmp = base / "tmp"
    tmp.mkdir(exist_ok=True)
    return f"""# Written by esca_pkg.servers.runtime: test configuration, 127.0.0.1 only.
worker_processes {workers};
error_log {base}/error.log info;
pid {base}/nginx.pid;
events {{
    worker_connections 4096;
}}
http {{
    default_type application/octet-stream;
    access_log {base}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


def lighttpd_config(base: Path, www: Path, port: int, workers: int) -> str:
    workers_line = f"server.max-worker = {workers}\n" if workers > 1 else ""
    return f"""# Written by esca_pkg.servers.runtime: test configuration, 127.0.0.1 only.
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{base}/error.log"
server.pid-file = "{base}/lighttpd.pid"
server.username = "www-data"
server.groupname = "www-data"
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 30
server.max-connections = 4096
server.max-fds = 8192
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", "" => "application/octet-stream" )
{workers_line}"""


@dataclass
class ServerRun:
    """One server process tree started by start_server()."""

    kind: str
    base: Path
    port: int
    workers: int
    esca: bool
    process: subprocess.Popen[bytes]
    stats_dir: Path | None = None
    output: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.base / "error.log"

    def serving_pids(self) -> list[int]:
        """The processes that serve connections: nginx's workers, lighttpd's workers
        (or lighttpd itself when it runs alone)."""
        children = _children(self.process.pid)
        if self.kind == "nginx":
            return [p for p in children if _cmdline(p).startswith("nginx: worker")]
        if self.kind == "lighttpd" and self.workers > 1:
            return children
        return [self.process.pid]

    def fd_count(self) -> int:
        return sum(len(os.listdir(f"/proc/{p}/fd")) for p in self.serving_pids())

    def stop(self, timeout: float = 10.0) -> str:
        """Graceful stop (SIGQUIT for nginx, SIGINT for lighttpd); returns the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output.read_text(errors="replace") if self.output.is_file() else ""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def server_binary(kind: str) -> Path:
    return Path("/usr/sbin") / kind


def start_server(
    kind: str,
    base: Path,
    www: Path,
    workers: int,
    esca: bool,
    backend: str = "uring",
    library: Path | None = None,
    stats_dir: Path | None = None,
    port: int | None = None,
    wait: float = 10.0,
    esca_env: dict[str, str] | None = None,
) -> ServerRun:
    """Start an installed server on a private configuration in base/.

    esca=False runs the binary directly (no libesca at all: the vanilla
    baseline); esca=True runs it through esca-run with the given backend.
    """
    if kind not in SERVER_KINDS:
        die(f"unknown server {kind}", hint=f"one of {', '.join(SERVER_KINDS)}")
    binary = server_binary(kind)
    if not binary.is_file():
        die(f"{binary} is not installed", hint=f"esca-pkg build {kind} && apt install ./dist/...")
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    port = port or free_port()
    conf = base / f"{kind}.conf"
    text = (nginx_config if kind == "nginx" else lighttpd_config)(base, www, port, workers)
    conf.write_text(text)
    if kind == "lighttpd" and os.geteuid() == 0:
        # lighttpd opens its error log after dropping to server.username.
        pw = pwd.getpwnam("www-data")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    if kind == "nginx":
        server_args = ["-c", str(conf)]
        vanilla = [str(binary), "-g", "daemon off;", *server_args]
    else:
        server_args = ["-D", "-f", str(conf)]
        vanilla = [str(binary), *server_args]
    # The caller's ESCA_* settings do not leak into a run; esca_env gives libesca
    # tuning variables (ESCA_URING_MIN_OPS=...) to an ESCA run explicitly.
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("ESCA_") and k != "ESCA_LIBRARY") and k != "LD_PRELOAD"
    }
    if esca and esca_env:
        env.update(esca_env)
    if esca:
        argv = [sys.executable, "-m", "esca_pkg.run_cli", kind, "--backend", backend, "--stats"]
        if library is not None:
            argv += ["--library", str(library)]
        if stats_dir is not None:
            stats_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(stats_dir, 0o1777)
            argv += ["--stats-dir", str(stats_dir)]
        argv += ["--", *server_args]
    else:
        argv = vanilla
    output = base / "server.out"
    with output.open("wb") as out:
        process = proc.spawn(argv, env=env, inherit=False, stdout=out, new_session=True)
    run = ServerRun(kind, base, port, workers, esca, process, stats_dir, output)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            die(
                f"{kind} exited at start (code {process.returncode}): "
                + output.read_text(errors="replace").strip()[-800:],
                hint=f"see {run.error_log}",
            )
        if len(run.serving_pids()) >= workers and _port_open(port):
            return run
        time.sleep(0.05)
    run.stop()
    die(
        f"{kind} did not start serving on 127.0.0.1:{port} within {wait} s",
        hint=f"see {run.error_log} and {output}",
    )


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


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


_WRK_REQ = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")
_WRK_ERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def measure(
    run: ServerRun, path: str, seconds: float = 5.0, connections: int = 50, threads: int = 2
) -> Measurement:
    """wrk against run for `seconds`, with perf counting the serving processes'
    system calls for exactly that time."""
    for tool, pkg in (("wrk", "wrk"), ("perf", "linux-perf")):
        if shutil.which(tool) is None:
            die(f"{tool} is not installed", hint=f"apt-get install {pkg}")
    pids = ",".join(str(p) for p in run.serving_pids())
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as perf_out:
        perf = proc.spawn(
            [
                "perf",
                "stat",
                "-e",
                "raw_syscalls:sys_enter",
                "-x",
                ",",
                "-o",
                perf_out.name,
                "-p",
                pids,
            ],
            stderr=subprocess.PIPE,
        )
        time.sleep(0.3)  # perf attaches
        if perf.poll() is not None:
            die(
                "perf stat could not attach: " + perf.stderr.read().decode(errors="replace")
                if perf.stderr
                else "perf stat failed",
                hint="run as root; perf needs the raw_syscalls tracepoints",
            )
        wrk = proc.run(
            [
                "wrk",
                "-c",
                str(connections),
                "-t",
                str(threads),
                "-d",
                f"{max(1, round(seconds))}s",
                f"{run.url}{path}",
            ],
            capture=True,
            timeout=seconds + 30,
        )
        perf.send_signal(signal.SIGINT)
        perf.wait(10)
        text = Path(perf_out.name).read_text()
    syscalls = 0
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("raw_syscalls:sys_enter"):
            syscalls = int(parts[0]) if parts[0].isdigit() else 0
    m = _WRK_REQ.search(wrk.stdout)
    if not m:
        die("cannot read wrk's output: " + wrk.stdout.strip()[-300:])
    secs = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    errors = (
        sum(int(x) for x in _WRK_ERR.search(wrk.stdout).groups())
        if _WRK_ERR.search(wrk.stdout)
        else 0
    )
    non2xx = _WRK_NON2XX.search(wrk.stdout)
    if non2xx:
        errors += int(non2xx.group(1))
    return Measurement(int(m.group(1)), secs, syscalls, errors)


def new_base(prefix: str) -> Path:
    """A private directory readable by the servers' workers (www-data, nobody)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(base, 0o755)
    return base
