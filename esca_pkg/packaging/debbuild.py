"""Building blocks of a Debian package build, shared by every target.

Debian metadata goes through python-debian (changelog, control, .changes).
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from debian.changelog import Changelog
from debian.deb822 import Changes, Deb822, PkgRelation

from esca_pkg import proc
from esca_pkg.log import die

DEFAULT_MAINTAINER = "ESCA developers <esca@example.org>"


def maintainer() -> str:
    """Maintainer of the generated packages: DEBFULLNAME/DEBEMAIL as dch uses them,
    else the project's default."""
    name, mail = os.environ.get("DEBFULLNAME"), os.environ.get("DEBEMAIL")
    if name and mail:
        return f"{name} <{mail}>"
    return DEFAULT_MAINTAINER


def write_changelog(
    path: Path,
    package: str,
    version: str,
    epoch: int,
    changes: list[str],
    *,
    distribution: str,
    who: str | None = None,
) -> None:
    """debian/changelog with one entry for version, for the Debian release
    distribution (python-debian writes the format)."""
    log = Changelog()
    log.new_block(
        package=package,
        version=version,
        distributions=distribution,
        urgency="medium",
        author=who or maintainer(),
        date=email.utils.formatdate(epoch, usegmt=False, localtime=False),
        changes=["", *[f"  * {c}" for c in changes], ""],
    )
    path.write_text(str(log))


def build_depends_names(source: Deb822) -> list[str]:
    """Package names in Build-Depends(-Indep/-Arch) of a source paragraph (first alternative)."""
    names: list[str] = []
    for fld in ("Build-Depends", "Build-Depends-Indep", "Build-Depends-Arch"):
        if not source.get(fld, "").strip():
            continue
        for alts in PkgRelation.parse_relations(source[fld]):
            if alts:
                names.append(alts[0]["name"])
    return sorted(set(names))


def unmet_build_depends(control: Path) -> str:
    """Build dependencies of control not satisfied here, as dpkg-checkbuilddeps words them
    ('' when all are met)."""
    res = proc.run(
        ["dpkg-checkbuilddeps", control],
        capture=True,
        check=False,
        hint="install dpkg-dev: apt-get install dpkg-dev",
    )
    if res.returncode == 0:
        return ""
    unmet = parse_unmet(res.stderr)
    if unmet is None:
        die(f"dpkg-checkbuilddeps {control} failed: {res.stderr.strip()}")
    return unmet


def parse_unmet(stderr: str) -> str | None:
    """The relations of dpkg-checkbuilddeps' complaint (None: no such line).  dpkg 1.21
    (Debian 12) writes "Unmet build dependencies:", dpkg 1.22 (Debian 13) "unmet ..."."""
    m = re.search(r"unmet build dependencies: (.*)", stderr, re.IGNORECASE)
    return m.group(1).strip() if m else None


def relation_names(relations: str) -> list[str]:
    """Package names of a relation string such as dpkg-checkbuilddeps prints (first
    alternative of each), for an apt-get install command."""
    names = []
    for alts in PkgRelation.parse_relations(", ".join(_split_unmet(relations))):
        if alts:
            names.append(alts[0]["name"])
    return names


def _split_unmet(text: str) -> list[str]:
    # dpkg-checkbuilddeps separates relations by spaces; rejoin version restrictions.
    return [
        m.group(0)
        for m in re.finditer(
            r"[^\s()|]+(?:\s*\([^)]*\))?(?:\s*\|\s*[^\s()|]+"
            r"(?:\s*\([^)]*\))?)*",
            text,
        )
    ]


def installed_versions(names: list[str]) -> dict[str, str]:
    """Installed version of each package name ('' when not installed)."""
    if not names:
        return {}
    res = proc.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n", *names],
        capture=True,
        check=False,
    )
    found = {n: "" for n in names}
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].startswith("ii"):
            found[parts[0].split(":")[0]] = parts[1]
    return found


@dataclass
class BuildResult:
    changes: Path
    files: list[Path] = field(default_factory=list)

    @property
    def debs(self) -> list[Path]:
        return [f for f in self.files if f.suffix in (".deb", ".udeb")]


def dpkg_buildpackage(
    tree: Path,
    log: Path,
    jobs: int,
    extra_env: Mapping[str, str] | None = None,
    options: tuple[str, ...] = ("-b", "--no-pre-clean"),
    nocheck: bool = False,
) -> BuildResult:
    """Unsigned binary build of the source tree (options: -b or -B, ...); the
    outputs land in tree's parent.  nocheck: the package's tests do not run."""
    opts = f"{'nocheck ' if nocheck else ''}parallel={jobs}"
    env = {"DEB_BUILD_OPTIONS": opts, **(extra_env or {})}
    for old in tree.parent.glob("*.changes"):
        old.unlink()
    proc.run(
        ["dpkg-buildpackage", *options, "-us", "-uc"],
        cwd=tree,
        env=env,
        log=log,
        hint=f"read the build log: {log}",
    )
    changes = sorted(tree.parent.glob("*.changes"))
    if len(changes) != 1:
        die(f"dpkg-buildpackage in {tree} left {len(changes)} .changes files, expected one")
    return BuildResult(changes[0], changes_files(changes[0]))


def changes_files(path: Path) -> list[Path]:
    """The .changes file itself and every file it lists (python-debian Changes)."""
    with path.open() as fh:
        ch = Changes(fh)
    return [path, *(path.parent / f["name"] for f in ch["Files"])]


@dataclass(frozen=True)
class LintReport:
    errors: int
    warnings: int
    others: int
    text: str

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.warnings == 0


_LINT_LINE = re.compile(r"^([EWIPXCNO]): (\S+)")


def lintian(changes: Path, log: Path) -> LintReport:
    """Lintian over every package of a .changes; informational tags shown, not fatal."""
    res = proc.run(
        ["lintian", "--display-info", "--tag-display-limit", "0", changes],
        capture=True,
        check=False,
        hint="install lintian: apt-get install lintian",
    )
    noise = ("running with root privileges is not recommended!",)
    text = "\n".join(
        line
        for line in (res.stdout + res.stderr).splitlines()
        if line.strip() and line.strip() not in noise
    )
    with log.open("a") as fh:
        fh.write(f"$ lintian --display-info {changes}\n{text}\n")
    counts = {"E": 0, "W": 0}
    others = 0
    for line in text.splitlines():
        m = _LINT_LINE.match(line)
        if not m:
            continue
        if m.group(1) in counts:
            counts[m.group(1)] += 1
        else:
            others += 1
    if res.returncode not in (0, 1, 2):
        die(f"lintian could not check {changes} (exit code {res.returncode})", hint=f"see {log}")
    return LintReport(counts["E"], counts["W"], others, text)
