"""Where libesca is: --library, else $ESCA_LIBRARY, else the libesca0 package's."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from esca_pkg.log import die
from esca_pkg.packaging.release import dist_hint
from esca_pkg.runtime import hooks

LIBRARY_ENV = "ESCA_LIBRARY"
SONAME = "libesca.so.0"


def packaged() -> Path:
    """libesca0's library: /usr/lib/<multiarch>/libesca.so.0."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    return Path("/usr/lib") / multiarch / SONAME


def tree_build(top: Path) -> Path:
    """The library `make -C libesca` builds in a source tree."""
    return top / "libesca" / "build" / SONAME


def find(option: Path | None) -> Path:
    """The libesca to preload, checked to define the three hooks."""
    env = os.environ.get(LIBRARY_ENV)
    lib = option or (Path(env) if env else None)
    origin = "--library" if option else (LIBRARY_ENV if lib else "the libesca0 package")
    lib = lib or packaged()
    if not lib.is_file():
        die(
            f"libesca not found at {lib} (from {origin})",
            hint="install it (esca-pkg build esca && apt install "
            f"./{dist_hint()}/libesca0_*.deb), or "
            f"point {LIBRARY_ENV} at a built one (make -C libesca: libesca/build/{SONAME})",
        )
    try:
        ok = hooks.defines_hooks(lib)
    except hooks.ElfError as e:
        die(str(e), hint=f"point {LIBRARY_ENV} or --library at {SONAME}")
    if not ok:
        die(
            f"{lib} does not define esca_init, batch_start and batch_flush: it is not libesca",
            hint=f"point {LIBRARY_ENV} or --library at {SONAME}",
        )
    return lib.resolve()
