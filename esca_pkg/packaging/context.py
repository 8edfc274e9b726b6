"""Settings of one esca-pkg run, passed to every target."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esca_pkg.packaging.project import Project


@dataclass(frozen=True)
class BuildContext:
    project: Project
    dist: Path
    build_dir: Path
    jobs: int = 2
    lint: bool = True
    force: bool = False
    # Per-target external sources (`build lwan --source PATH`).
    sources: dict[str, Path] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.project.version

    def work_dir(self, target: str) -> Path:
        return self.build_dir / target

    def log_path(self, target: str) -> Path:
        return self.build_dir / "logs" / f"{target}.log"
