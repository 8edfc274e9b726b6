"""libesca's live counters: `struct esca_stats` of libesca/include/esca.h, kept by
each process in `<dir>/esca-<pid>.stats` while it runs (removed at exit).

EscaStats mirrors the C struct field for field; tests/unit/test_stats_layout.py
compiles a program against esca.h and fails when an offset, a size, a field
or a call kind differs, so the header stays the one definition.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = 0x5354534143534500  # ESCA_STATS_MAGIC
VERSION = 1  # ESCA_STATS_VERSION
#: enum esca_call_kind, in order (ESCA_CALL_CLOSE ... ESCA_CALL_SETSOCKOPT)
KINDS = ("close", "shutdown", "write", "writev", "send", "sendmsg", "sendfile", "setsockopt")
BACKENDS = {0: "off", 1: "module", 2: "uring"}

_u64 = ctypes.c_uint64


class EscaStats(ctypes.Structure):
    """struct esca_stats (native byte order: the file is a shared mapping)."""

    _fields_ = [
        ("magic", _u64),
        ("version", ctypes.c_uint32),
        ("backend", ctypes.c_uint32),
        ("pid", _u64),
        ("segments", _u64),
        ("deferred", _u64 * len(KINDS)),
        ("direct_in_segment", _u64),
        ("flushes", _u64),
        ("flushed_calls", _u64),
        ("kernel_entries", _u64),
        ("arena_bytes", _u64),
        ("short_writes_completed", _u64),
        ("bytes_completed", _u64),
        ("errors_dropped", _u64),
        ("errors_other", _u64),
        ("bytes_lost", _u64),
        ("batched_flushes", _u64),
        ("direct_flushes", _u64),
        ("segments_passthrough", _u64),
        ("direct_calls", _u64),
        ("waits_carried", _u64),
        ("writes_held", _u64),
        ("bytes_held", _u64),
        ("resets", _u64),
    ]


#: the scalar counters, in the struct's order
COUNTERS = tuple(
    f[0]
    for f in EscaStats._fields_
    if f[0] not in ("magic", "version", "backend", "pid", "deferred")
)


@dataclass(frozen=True)
class ProcessStats:
    """One process's counters, as read at one moment."""

    pid: int
    backend: str
    deferred: dict[str, int]
    counters: dict[str, int]
    path: Path = field(default=Path(), compare=False)

    @property
    def segments(self) -> int:
        return self.counters["segments"]

    @property
    def deferred_total(self) -> int:
        return sum(self.deferred.values())

    @property
    def entries_saved(self) -> int:
        """Kernel entries the flushes saved: calls they ran, less the calls they ran
        one by one, less their own kernel entries (io_uring_enter, ioctl), plus the
        epoll waits that travelled in one of those entries (waits_carried)."""
        c = self.counters
        return c["flushed_calls"] - c["direct_calls"] - c["kernel_entries"] + c["waits_carried"]

    def line(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in self.deferred.items() if v)
        rest = " ".join(f"{k}={v}" for k, v in self.counters.items())
        return (
            f"pid={self.pid} backend={self.backend} deferred={self.deferred_total} "
            f"({kinds}) {rest} entries_saved={self.entries_saved}"
        )


def parse(data: bytes, path: Path = Path()) -> ProcessStats | None:
    """The counters in data; None when it is not (or not yet) a complete stats file
    of this version: libesca writes the magic last."""
    if len(data) < ctypes.sizeof(EscaStats):
        return None
    s = EscaStats.from_buffer_copy(data[: ctypes.sizeof(EscaStats)])
    if s.magic != MAGIC or s.version != VERSION:
        return None
    return ProcessStats(
        pid=int(s.pid),
        backend=BACKENDS.get(s.backend, str(s.backend)),
        deferred=dict(zip(KINDS, (int(v) for v in s.deferred), strict=True)),
        counters={name: int(getattr(s, name)) for name in COUNTERS},
        path=path,
    )


def read(path: Path) -> ProcessStats | None:
    """One stats file (None: unreadable, incomplete or of another version).

    Opened without following a symbolic link: whoever can write the directory
    must not make us read another file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, ctypes.sizeof(EscaStats))
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse(data, path)


@dataclass
class Scan:
    """Every stats file of some directories: who runs, what is stale or unreadable."""

    processes: list[ProcessStats] = field(default_factory=list)
    #: files of processes that are gone (killed before libesca could remove them)
    stale: list[Path] = field(default_factory=list)
    #: files or directories we may not read (path, reason)
    denied: list[tuple[Path, str]] = field(default_factory=list)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").is_dir()


def scan(directories: list[Path]) -> Scan:
    """The live processes with stats files in directories (sorted by pid)."""
    out = Scan()
    seen: set[int] = set()
    for d in directories:
        try:
            names = sorted(p for p in d.iterdir() if p.name.startswith("esca-"))
        except PermissionError:
            out.denied.append((d, "permission denied"))
            continue
        except OSError:
            continue
        for p in names:
            if p.suffix != ".stats":
                continue
            s = read(p)
            if s is None:
                if not os.access(p, os.R_OK) and p.exists():
                    out.denied.append((p, os.strerror(errno.EACCES)))
                continue
            if not alive(s.pid):
                out.stale.append(p)
            elif s.pid not in seen:
                seen.add(s.pid)
                out.processes.append(s)
    out.processes.sort(key=lambda s: s.pid)
    return out


def read_dir(directory: Path) -> list[ProcessStats]:
    """The live processes with a stats file in directory."""
    return scan([directory]).processes
