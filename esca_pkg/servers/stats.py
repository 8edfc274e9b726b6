"""Read libesca's live counters: $ESCA_STATS_DIR/esca-<pid>.stats.

The layout is struct esca_stats of libesca/include/esca.h (version 1): 64-bit
counters after a magic, a version and the backend.  A file is removed when
its process exits, so a reader sees the processes that run now.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x5354534143534500
VERSION = 1
KINDS = ("close", "shutdown", "write", "writev", "send", "sendmsg", "sendfile", "setsockopt")
_HEAD = struct.Struct("<QIIQQ")  # magic, version, backend, pid, segments
_COUNTERS = (
    "direct_in_segment",
    "flushes",
    "flushed_calls",
    "kernel_entries",
    "arena_bytes",
    "short_writes_completed",
    "bytes_completed",
    "errors_dropped",
    "errors_other",
    "bytes_lost",
)
_BACKENDS = {0: "off", 1: "module", 2: "uring"}


@dataclass(frozen=True)
class ProcessStats:
    pid: int
    backend: str
    segments: int
    deferred: dict[str, int]
    counters: dict[str, int]

    @property
    def deferred_total(self) -> int:
        return sum(self.deferred.values())

    def line(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in self.deferred.items() if v)
        rest = " ".join(f"{k}={v}" for k, v in self.counters.items())
        return (
            f"pid={self.pid} backend={self.backend} segments={self.segments} "
            f"deferred={self.deferred_total} ({kinds}) {rest}"
        )


def read(path: Path) -> ProcessStats | None:
    """One stats file; None when it is not (or not yet) a valid version-1 file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    need = _HEAD.size + 8 * (len(KINDS) + len(_COUNTERS))
    if len(data) < need:
        return None
    magic, version, backend, pid, segments = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        return None
    values = struct.unpack_from(f"<{len(KINDS) + len(_COUNTERS)}Q", data, _HEAD.size)
    return ProcessStats(
        pid=pid,
        backend=_BACKENDS.get(backend, str(backend)),
        segments=segments,
        deferred=dict(zip(KINDS, values[: len(KINDS)], strict=True)),
        counters=dict(zip(_COUNTERS, values[len(KINDS) :], strict=True)),
    )


def read_dir(directory: Path) -> list[ProcessStats]:
    out = [s for p in sorted(directory.glob("esca-*.stats")) if (s := read(p)) is not None]
    return sorted(out, key=lambda s: s.pid)
