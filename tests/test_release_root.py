"""scripts/release-root finds the Debian mirror in this machine's apt sources
(deb822 and one-line formats), whatever else the sources hold."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "release-root"


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    pytest.skip("no VERSION_CODENAME in /etc/os-release")


def _mirrors(etc: Path, files: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """release-root mirrors against an apt directory holding files."""
    (etc / "sources.list.d").mkdir()
    for name, text in (files or {}).items():
        (etc / name).write_text(text)
    env = {**os.environ, "ESCA_APT_ETC": str(etc)}
    return subprocess.run(
        [str(SCRIPT), "mirrors"], env=env, capture_output=True, text=True, check=False
    )


def _deb822(c: str) -> dict[str, str]:
    return {
        "sources.list.d/other.sources": (
            "Types: deb\nURIs: https://packages.example.org/apt\nSuites: nodistro\n"
            "Components: main\n"
        ),
        "sources.list.d/debian.sources": (
            f"Types: deb\nURIs: http://disabled.example.org/debian\nSuites: {c}\n"
            "Components: main\nEnabled: no\n\n"
            f"# a comment\nTypes: deb deb-src\nURIs: http://mirror.example.org/debian\n"
            f"Suites: {c} {c}-updates\nComponents: main\n\n"
            f"Types: deb\nURIs: http://security.example.org/debian-security\n"
            f"Suites: {c}-security\nComponents: main\n"
        ),
    }


def _one_line(c: str) -> dict[str, str]:
    # No security source: the main mirror's debian-security is assumed.
    return {
        "sources.list": (
            f"deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://m.example.org/debian "
            f"{c}-updates main\n"
            f"deb [arch=amd64] http://m.example.org/debian {c} main\n"
        )
    }


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            _deb822,
            ["http://mirror.example.org/debian", "http://security.example.org/debian-security"],
        ),
        (_one_line, ["http://m.example.org/debian", "http://m.example.org/debian-security"]),
    ],
    ids=["deb822", "one-line"],
)
def test_mirror_from_apt_sources(tmp_path: Path, files, expected: list[str]) -> None:
    res = _mirrors(tmp_path, files(_codename()))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == expected


def test_no_debian_source_is_an_error(tmp_path: Path) -> None:
    res = _mirrors(tmp_path)
    assert res.returncode != 0
    assert "no apt source of this machine serves" in res.stderr
