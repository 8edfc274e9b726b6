"""Style as a test (as mkosi does): the Python is formatted, ruff-clean and typed,
the shell scripts pass shellcheck.  scripts/test installs the tools
(pyproject's test extra: ruff, mypy; scripts/deps/style.txt: shellcheck)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ["esca_pkg", "tests", "dkms/scripts"]


def shell_scripts() -> list[Path]:
    """scripts/, the autopkgtest scripts (debian/tests) and the scripts the QEMU
    guests run (every file starting with #!…sh)."""
    found = []
    for d in (
        "scripts",
        "debian/tests",
        "dkms/scripts",
        "tests/guest",
        "tests/vm/guest",
        "tests/e2e/guest",
        "tests/bench/guest",
        "tests/servers/guest",
    ):
        for p in sorted((ROOT / d).iterdir()):
            if p.is_file() and p.read_bytes()[:64].split(b"\n")[0].endswith((b"sh", b"bash")):
                found.append(p)
            elif p.suffix == ".sh":
                found.append(p)
    return sorted(set(found))


def tool(name: str) -> list[str]:
    """The tool from this interpreter's environment (the venv scripts/test makes)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return [str(here)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: scripts/test installs it (pip install -e '.[test]')")
    return [found]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


#: a user who may not write the tree (the fast tier without root) keeps no caches there
WRITABLE = os.access(ROOT, os.W_OK)


def test_ruff_format() -> None:
    res = run([*tool("ruff"), "format", "--check", *([] if WRITABLE else ["--no-cache"]), *PYTHON])
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_check() -> None:
    res = run([*tool("ruff"), "check", *([] if WRITABLE else ["--no-cache"]), *PYTHON])
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy(tmp_path: Path) -> None:
    cache = [] if WRITABLE else ["--cache-dir", str(tmp_path)]
    res = run([*tool("mypy"), *cache, "esca_pkg", "dkms/scripts/esca_image_symbols.py"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck() -> None:
    scripts = shell_scripts()
    assert ROOT / "scripts" / "test" in scripts and ROOT / "tests/e2e/guest/runner.sh" in scripts
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck is not installed: apt-get install shellcheck (scripts/deps/style.txt)"
        )
    res = run(["shellcheck", "--external-sources", *map(str, scripts)])
    assert res.returncode == 0, res.stdout + res.stderr
