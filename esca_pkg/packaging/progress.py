"""Progress of long steps: one status line per target, refreshed on a terminal.

While a build runs, the line shows the elapsed time and the step the build log
reached (the last debhelper / dpkg command written to it).  Without a
terminal only the start and end lines are printed.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import click

_STEP = re.compile(
    rb"^\s*(dh_[a-z_]+|dpkg-[a-z]+|make(?:\[\d+\])?:? [^\n]{0,40}|"
    rb"\$ [a-z0-9_.-]+|lintian)",
    re.MULTILINE,
)


def _last_step(log: Path) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            tail = fh.read()
    except OSError:
        return ""
    found = _STEP.findall(tail)
    return found[-1].decode(errors="replace").strip() if found else ""


class Progress:
    """with Progress(label, log): ... — shows the label, elapsed time and log step."""

    def __init__(self, label: str, log: Path | None = None) -> None:
        self.label = label
        self.log = log
        self.start = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty = sys.stderr.isatty()
        self.step = ""

    def __enter__(self) -> Progress:
        self.start = time.monotonic()
        if self._tty:
            self._thread = threading.Thread(target=self._refresh, daemon=True)
            self._thread.start()
        else:
            click.echo(f"{self.label} ...", err=True)
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _refresh(self) -> None:
        width = 100
        while not self._stop.wait(0.5):
            step = _last_step(self.log) if self.log else self.step
            line = f"{self.label}  {self.elapsed():5.0f}s  {step}"[:width]
            click.echo(f"\r{line:<{width}}", err=True, nl=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            click.echo("\r" + " " * 100 + "\r", err=True, nl=False)
