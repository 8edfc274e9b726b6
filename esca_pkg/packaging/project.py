"""The project tree the packages are built from: its root, VERSION and files."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version

from esca_pkg import proc
from esca_pkg.log import die

# Build products that never belong in a package's source, for trees that are
# not git checkouts (a git checkout uses its .gitignore instead).
_IGNORED_PARTS = {
    ".git",
    ".release",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".venv",
    "_build",
    "build",
    "dist",
}
_IGNORED_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".pyc", ".so")


@dataclass(frozen=True)
class Project:
    root: Path
    version: str

    def path(self, rel: str) -> Path:
        return self.root / rel

    def files(self, *subdirs: str) -> list[str]:
        """Files under subdirs (relative to root, sorted), build products left out.

        In a git checkout: tracked files plus new ones not ignored by .gitignore;
        elsewhere: every file except well-known build products.
        """
        existing = [d for d in subdirs if (self.root / d).exists()]
        if not existing:
            return []
        if (self.root / ".git").exists() and shutil.which("git"):
            out = proc.run(
                [
                    "git",
                    "ls-files",
                    "-z",
                    "--cached",
                    "--others",
                    "--exclude-standard",
                    "--",
                    *existing,
                ],
                cwd=self.root,
                capture=True,
            ).stdout
            names = {n for n in out.split("\0") if n}
            # Files deleted in the work tree but still in the index.
            return sorted(n for n in names if (self.root / n).is_file())
        result: list[str] = []
        for d in existing:
            base = self.root / d
            if base.is_file():
                result.append(d)
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = [x for x in dirnames if x not in _IGNORED_PARTS]
                for name in filenames:
                    if name.endswith(_IGNORED_SUFFIXES) or ".so." in name:
                        continue
                    result.append(str((Path(dirpath) / name).relative_to(self.root)))
        return sorted(result)


def read_version(root: Path) -> str:
    path = root / "VERSION"
    try:
        text = path.read_text().strip()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}", hint="run esca-pkg inside the ESCA source tree")
    try:
        Version(text)
    except ValueError:
        die(
            f"{path} holds {text!r}, which is not a Debian version",
            hint="write a version such as 0.1.0 into VERSION",
        )
    if not text or not text[0].isdigit() or "-" in text or ":" in text:
        die(
            f"{path} holds {text!r}: the upstream version must start with a digit "
            "and contain neither '-' nor ':'",
            hint="write a version such as 0.1.0 into VERSION",
        )
    return text


def find_project(start: Path | None = None) -> Project:
    """The ESCA source tree containing start (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / "VERSION").is_file() and (cand / "esca_pkg").is_dir():
            return Project(cand, read_version(cand))
    die(
        f"{here} is not inside an ESCA source tree (no VERSION and esca_pkg/ found above it)",
        hint="run esca-pkg from a clone of the ESCA repository, or pass --project PATH",
    )
