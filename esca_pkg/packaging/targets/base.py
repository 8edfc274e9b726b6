"""What a build target is.

A target turns part of the project (or an external source) into .deb files:
`Target` is the interface the builder drives.  The project's own packages are
one target, esca (esca.py: the top-level debian/ built with
dpkg-buildpackage); every server recipe is another (server.py).  A new target
is one module in esca_pkg/packaging/targets/ with a class decorated by
`@register` (see its __init__.py); a new server is a recipe folder
(servers/<name>/).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from esca_pkg.packaging import debbuild
from esca_pkg.packaging.context import BuildContext


def source_env(target: str) -> str:
    """The environment variable naming a local source for TARGET (ESCA_NGINX_SOURCE)."""
    return f"ESCA_{target.upper().replace('-', '_')}_SOURCE"


class Target(ABC):
    name: str
    summary: str
    #: targets whose packages must be built first (build-all orders by this)
    requires: ClassVar[tuple[str, ...]] = ()
    #: position in build-all among targets with no ordering constraint
    order: ClassVar[int] = 50
    #: built from a local source when one is given (--source, ESCA_<NAME>_SOURCE)
    takes_source: ClassVar[bool] = False

    def skip_reason(self, ctx: BuildContext) -> str | None:
        """Why build-all leaves this target out on this run (None: build it)."""
        return None

    @abstractmethod
    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        """Every file the build reads, as (stable label, path): hashed to decide reuse."""

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        """Further things the outputs depend on (versions of tools, settings)."""
        return {}

    @abstractmethod
    def lint_fix(self) -> str:
        """The fix named when lintian finds errors or warnings in this target's packages."""

    @abstractmethod
    def control(self, ctx: BuildContext) -> Path:
        """A debian/control file whose Build-Depends are this target's (for doctor)."""

    @abstractmethod
    def build(self, ctx: BuildContext, log: Path) -> debbuild.BuildResult:
        """Build; return the .changes and the files it lists (in ctx.work_dir(name))."""


def module_file(obj: object) -> tuple[str, Path]:
    """(label, path) of the Python module defining obj's class, as a hash input."""
    mod = sys.modules[type(obj).__module__]
    path = Path(mod.__file__ or "")
    return (f"esca_pkg:{path.name}", path)
