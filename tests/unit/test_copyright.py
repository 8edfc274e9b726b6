"""debian/copyright is kept by hand; this checks it against the tree.

Every tracked file with an SPDX-License-Identifier header must fall under a
Files paragraph of the same licence (python-debian's DEP-5 parser decides
which paragraph applies, as Debian's tools do), and every licence named must
have its text.  DEP-5 words an SPDX `(A WITH B) OR C` as `A with B exception
or C` (lintian refuses the SPDX form), and the licence with its exception
is one License paragraph.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from debian.copyright import Copyright

ROOT = Path(__file__).resolve().parents[2]
COPYRIGHT = ROOT / "debian" / "copyright"
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+() -]+?)\s*(?:\*/)?\s*$", re.MULTILINE)
_WITH = re.compile(r"\(?([A-Za-z0-9.+-]+) WITH ([A-Za-z0-9.+-]+)\)?")


def dep5(spdx: str) -> str:
    """An SPDX expression as DEP-5 writes it."""
    text = _WITH.sub(r"\1 with \2 exception", spdx)
    return text.replace(" OR ", " or ").replace(" AND ", " and ")


def names(synopsis: str) -> set[str]:
    """The licences of a DEP-5 synopsis (an exception stays with its licence)."""
    return {n.strip() for n in re.split(r" or | and |, ", synopsis) if n.strip()}


def _spdx(path: Path) -> str | None:
    head = path.read_bytes()[:2048].decode("utf-8", "replace")
    m = _SPDX.search(head)
    return m.group(1).strip() if m else None


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [n for n in out.split("\0") if n and (ROOT / n).is_file()]


def _parse() -> Copyright:
    with COPYRIGHT.open() as fh:
        return Copyright(fh, strict=True)


def test_every_spdx_header_matches_its_files_paragraph() -> None:
    doc = _parse()
    wrong = []
    checked = 0
    for rel in _tracked():
        if rel == "tests/unit/test_copyright.py":
            continue  # the pattern above, not a header
        expr = _spdx(ROOT / rel)
        if expr is None:
            continue
        checked += 1
        para = doc.find_files_paragraph(rel)
        got = para.license.synopsis if para and para.license else None
        if got != dep5(expr):
            wrong.append(f"{rel}: header says {expr!r}, debian/copyright says {got!r}")
    assert checked > 50, f"only {checked} files with an SPDX header found"
    assert not wrong, "debian/copyright disagrees with the tree:\n" + "\n".join(wrong)


def test_every_licence_named_has_its_text() -> None:
    doc = _parse()
    named: set[str] = set()
    for para in doc.all_files_paragraphs():
        assert para.license is not None
        named |= names(para.license.synopsis)
    texts = {p.license.synopsis for p in doc.all_license_paragraphs() if p.license.text}
    assert named <= texts, f"no License paragraph with the text of {sorted(named - texts)}"
    assert texts <= named, f"License paragraphs nothing uses: {sorted(texts - named)}"


def test_a_wrong_paragraph_is_found(tmp_path: Path) -> None:
    """The check itself: a kernel source claimed MIT is caught."""
    text = COPYRIGHT.read_text().replace(
        "Files: dkms/*\nCopyright: 2026 ESCA developers\nLicense: GPL-2.0-only",
        "Files: dkms/*\nCopyright: 2026 ESCA developers\nLicense: MIT",
    )
    assert text != COPYRIGHT.read_text()
    doc = Copyright(text.splitlines(keepends=True), strict=True)
    para = doc.find_files_paragraph("dkms/src/esca_main.c")
    assert para is not None and para.license.synopsis == "MIT"
    assert _spdx(ROOT / "dkms/src/esca_main.c") == "GPL-2.0-only"


def test_spdx_in_dep5_words() -> None:
    expr = "(GPL-2.0-only WITH Linux-syscall-note) OR MIT"
    assert dep5(expr) == "GPL-2.0-only with Linux-syscall-note exception or MIT"
    assert names(dep5(expr)) == {"GPL-2.0-only with Linux-syscall-note exception", "MIT"}
    assert dep5("GPL-2.0-only") == "GPL-2.0-only"
