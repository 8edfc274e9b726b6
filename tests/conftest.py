"""Shared fixtures: the built libesca and the C test programs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from libesca_support import BACKENDS, BUILD, LIBESCA, TOP, compile_c, module_usable


@pytest.fixture(scope="session")
def libesca() -> Path:
    subprocess.run(["make", "-C", str(TOP / "libesca"), "-s"], check=True)
    assert LIBESCA.exists()
    return LIBESCA


@pytest.fixture(scope="session")
def cprog(libesca: Path):
    """Builds tests/c/NAME.c once (into tests/_build/NAME; NAME may have a
    directory: "hostile/waits") and returns its path.  flags go to gcc after
    the source ("-O2", "-D_FORTIFY_SOURCE=2"); a program has one set."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def build(name: str, *flags: str) -> Path:
        if name not in built:
            out = BUILD / name
            out.parent.mkdir(parents=True, exist_ok=True)
            compile_c(TOP / "tests" / "c" / f"{name}.c", out, *flags)
            built[name] = (out, flags)
        out, had = built[name]
        assert had == flags, f"{name} was built with {had}, asked for {flags}"
        return out

    return build


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "module":
        reason = module_usable()
        if reason:
            pytest.skip(reason)
    return str(request.param)
