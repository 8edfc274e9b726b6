"""Settings of one esca-pkg run, passed to every target."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esca_pkg.packaging.project import Project
from esca_pkg.packaging.release import DebianRelease


@dataclass(frozen=True)
class BuildContext:
    project: Project
    #: the release the packages are built for (the machine's)
    release: DebianRelease
    dist: Path
    build_dir: Path
    jobs: int = 2
    lint: bool = True
    force: bool = False
    # Per-target external sources (`build lwan --source PATH`).
    sources: dict[str, Path] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The upstream version (VERSION): the module's DKMS version, libesca's file name."""
        return self.project.version

    @property
    def package_version(self) -> str:
        """Our own packages' Debian version: VERSION plus the release's suffix."""
        return self.release.package_version(self.project.version)

    def work_dir(self, target: str) -> Path:
        return self.build_dir / target

    def log_path(self, target: str) -> Path:
        return self.build_dir / "logs" / f"{target}.log"
