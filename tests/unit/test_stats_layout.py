"""esca_pkg.runtime.stats reads struct esca_stats exactly as libesca/include/esca.h
lays it out: the field list comes from the header through the C preprocessor,
the offsets and sizes from the compiler (a program built against esca.h)."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

from libesca_support import compile_c

from esca_pkg.runtime import stats

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "libesca" / "include" / "esca.h"


def preprocessed() -> str:
    return subprocess.run(
        ["cpp", "-P", "-I", str(HEADER.parent), str(HEADER)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def header_fields() -> list[str]:
    """Member names of struct esca_stats, in order, from the preprocessed header."""
    body = re.search(r"struct esca_stats\s*\{(.*?)\};", preprocessed(), re.S)
    assert body, "no struct esca_stats in esca.h"
    return re.findall(r"\b(\w+)\s*(?:\[[^\]]*\])?\s*;", body.group(1))


def header_kinds() -> list[str]:
    body = re.search(r"enum esca_call_kind\s*\{(.*?)\};", preprocessed(), re.S)
    assert body, "no enum esca_call_kind in esca.h"
    return [n.strip() for n in body.group(1).split(",") if n.strip()]


def compiled(tmp_path: Path) -> dict[str, int]:
    """offsetof/sizeof of every member Python knows, the struct's size, the magic,
    the version and each call kind's value, printed by a program built against esca.h."""
    lines = [
        f'P("offset {n}", offsetof(struct esca_stats, {n}));\n'
        f'P("size {n}", sizeof(((struct esca_stats *)0)->{n}));'
        for n, *_ in stats.EscaStats._fields_
    ]
    lines += [f'P("kind {k}", ESCA_CALL_{k.upper()});' for k in stats.KINDS]
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <esca.h>\n"
        '#define P(what, v) printf("%s %llu\\n", what, (unsigned long long)(v))\n'
        "int main(void)\n{\n"
        + "\n".join(lines)
        + '\nP("sizeof", sizeof(struct esca_stats));\nP("magic", ESCA_STATS_MAGIC);\n'
        'P("version", ESCA_STATS_VERSION);\nP("kinds", ESCA_CALL_KINDS);\nreturn 0;\n}\n'
    )
    exe = tmp_path / "layout"
    compile_c(src, exe)
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


def test_python_has_every_field_of_the_header_in_order() -> None:
    assert [f[0] for f in stats.EscaStats._fields_] == header_fields()


def test_offsets_sizes_and_constants_match_the_compiler(tmp_path: Path) -> None:
    c = compiled(tmp_path)
    for name, *_ in stats.EscaStats._fields_:
        field = getattr(stats.EscaStats, name)
        assert (field.offset, field.size) == (c[f"offset {name}"], c[f"size {name}"]), name
    assert ctypes.sizeof(stats.EscaStats) == c["sizeof"]
    assert (stats.MAGIC, stats.VERSION) == (c["magic"], c["version"])
    assert [c[f"kind {k}"] for k in stats.KINDS] == list(range(len(stats.KINDS)))
    assert c["kinds"] == len(stats.KINDS)


def test_call_kinds_are_the_header_enum() -> None:
    names = header_kinds()
    assert names[-1] == "ESCA_CALL_KINDS"
    assert [n.removeprefix("ESCA_CALL_").lower() for n in names[:-1]] == list(stats.KINDS)
