"""Regenerate libesca0's symbols file from the library as built (dpkg-gensymbols).

The build checks the library against the committed symbols file
(DPKG_GENSYMBOLS_CHECK_LEVEL=4 in debian/rules): a symbol added or removed
fails it.  `esca-pkg symbols` rebuilds libesca with the check off and writes
the symbols dpkg-gensymbols generated (new symbols tagged with the current
version, existing ones keeping theirs) back into debian/libesca0.symbols.
"""

from __future__ import annotations

from pathlib import Path

from debian.debfile import DebFile

from esca_pkg import proc
from esca_pkg.log import die
from esca_pkg.packaging import targets
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.progress import Progress
from esca_pkg.packaging.targets.esca import EscaTarget

LIB_PACKAGE = "libesca0"
DEV_PACKAGE = "libesca-dev"


def symbols_path(ctx: BuildContext) -> Path:
    return ctx.project.root / "debian" / f"{LIB_PACKAGE}.symbols"


def regenerate(ctx: BuildContext) -> tuple[Path, list[str], list[str]]:
    """Build the packages, write debian/libesca0.symbols; return (path, added, removed)."""
    target = targets.get("esca", ctx.project)
    assert isinstance(target, EscaTarget)
    log = ctx.log_path("symbols")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("esca-pkg symbols: building libesca with the symbols check off\n")
    with Progress("esca: building libesca for its symbols", log):
        result = target.build(ctx, log, env={"DPKG_GENSYMBOLS_CHECK_LEVEL": "0"})
    debs = [d for d in result.debs if d.name.startswith(f"{LIB_PACKAGE}_")]
    if len(debs) != 1:
        die(f"the libesca build made no {LIB_PACKAGE} package", hint=f"see {log}")
    # The package's build directory is still there after dpkg-buildpackage.
    tree = target.tree(ctx)
    out = tree.parent / f"{LIB_PACKAGE}.symbols.generated"
    argv = [
        "dpkg-gensymbols",
        f"-p{LIB_PACKAGE}",
        f"-Pdebian/{LIB_PACKAGE}",
        f"-v{DebFile(str(debs[0])).debcontrol()['Version']}",
        "-c0",
        f"-O{out}",
    ]
    current = tree / "debian" / f"{LIB_PACKAGE}.symbols"
    if current.exists():
        argv.append(f"-I{current}")
    proc.run(argv, cwd=tree, log=log, hint=f"see {log}")
    lines = out.read_text().splitlines()
    if not any(line.startswith("* Build-Depends-Package:") for line in lines):
        lines.insert(1, f"* Build-Depends-Package: {DEV_PACKAGE}")
    path = symbols_path(ctx)
    old = path.read_text().splitlines() if path.exists() else []
    syms = {line.split()[0] for line in lines if line.startswith(" ")}
    old_syms = {line.split()[0] for line in old if line.startswith(" ")}
    path.write_text("\n".join(lines) + "\n")
    return path, sorted(syms - old_syms), sorted(old_syms - syms)
