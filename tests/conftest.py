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
    """Builds tests/c/NAME.c once and returns its path."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            out = BUILD / name
            compile_c(TOP / "tests" / "c" / f"{name}.c", out)
            built[name] = out
        return built[name]

    return build


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "module":
        reason = module_usable()
        if reason:
            pytest.skip(reason)
    return str(request.param)
