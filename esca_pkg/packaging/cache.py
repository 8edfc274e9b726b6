"""Reuse of built packages: a target is rebuilt only when a hash of its inputs changes.

The stamp of a target lives beside its outputs (<dist>/.esca-pkg/<target>.json)
and records the input hash and each output's size and modification time, so a
deleted or replaced output also forces a rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

STAMP_DIR = ".esca-pkg"
_FORMAT = 1


def hash_inputs(files: Iterable[tuple[str, Path]], extra: Mapping[str, str]) -> str:
    """sha256 over (label, content, executable bit) of files and the extra key/values."""
    h = hashlib.sha256()
    h.update(f"format {_FORMAT}\n".encode())
    for key in sorted(extra):
        h.update(f"extra {key}={extra[key]}\n".encode())
    for label, path in sorted(files, key=lambda t: t[0]):
        st = path.stat()
        h.update(f"file {label} {st.st_mode & 0o111:o} {st.st_size}\n".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Stamp:
    key: str
    outputs: dict[str, tuple[int, int]]  # file name in dist -> (size, mtime_ns)
    lint: str = ""

    @staticmethod
    def path(dist: Path, target: str) -> Path:
        return dist / STAMP_DIR / f"{target}.json"

    @classmethod
    def load(cls, dist: Path, target: str) -> Stamp | None:
        try:
            data = json.loads(cls.path(dist, target).read_text())
            return cls(
                data["key"],
                {k: (v[0], v[1]) for k, v in data["outputs"].items()},
                data.get("lint", ""),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    @classmethod
    def of(cls, key: str, dist: Path, names: Iterable[str], lint: str = "") -> Stamp:
        outs = {}
        for n in names:
            st = (dist / n).stat()
            outs[n] = (st.st_size, st.st_mtime_ns)
        return cls(key, outs, lint)

    def save(self, dist: Path, target: str) -> None:
        p = self.path(dist, target)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"key": self.key, "outputs": self.outputs, "lint": self.lint},
                indent=1,
                sort_keys=True,
            )
        )
        tmp.replace(p)

    def fresh(self, key: str, dist: Path) -> bool:
        if key != self.key or not self.outputs:
            return False
        for name, (size, mtime) in self.outputs.items():
            try:
                st = (dist / name).stat()
            except OSError:
                return False
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return False
        return True
