"""Shared fixtures: the built libesca and the C test programs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from libesca_support import BACKENDS, BUILD, LIBESCA, TOP, module_usable


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
            src = TOP / "tests" / "c" / f"{name}.c"
            subprocess.run(
                [
                    "gcc",
                    "-O1",
                    "-g",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-D_GNU_SOURCE",
                    f"-I{TOP / 'libesca' / 'include'}",
                    f"-I{TOP / 'tests' / 'c'}",
                    "-o",
                    str(out),
                    str(src),
                    "-pthread",
                ],
                check=True,
            )
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
