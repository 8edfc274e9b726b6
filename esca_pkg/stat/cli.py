"""esca-stat: every process running under ESCA with its live counters.

Reads the stats files libesca keeps while a process runs
(`<dir>/esca-<pid>.stats`, esca_pkg.runtime.stats); by default in every
directory under /run/esca, where esca-run puts them.  --watch N refreshes
every N seconds with rates per second, --json prints for scripts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from esca_pkg import log
from esca_pkg.log import die
from esca_pkg.runtime import stats, statsdir
from esca_pkg.runtime.stats import ProcessStats
from esca_pkg.servers.serve import cmdline

#: short column titles of the call kinds
KIND_TITLES = {
    "close": "CLOSE",
    "shutdown": "SHUT",
    "write": "WRITE",
    "writev": "WRITEV",
    "send": "SEND",
    "sendmsg": "SENDMSG",
    "sendfile": "SENDFILE",
    "setsockopt": "SOCKOPT",
}


@dataclass(frozen=True)
class Row:
    """What esca-stat shows of one process (counts, or rates per second)."""

    pid: int
    command: str
    backend: str
    segments: float
    deferred: Mapping[str, float]
    flushes: float
    waits_carried: float
    entries_saved: float
    errors: float
    peer_gone: float
    bytes_lost: float

    @property
    def deferred_total(self) -> float:
        return sum(self.deferred.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "command": self.command,
            "backend": self.backend,
            "segments": self.segments,
            "deferred": dict(self.deferred),
            "deferred_total": self.deferred_total,
            "flushes": self.flushes,
            "waits_carried": self.waits_carried,
            "kernel_entries_saved": self.entries_saved,
            "errors": self.errors,
            "errors_peer_gone": self.peer_gone,
            "bytes_lost": self.bytes_lost,
        }


def row(s: ProcessStats, command: str) -> Row:
    c = s.counters
    return Row(
        pid=s.pid,
        command=command,
        backend=s.backend,
        segments=s.segments,
        deferred=dict(s.deferred),  # counts stay integers in --json
        flushes=c["flushes"],
        waits_carried=c["waits_carried"],
        entries_saved=s.entries_saved,
        errors=c["errors_other"],
        peer_gone=c["errors_dropped"],
        bytes_lost=c["bytes_lost"],
    )


def rate(new: ProcessStats, old: ProcessStats | None, seconds: float, command: str) -> Row:
    """Counts per second between two readings of one process (the counts since it
    started when old is None)."""
    a = row(new, command)
    b = (
        row(old, command)
        if old
        else dataclasses.replace(
            a,
            segments=0,
            deferred=dict.fromkeys(a.deferred, 0.0),
            flushes=0,
            waits_carried=0,
            entries_saved=0,
            errors=0,
            peer_gone=0,
            bytes_lost=0,
        )
    )
    return dataclasses.replace(
        a,
        segments=(a.segments - b.segments) / seconds,
        deferred={k: (v - b.deferred[k]) / seconds for k, v in a.deferred.items()},
        flushes=(a.flushes - b.flushes) / seconds,
        waits_carried=(a.waits_carried - b.waits_carried) / seconds,
        entries_saved=(a.entries_saved - b.entries_saved) / seconds,
        errors=(a.errors - b.errors) / seconds,
        peer_gone=(a.peer_gone - b.peer_gone) / seconds,
        bytes_lost=(a.bytes_lost - b.bytes_lost) / seconds,
    )


def table(rows: Sequence[Row], fmt: str = "{:.0f}") -> str:
    head = [
        "PID",
        "COMMAND",
        "BACKEND",
        "SEGMENTS",
        "DEFERRED",
        *KIND_TITLES.values(),
        "FLUSHES",
        "WAITS",
        "SAVED",
        "ERRORS",
        "GONE",
        "LOST",
    ]
    lines = [head]
    for r in rows:
        nums = [r.segments, r.deferred_total, *(r.deferred[k] for k in KIND_TITLES)]
        nums += [r.flushes, r.waits_carried, r.entries_saved, r.errors, r.peer_gone, r.bytes_lost]
        lines.append([str(r.pid), r.command[:24], r.backend, *(fmt.format(n) for n in nums)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for line in lines:
        cells = [
            c.ljust(w) if i in (1, 2) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def read(dirs: list[Path]) -> stats.Scan:
    found = stats.scan(dirs)
    if not found.processes:
        where = ", ".join(str(d) for d in dirs) or f"{statsdir.RUN_DIR} (missing)"
        denied = "; ".join(f"{p}: {why}" for p, why in found.denied)
        die(
            f"no process runs under ESCA with live counters in {where}"
            + (f" ({denied})" if denied else "")
            + (
                f"; {len(found.stale)} stale files of processes that are gone"
                if found.stale
                else ""
            ),
            hint="run as root or a member of the server's group to read them"
            if denied
            else "start the server with esca-run (it keeps live counters in "
            f"{statsdir.RUN_DIR}/<server>), or name the directory with --dir",
        )
    return found


def commands(found: stats.Scan) -> dict[int, str]:
    return {s.pid: cmdline(s.pid) or "?" for s in found.processes}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help=f"read the stats files of DIR (repeatable; default: {statsdir.RUN_DIR} and its "
    "subdirectories, $XDG_RUNTIME_DIR/esca)",
)
@click.option(
    "--watch",
    type=click.FloatRange(0.1, 3600),
    metavar="N",
    help="refresh every N seconds with rates per second, until Ctrl-C",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    help="with --watch: stop after this many refreshes",
)
@click.option("--json", "as_json", is_flag=True, help="JSON (with --watch: one document a line)")
@click.option("--debug", is_flag=True, help="tracebacks on errors")
def cli(
    dirs: tuple[Path, ...], watch: float | None, count: int | None, as_json: bool, debug: bool
) -> None:
    """Every process running under ESCA with its live counters: backend, batching
    segments, calls deferred by kind, flushes, kernel entries saved (calls the
    flushes ran less their own entries and the calls they ran one by one),
    errors of deferred calls (GONE: the peer had gone), bytes lost.

    Exits 1 when no process runs under ESCA.
    """
    log.set_debug(debug)
    if count is not None and watch is None:
        die("--count only applies to --watch", hint="add --watch N")
    where = list(dirs) or statsdir.search_dirs()
    found = read(where)
    if watch is None:
        names = commands(found)
        rows = [row(s, names[s.pid]) for s in found.processes]
        if as_json:
            doc = {
                "directories": [str(d) for d in where],
                "processes": [
                    {**r.as_dict(), "stats_file": str(s.path), "counters": s.counters}
                    for r, s in zip(rows, found.processes, strict=True)
                ],
                "stale_files": [str(p) for p in found.stale],
            }
            click.echo(json.dumps(doc, indent=1))
        else:
            click.echo(table(rows))
        return
    _watch(where, found, watch, count, as_json)


def _watch(
    where: list[Path], found: stats.Scan, every: float, count: int | None, as_json: bool
) -> None:
    before = {s.pid: s for s in found.processes}
    t0 = time.monotonic()
    shown = 0
    try:
        while count is None or shown < count:
            time.sleep(every)
            now = stats.scan(where)
            t1 = time.monotonic()
            names = commands(now)
            rows = [rate(s, before.get(s.pid), t1 - t0, names[s.pid]) for s in now.processes]
            if as_json:
                doc = {"interval_seconds": round(t1 - t0, 3), "rates": [r.as_dict() for r in rows]}
                click.echo(json.dumps(doc))
            else:
                click.echo("\033[H\033[2J", nl=False)
                click.echo(
                    f"esca-stat: per second over the last {t1 - t0:.1f} s "
                    f"({len(rows)} processes; Ctrl-C to stop)\n"
                )
                click.echo(table(rows, "{:.1f}"))
            before, t0 = {s.pid: s for s in now.processes}, t1
            shown += 1
    except KeyboardInterrupt:
        pass


def main() -> None:
    log.run_main(cli)
