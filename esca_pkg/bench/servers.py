"""Start an installed, patched server for one benchmark variant: always under
esca-run with libesca preloaded (backend off for the vanilla baseline, so A
and B run the same binary and library), pinned to the server CPUs, on a
127.0.0.1 configuration.

The configurations are those of esca_pkg.servers.runtime (the servers'
integration tests), with one change for nginx: no access log, as in the
reference workload (a log line per request is a write() that would dominate
small-file runs and that operators buffer anyway).  lwan, which runtime does
not start, serves a directory from its command line.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import sys
import time
from pathlib import Path

from esca_pkg import proc
from esca_pkg.bench.measure import pinned
from esca_pkg.log import die
from esca_pkg.servers import hooks, runtime

KINDS = ("nginx", "lighttpd", "lwan")
BINARIES = {
    "nginx": Path("/usr/sbin/nginx"),
    "lighttpd": Path("/usr/sbin/lighttpd"),
    "lwan": Path("/usr/bin/lwan"),
}


def hooked(kind: str) -> bool:
    """The server is installed and its binary references the three hooks."""
    binary = BINARIES[kind]
    if not binary.is_file():
        return False
    try:
        return hooks.hook_state(binary)[0] is hooks.HookState.HOOKED
    except hooks.ElfError:
        return False


def require_server(kind: str) -> None:
    binary = BINARIES[kind]
    fix = (
        f"esca-pkg build {kind}"
        + (" --source PATH" if kind == "lwan" else "")
        + f" && apt install ./dist/{kind}_*+esca*.deb"
    )
    if not binary.is_file():
        die(f"{kind} is not installed ({binary} is missing)", hint=fix)
    if not hooked(kind):
        die(f"{binary} has no ESCA hooks: the A/B would compare libesca with itself", hint=fix)


def _bench_nginx_config(base: Path, www: Path, port: int, workers: int) -> str:
    text = runtime.nginx_config(base, www, port, workers)
    text, n = re.subn(r"^(\s*)access_log [^;]*;", r"\1access_log off;", text, flags=re.M)
    if n != 1:
        die(
            "the nginx test configuration of esca_pkg.servers.runtime has no access_log line",
            hint="report this: esca_pkg/bench/servers.py expects one to switch off",
        )
    return text


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(
    kind: str,
    base: Path,
    www: Path,
    backend: str,
    library: Path,
    workers: int,
    cpus: str | None,
    stats_dir: Path,
    esca_env: dict[str, str] | None = None,
    wait: float = 15.0,
) -> runtime.ServerRun:
    """The server under `esca-run --backend BACKEND`, serving www on 127.0.0.1.

    esca_env: libesca settings (ESCA_URING_MIN_OPS=..., ...) for this run; the
    caller's own ESCA_* variables never leak in."""
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    stats_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(stats_dir, 0o1777)
    port = runtime.free_port()
    if kind == "nginx":
        conf = base / "nginx.conf"
        conf.write_text(_bench_nginx_config(base, www, port, workers))
        server_args = ["-c", str(conf)]
    elif kind == "lighttpd":
        conf = base / "lighttpd.conf"
        conf.write_text(runtime.lighttpd_config(base, www, port, workers))
        server_args = ["-D", "-f", str(conf)]
        if os.geteuid() == 0:  # lighttpd opens its error log as server.username
            pw = pwd.getpwnam("www-data")
            os.chown(base, pw.pw_uid, pw.pw_gid)
    else:
        server_args = ["-r", str(www), "-l", f"127.0.0.1:{port}"]
    argv = pinned(
        [
            sys.executable,
            "-m",
            "esca_pkg.run_cli",
            kind,
            "--backend",
            backend,
            "--stats",
            "--stats-dir",
            str(stats_dir),
            "--library",
            str(library),
            "--",
            *server_args,
        ],
        cpus,
    )
    env = {
        k: v
        for k, v in proc.base_env(system_path=False).items()
        if not (k.startswith("ESCA_") or k == "LD_PRELOAD")
    }
    env.update(esca_env or {})
    output = base / "server.out"
    with output.open("wb") as out:
        process = proc.spawn(argv, env=env, inherit=False, cwd=base, stdout=out, new_session=True)
    run = runtime.ServerRun(kind, base, port, workers, True, process, stats_dir, output)
    want = workers if kind != "lwan" else 1
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            die(
                f"{kind} (backend {backend}) exited at start with code {process.returncode}: "
                + output.read_text(errors="replace").strip()[-600:],
                hint=f"see {output} and {run.error_log}",
            )
        if len(run.serving_pids()) >= want and _port_open(port):
            return run
        time.sleep(0.05)
    run.stop()
    die(
        f"{kind} (backend {backend}) did not serve 127.0.0.1:{port} within {wait:g} s",
        hint=f"see {output} and {run.error_log}",
    )
