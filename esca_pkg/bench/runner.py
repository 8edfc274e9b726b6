"""The server A/B benchmark: for each server and ESCA backend, the vanilla run
(libesca preloaded with --backend off) and the ESCA run of the same binary.

Round-major: each round starts a fresh pair of servers (A and B) and runs one
A/B pair of every cell (file size x connections), the two runs of a pair back
to back, A first in odd rounds and B first in even ones.  A fresh pair per
round matters: measured here, two identical nginx instances differ by up to
15% in requests/s for their whole life (an instance effect), which a single
long-lived pair would report as an A/B difference.  The last round also makes
the counted run of each variant, with perf on the serving processes."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from esca_pkg import log
from esca_pkg.bench import machine, summary
from esca_pkg.bench.machine import Placement
from esca_pkg.log import EscaError, die
from esca_pkg.runtime import stats
from esca_pkg.servers import measure, recipe, serve
from esca_pkg.servers.serve import ServerRun

SCHEMA = "esca-bench/servers/2"
#: results esca-bench report reads (summaries recomputed from the raw samples)
SCHEMAS_READ = ("esca-bench/servers/1", SCHEMA)
SIZES_KB = serve.FILE_SIZES_KB
CONNECTIONS = (10, 50, 200)
#: a pair starts when the benchmark's CPUs are less busy than this (ours idle),
#: or after Plan.quiet_wait seconds of waiting
QUIET_BUSY = 0.15
LIBESCA_COUNTERS = (
    "segments",
    "deferred",
    "flushes",
    "flushed_calls",
    "kernel_entries",
    "direct_in_segment",
    "bytes_lost",
    "errors_other",
)


@dataclass(frozen=True)
class Plan:
    servers: tuple[str, ...]
    backends: tuple[str, ...]  # ESCA backends; each is compared with "off"
    sizes_kb: tuple[int, ...]
    connections: tuple[int, ...]
    duration: int  # seconds of one throughput run (wrk takes whole seconds)
    repeats: int  # rounds: A/B pairs per cell, each from a fresh pair of servers
    warmup: int  # seconds of an unrecorded run of each fresh server
    count_duration: int  # seconds of the counted run of each variant
    library: Path
    placement: Placement
    quiet_wait: float = 30.0  # longest wait for other processes to leave the CPUs, per pair
    esca_env: tuple[tuple[str, str], ...] = ()  # libesca settings for both variants

    def cells(self) -> int:
        return len(self.servers) * len(self.backends) * len(self.sizes_kb) * len(self.connections)

    def steps(self) -> int:
        """Runs of wrk, for the progress bar."""
        warm = 2 * self.repeats * len(self.servers) * len(self.backends) if self.warmup else 0
        return self.cells() * 2 * (self.repeats + 1) + warm

    def estimate_seconds(self) -> float:
        per_cell = 2 * (self.repeats * self.duration + self.count_duration)
        starts = 2 * self.repeats * len(self.servers) * len(self.backends)
        return self.cells() * per_cell + 0.35 * self.steps() + starts * (1 + self.warmup)


def _libesca(run: ServerRun) -> dict[str, int]:
    """libesca's counters summed over the serving processes (live stats files)."""
    assert run.stats_dir is not None
    pids = set(run.serving_pids())
    total = dict.fromkeys(LIBESCA_COUNTERS, 0)
    for s in stats.read_dir(run.stats_dir):
        if s.pid not in pids:
            continue
        total["deferred"] += s.deferred_total
        for k in LIBESCA_COUNTERS:
            if k != "deferred":
                total[k] += s.counters[k]
        # counters a newer libesca has (waits made inside a flush)
        for k in summary.LIBESCA_WAITS:
            if k in s.counters:
                total[k] = total.get(k, 0) + s.counters[k]
    return total


def _probe(run: ServerRun, path: str, size: int) -> str:
    """'' when one GET of path returns 200 with size bytes, else what went wrong.

    The request is wrk's (no Accept-Encoding: lwan master never answers one
    with "Accept-Encoding: identity")."""
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        return f"GET {path}: {e}"
    finally:
        conn.close()
    if resp.status != 200 or len(body) != size:
        return f"GET {path}: status {resp.status}, {len(body)} of {size} bytes"
    return ""


