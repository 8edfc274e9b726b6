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


def _mirrors(etc: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESCA_APT_ETC": str(etc)}
    return subprocess.run(
        [str(SCRIPT), "mirrors"], env=env, capture_output=True, text=True, check=False
    )


def test_deb822_sources(tmp_path: Path) -> None:
    c = _codename()
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "other.sources").write_text(
        "Types: deb\nURIs: https://packages.example.org/apt\nSuites: nodistro\nComponents: main\n"
    )
    (d / "debian.sources").write_text(
        f"Types: deb\nURIs: http://disabled.example.org/debian\nSuites: {c}\n"
        "Components: main\nEnabled: no\n\n"
        f"# a comment\nTypes: deb deb-src\nURIs: http://mirror.example.org/debian\n"
        f"Suites: {c} {c}-updates\nComponents: main\n\n"
        f"Types: deb\nURIs: http://security.example.org/debian-security\n"
        f"Suites: {c}-security\nComponents: main\n"
    )
    res = _mirrors(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "http://mirror.example.org/debian",
        "http://security.example.org/debian-security",
    ]


def test_one_line_sources_and_default_security(tmp_path: Path) -> None:
    c = _codename()
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        f"deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://m.example.org/debian "
        f"{c}-updates main\n"
        f"deb [arch=amd64] http://m.example.org/debian {c} main\n"
    )
    res = _mirrors(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "http://m.example.org/debian",
        "http://m.example.org/debian-security",
    ]


def test_no_debian_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    res = _mirrors(tmp_path)
    assert res.returncode != 0
    assert "no apt source of this machine serves" in res.stderr
