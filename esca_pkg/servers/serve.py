"""Start an installed server on a private configuration, wait until it serves,
stop it: the one way esca-bench, the demo, the tests and the guest checks
run a server, vanilla or under esca-run.  Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import grp
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from esca_pkg import proc, templating
from esca_pkg.log import die
from esca_pkg.runtime import statsdir
from esca_pkg.servers.recipe import Recipe, Workers

FILE_SIZES_KB = (1, 5, 10, 20, 50, 100, 200, 500)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def new_base(prefix: str) -> Path:
    """A private directory readable by the servers' workers (www-data, nobody)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(base, 0o755)
    return base


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


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Esca:
    """How an ESCA run is made: esca-run with these settings."""

    backend: str = "uring"
    library: Path | None = None
    #: live counters: a directory (made by esca-run), or None for esca-run's default
    stats_dir: Path | None = None
    #: libesca settings (ESCA_URING_MIN_OPS=...) for this run only
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ServerRun:
    """One server process tree started by start()."""

    recipe: Recipe
    base: Path
    port: int
    workers: int
    esca: Esca | None
    process: subprocess.Popen[bytes]
    stats_dir: Path | None = None
    output: Path = field(default_factory=Path)

    @property
    def kind(self) -> str:
        return self.recipe.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        log = self.base / "error.log"
        return log if self.recipe.run.config else self.output

    def serving_pids(self) -> list[int]:
        """The processes that serve connections (recipe [run] workers)."""
        main = self.process.pid
        how = self.recipe.run.workers
        if how is Workers.MAIN:
            return [main]
        kids = children(main)
        if how is Workers.PROCESSES:
            title = self.recipe.run.worker_title or ""
            return [p for p in kids if cmdline(p).startswith(title)]
        return kids or [main]

    def fd_count(self) -> int:
        return sum(len(os.listdir(f"/proc/{p}/fd")) for p in self.serving_pids())

    def stop(self, timeout: float = 10.0) -> str:
        """Graceful stop (the recipe's stop signal); returns the server's output."""
        if self.process.poll() is None:
            self.process.send_signal(self.recipe.run.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output.read_text(errors="replace") if self.output.is_file() else ""

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def write_config(
    recipe: Recipe, base: Path, www: Path, port: int, workers: int, access_log: bool = True
) -> Path | None:
    """The recipe's private configuration rendered into base/ (None: it has none)."""
    if not recipe.run.config:
        return None
    user = recipe.run.worker_user if os.geteuid() == 0 else None
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name if user else None
    env = templating.environment(jinja2.FileSystemLoader(str(recipe.directory)))
    try:
        text = env.get_template(recipe.run.config).render(
            base=base,
            www=www,
            port=port,
            workers=workers,
            user=user,
            group=group,
            access_log=access_log,
        )
    except jinja2.TemplateError as e:
        die(
            f"{recipe.directory / recipe.run.config}: {e}",
            hint="fix the configuration template of the recipe",
        )
    (base / "tmp").mkdir(exist_ok=True)
    conf = base / f"{recipe.name}.conf"
    conf.write_text(text)
    return conf


def server_args(recipe: Recipe, config: Path | None, www: Path, port: int) -> list[str]:
    values = {"config": str(config), "www": str(www), "port": str(port)}
    return [a.format(**values) for a in recipe.run.serve_args]


def start(
    recipe: Recipe,
    base: Path,
    www: Path,
    workers: int = 1,
    esca: Esca | None = None,
    *,
    port: int | None = None,
    cpus: str | None = None,
    access_log: bool = True,
    wait: float = 15.0,
) -> ServerRun:
    """Start the installed server serving www, its files in base/, and return once
    its serving processes run and its port accepts connections.

    esca None runs the binary directly (no libesca: the vanilla baseline);
    otherwise it runs under esca-run with esca's settings.  cpus pins it with
    taskset.  The caller's own ESCA_* variables never leak into a run."""
    binary = recipe.run.binary
    if not binary.is_file():
        die(f"{binary} is not installed", hint=recipe.run.install_hint(recipe.name))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    if os.geteuid() == 0 and recipe.run.worker_user:
        # some servers (lighttpd) open their error log after dropping privileges
        pw = pwd.getpwnam(recipe.run.worker_user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    port = port or free_port()
    conf = write_config(recipe, base, www, port, workers, access_log)
    args = server_args(recipe, conf, www, port)
    env = {
        k: v
        for k, v in proc.base_env(system_path=False).items()
        if not (k.startswith("ESCA_") or k == "LD_PRELOAD")
    }
    stats_dir = None
    if esca is None:
        argv = [str(binary), *recipe.run.foreground_args(args, [])]
    else:
        env.update(esca.env)
        argv = [sys.executable, "-m", "esca_pkg.run", recipe.name, "--backend", esca.backend]
        argv += ["--stats"]
        if esca.library is not None:
            argv += ["--library", str(esca.library)]
        stats_dir = esca.stats_dir or statsdir.default_dir(recipe.name)
        if esca.stats_dir is not None:
            argv += ["--stats-dir", str(esca.stats_dir)]
        argv += ["--", *args]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    output = base / "server.out"
    with output.open("wb") as out:
        process = proc.spawn(argv, env=env, inherit=False, cwd=base, stdout=out, new_session=True)
    run = ServerRun(recipe, base, port, workers, esca, process, stats_dir, output)
    want = workers if recipe.run.workers is not Workers.MAIN else 1
    label = recipe.name + (f" (backend {esca.backend})" if esca else " (vanilla)")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            die(
                f"{label} exited at start ({run.describe_exit()}): "
                + output.read_text(errors="replace").strip()[-800:],
                hint=f"see {output} and {run.error_log}",
            )
        if len(run.serving_pids()) >= want and port_open(port):
            return run
        time.sleep(0.05)
    run.stop()
    die(
        f"{label} did not serve on 127.0.0.1:{port} within {wait:g} s",
        hint=f"see {output} and {run.error_log}",
    )
