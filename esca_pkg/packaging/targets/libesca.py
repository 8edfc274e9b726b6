"""libesca0 (the preload library), libesca-dev (hook header) and esca-microbench."""

from __future__ import annotations

from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.targets import register
from esca_pkg.packaging.targets.base import DebhelperTarget, require_files


@register
class LibescaTarget(DebhelperTarget):
    name = "libesca"
    summary = "libesca0, libesca-dev, esca-microbench: the preload library and its header"
    template = "libesca"
    source_package = "libesca"
    # libesca's Makefile may read the ABI header from dkms/include and VERSION.
    source_paths = ("VERSION", "libesca", "dkms/include")
    order = 20
    changelog_text = "Library built from the ESCA source tree by esca-pkg."

    def check_sources(self, ctx: BuildContext) -> None:
        require_files(
            ctx,
            self.name,
            ["libesca/Makefile", "libesca/include/esca.h"],
            "libesca/Makefile comes with the library (issue 2)",
        )