class Runner:
    def __init__(self, plan: Plan, workdir: Path, step: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.step = step
        self.events = measure.syscall_events()
        self.pl = plan.placement
        self.library = workdir / "libesca.so.0"  # the run's copy (see run())
        self.contention: dict[str, Any] = {
            "waited_seconds": 0.0,
            "pairs_not_quiet": 0,
            "quiet_busy_pct": 100 * QUIET_BUSY,
            "quiet_wait_seconds": plan.quiet_wait,
        }

    def wait_quiet(self) -> None:
        """Before a pair: wait (up to plan.quiet_wait s) until other processes
        leave the benchmark's CPUs alone (busy under QUIET_BUSY while ours idle)."""
        cpus = sorted(set(self.pl.cpu_list("server")) | set(self.pl.cpu_list("client")))
        deadline = time.monotonic() + self.plan.quiet_wait
        t0 = time.monotonic()
        while True:
            b0, s0 = measure.cpu_busy_ns(cpus), time.monotonic()
            time.sleep(0.25)
            busy = (measure.cpu_busy_ns(cpus) - b0) / ((time.monotonic() - s0) * 1e9 * len(cpus))
            if busy < QUIET_BUSY:
                break
            if time.monotonic() > deadline:
                self.contention["pairs_not_quiet"] += 1
                break
        self.contention["waited_seconds"] += time.monotonic() - t0

    def sample(self, run: ServerRun, path: str, conns: int, seconds: int) -> dict[str, Any]:
        pids = run.serving_pids()
        server_cpus = self.pl.cpu_list("server")
        before, busy0, t0 = measure.cpu_ns(pids), measure.cpu_busy_ns(server_cpus), time.monotonic()
        w = measure.run_wrk(
            run.url + path, conns, self.pl.wrk_threads, seconds, self.pl.client_cpus
        )
        cpu = measure.cpu_ns(pids) - before
        # busy time of the server CPUs not spent by the server: other processes
        # (and interrupts); high values mean the run was disturbed
        elapsed = (time.monotonic() - t0) * 1e9 * len(server_cpus)
        foreign = max(0.0, (measure.cpu_busy_ns(server_cpus) - busy0 - cpu) / elapsed)
        if w.requests == 0:
            die(
                f"wrk completed no request against {run.kind} {run.url}{path} "
                f"(-c {conns}, {seconds:g} s)",
                hint=f"see {run.error_log} and {run.output}",
            )
        return {
            "requests": w.requests,
            "seconds": w.seconds,
            "rps": w.rps,
            "socket_errors": w.socket_errors,
            "non2xx": w.non2xx,
            "server_cpu_us_per_request": cpu / 1000.0 / w.requests,
            "foreign_cpu_pct": 100.0 * foreign,
        }

    def counted(self, run: ServerRun, path: str, conns: int) -> dict[str, Any]:
        pids = run.serving_pids()
        with measure.SyscallCounter(pids, self.events, self.pl.client_cpus) as counter:
            lib0 = _libesca(run)
            counter.enable()
            w = measure.run_wrk(
                run.url + path,
                conns,
                self.pl.wrk_threads,
                self.plan.count_duration,
                self.pl.client_cpus,
            )
            counter.disable()
            lib1 = _libesca(run)
        if w.requests == 0:
            die(
                f"wrk completed no request against {run.kind} {run.url}{path}",
                hint=f"see {run.error_log}",
            )
        return {
            "requests": w.requests,
            "seconds": w.seconds,
            "rps": w.rps,
            "pids": pids,
            "syscalls": counter.counts(),
            "libesca": {k: lib1[k] - lib0.get(k, 0) for k in lib1},
        }

    def server(
        self, kind: str, www: Path, sizes: dict[int, int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every cell of one server, round by round.  A size the server does not
        serve correctly (probed in the first round) is skipped; a server that
        dies during a cell loses that cell and is started again."""
        cells: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        plan = self.plan
        for backend in plan.backends:
            data: dict[tuple[int, int], dict[str, Any]] = {
                (size, conns): {
                    "server": kind,
                    "backend": backend,
                    "size_kb": size,
                    "connections": conns,
                    "runs": {"off": [], backend: []},
                    "counted": {},
                }
                for size in plan.sizes_kb
                for conns in plan.connections
            }
            for rnd in range(plan.repeats):
                pair = _Pair(self, kind, backend, www, rnd)
                try:
                    a, b = pair.ensure()
                    if rnd == 0:
                        for size in plan.sizes_kb:
                            path = f"/f{size}k.bin"
                            why = "; ".join(
                                f"{v}: {w}"
                                for v, w in (
                                    ("off", _probe(a, path, sizes[size])),
                                    (backend, _probe(b, path, sizes[size])),
                                )
                                if w
                            )
                            if why:
                                skipped += self._drop(data, kind, backend, size, None, why)
                    if plan.warmup:
                        size = min((k[0] for k in data), default=plan.sizes_kb[0])
                        for run in (a, b):
                            self.step(f"{kind} {backend}: warm-up")
                            self.sample(run, f"/f{size}k.bin", 50, plan.warmup)
                    for (size, conns), cell in list(data.items()):
                        a, b = pair.ensure()
                        try:
                            self._pair(cell, a, b, backend, rnd)
                        except EscaError as e:
                            dead = pair.dead()
                            if not dead:
                                raise
                            skipped += self._drop(
                                data, kind, backend, size, conns, f"the server died ({dead}): {e}"
                            )
                finally:
                    pair.stop()
            for cell in data.values():
                cell["summary"] = summary.summarize(cell, backend)
                cells.append(cell)
        return cells, skipped

    def _pair(
        self,
        cell: dict[str, Any],
        a: ServerRun,
        b: ServerRun,
        backend: str,
        rnd: int,
    ) -> None:
        """One A/B pair of a cell (and the counted runs in the last round)."""
        path = f"/f{cell['size_kb']}k.bin"
        conns = cell["connections"]
        label = f"{a.kind} {backend} {cell['size_kb']} KB -c {conns}"
        order = (("off", a), (backend, b))
        if rnd % 2:
            order = order[::-1]
        self.wait_quiet()
        for name, run in order:
            self.step(f"{label}: {name} {rnd + 1}/{self.plan.repeats}")
            cell["runs"][name].append(self.sample(run, path, conns, self.plan.duration))
        if rnd == self.plan.repeats - 1:
            for name, run in order:
                self.step(f"{label}: {name} counted")
                cell["counted"][name] = self.counted(run, path, conns)

    def _drop(
        self,
        data: dict[tuple[int, int], dict[str, Any]],
        kind: str,
        backend: str,
        size: int,
        conns: int | None,
        reason: str,
    ) -> list[dict[str, Any]]:
        """Remove the cells of size (all connection counts, or conns) from the plan."""
        keys = [k for k in data if k[0] == size and (conns is None or k[1] == conns)]
        log.warn(
            f"{kind} ({backend}) {size} KB"
            + (f" -c {conns}" if conns is not None else "")
            + f": skipped: {reason}"
        )
        for k in keys:
            done = len(data[k]["runs"]["off"]) + len(data[k]["runs"][backend])
            for _ in range(2 * (self.plan.repeats + 1) - done):
                self.step(f"{kind} {size} KB skipped")
            del data[k]
        return [
            {
                "server": kind,
                "backend": backend,
                "size_kb": k[0],
                "connections": k[1],
                "reason": reason,
            }
            for k in keys
        ]


class _Pair:
    """The vanilla (off) and ESCA servers of one server and backend."""

    def __init__(self, runner: Runner, kind: str, backend: str, www: Path, rnd: int) -> None:
        self.runner, self.kind, self.backend, self.www = runner, kind, backend, www
        self.base = runner.workdir / f"{kind}-{backend}-round{rnd + 1}"
        self.runs: dict[str, ServerRun] = {}
        self.starts = 0

    def ensure(self) -> tuple[ServerRun, ServerRun]:
        """Both running: (re)started when not yet started or dead."""
        plan, pl = self.runner.plan, self.runner.pl
        for variant in ("off", self.backend):
            run = self.runs.get(variant)
            if run is None or run.process.poll() is not None:
                self.starts += 1
                where = self.base / f"{variant}-{self.starts}"
                esca = serve.Esca(
                    backend=variant,
                    library=self.runner.library,
                    stats_dir=where.with_name(where.name + "-stats"),
                    env=dict(plan.esca_env),
                )
                # access_log off, as in the reference workload: a log line per
                # request is a write() that would dominate small-file runs
                self.runs[variant] = serve.start(
                    recipe.get(self.kind),
                    where,
                    self.www,
                    pl.workers,
                    esca,
                    cpus=pl.server_cpus,
                    access_log=False,
                )
        return self.runs["off"], self.runs[self.backend]

    def dead(self) -> str:
        return ", ".join(
            f"{v} {r.describe_exit()}" for v, r in self.runs.items() if r.process.poll() is not None
        )

    def stop(self) -> None:
        for run in self.runs.values():
            run.stop()


def run(plan: Plan, workdir: Path, argv: list[str]) -> dict[str, Any]:
    """Run the plan with a progress bar; return the result document (JSON-able)."""
    measure.require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    # one copy of libesca for the whole run: a rebuild of the tree's library
    # during the run must not change what B runs
    library = workdir / "libesca.so.0"
    shutil.copyfile(plan.library, library)
    os.chmod(library, 0o644)
    www = workdir / "www"
    files = serve.make_site(www, plan.sizes_kb)
    sizes = {kb: len(files[f"f{kb}k.bin"]) for kb in plan.sizes_kb}
    started = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "command": argv,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "versions": machine.versions(plan.library, library),
        "settings": {
            **{k: v for k, v in asdict(plan).items() if k != "placement"},
            "library": str(plan.library),
            "placement": asdict(plan.placement),
            "placement_text": plan.placement.describe(),
        },
        "cells": [],
        "skipped": [],
    }
    with click.progressbar(
        length=plan.steps(),
        label="esca-bench",
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
        width=24,
    ) as bar:

        def step(what: str) -> None:
            bar.label = what[:48].ljust(48)
            bar.update(1)

        runner = Runner(plan, workdir, step)
        for kind in plan.servers:
            cells, skipped = runner.server(kind, www, sizes)
            doc["cells"] += cells
            doc["skipped"] += skipped
        doc["contention"] = runner.contention
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc["machine"]["load_average_end"] = list(os.getloadavg())
    shutil.rmtree(www, ignore_errors=True)
    return doc
