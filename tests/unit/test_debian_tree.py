"""debian/ lists by hand what pyproject.toml defines: the tool's commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from debian.deb822 import Deb822

ROOT = Path(__file__).resolve().parents[2]


def test_every_console_script_has_its_manual_page_and_description() -> None:
    """debian/rules writes a manual page for each command of [project.scripts] (help2man,
    with the one-line name it gives), and esca-tools' description lists each."""
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    rules = (ROOT / "debian" / "rules").read_text()
    m = re.search(r"^COMMANDS = (.*)$", rules, re.MULTILINE)
    assert m, "debian/rules has no COMMANDS line"
    assert set(m.group(1).split()) == scripts
    named = set(re.findall(r"^name_(\S+) = \S", rules, re.MULTILINE))
    assert named == scripts, f"commands without a manual page name: {scripts - named}"
    with (ROOT / "debian" / "control").open() as fh:
        tools = next(p for p in Deb822.iter_paragraphs(fh) if p.get("Package") == "esca-tools")
    listed = set(re.findall(r"^\s+(esca-[a-z]+): ", tools["Description"], re.MULTILINE))
    assert listed == scripts
