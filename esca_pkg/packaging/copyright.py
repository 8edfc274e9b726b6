"""Licence facts for debian/copyright, read from the SPDX headers of the staged files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from esca_pkg.log import die

#: licence of files without an SPDX header (pyproject.toml's licence)
PROJECT_LICENSE = "MIT"

_SPDX = re.compile(
    r"^\s*(?:#|//|/\*|\*|--|;|\.\.)\s*SPDX-License-Identifier:\s*"
    r"([A-Za-z0-9.+() -]+?)\s*(?:\*/)?\s*$",
    re.MULTILINE,
)
_TOKEN = re.compile(r"[A-Za-z0-9.+-]+")
_OPERATORS = {"OR", "AND", "WITH"}

MIT_TEXT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:
.
The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.
.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE."""

_GPL2 = (
    "On Debian systems, the full text of the GNU General Public License\n"
    "version 2 can be found in the file /usr/share/common-licenses/GPL-2."
)
_LGPL21 = (
    "On Debian systems, the full text of the GNU Lesser General Public License\n"
    "version 2.1 can be found in the file /usr/share/common-licenses/LGPL-2.1."
)

LICENSE_TEXTS = {
    "MIT": MIT_TEXT,
    "GPL-2.0-only": "This program is free software; you can redistribute it and/or modify\n"
    "it under the terms of the GNU General Public License version 2.\n.\n" + _GPL2,
    "GPL-2.0": "This program is free software; you can redistribute it and/or modify\n"
    "it under the terms of the GNU General Public License version 2.\n.\n" + _GPL2,
    "GPL-2.0-or-later": "This program is free software; you can redistribute it and/or modify\n"
    "it under the terms of the GNU General Public License as published by\n"
    "the Free Software Foundation; either version 2 of the License, or (at\n"
    "your option) any later version.\n.\n" + _GPL2,
    "GPL-2.0+": "This program is free software; you can redistribute it and/or modify\n"
    "it under the terms of the GNU General Public License version 2 or later.\n.\n" + _GPL2,
    "LGPL-2.1-only": _LGPL21,
    "LGPL-2.1-or-later": _LGPL21,
    "Linux-syscall-note": "The Linux kernel's syscall note: user-space programs using the\n"
    "kernel's system call interface through this header are not derived\n"
    "works of the kernel.",
}


@dataclass(frozen=True)
class FilesStanza:
    files: list[str]
    license: str


def spdx_of(path: Path) -> str | None:
    try:
        head = path.read_bytes()[:2048].decode("utf-8", "replace")
    except OSError:
        return None
    m = _SPDX.search(head)
    return m.group(1).strip() if m else None


def scan(files: list[tuple[str, Path]]) -> tuple[list[FilesStanza], list[tuple[str, str]]]:
    """Group files (name in the package source, path to read) by their SPDX expression.

    Returns the Files stanzas (the project licence as 'Files: *') and the
    standalone License paragraphs they need."""
    groups: dict[str, list[str]] = {}
    for rel, path in files:
        expr = spdx_of(path)
        if expr and expr != PROJECT_LICENSE:
            groups.setdefault(expr, []).append(rel)
    stanzas = [FilesStanza(["*"], PROJECT_LICENSE)]
    stanzas += [FilesStanza(sorted(files), expr) for expr, files in sorted(groups.items())]
    ids: list[str] = []
    for st in stanzas:
        for tok in _TOKEN.findall(st.license):
            if tok not in _OPERATORS and tok not in ids:
                ids.append(tok)
    unknown = [i for i in ids if i not in LICENSE_TEXTS]
    if unknown:
        die(
            f"no licence text known for SPDX identifier(s) {', '.join(unknown)}",
            hint="add it to LICENSE_TEXTS in esca_pkg/copyright.py",
        )
    return stanzas, [(i, LICENSE_TEXTS[i]) for i in ids]
