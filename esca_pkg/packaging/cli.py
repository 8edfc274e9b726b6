"""esca-pkg: build ESCA's Debian packages, publish them as an apt repository,
and check what this machine has for building and running ESCA."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from esca_pkg import log
from esca_pkg.log import EscaError, die, info
from esca_pkg.packaging import builder, targets
from esca_pkg.packaging import doctor as doc
from esca_pkg.packaging import repo as repo_mod
from esca_pkg.packaging import symbols as symbols_mod
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.project import find_project
from esca_pkg.packaging.release import host_release
from esca_pkg.packaging.targets.base import source_env


def _context(
    project: Path | None,
    dist: Path | None,
    build_dir: Path | None,
    jobs: int | None,
    lint: bool,
    force: bool,
    sources: dict[str, Path] | None = None,
) -> BuildContext:
    proj = find_project(project)
    release = host_release()
    sources = {**env_sources(targets.available(proj)), **(sources or {})}
    return BuildContext(
        project=proj,
        release=release,
        dist=(dist or proj.root / "dist" / release.codename).resolve(),
        build_dir=(build_dir or proj.root / "build" / "esca-pkg").resolve(),
        jobs=jobs or os.cpu_count() or 1,
        lint=lint,
        force=force,
        sources=sources,
    )


def env_sources(found: dict[str, targets.Target]) -> dict[str, Path]:
    """Local sources from ESCA_<TARGET>_SOURCE, for the targets built from a source
    (a server: Debian's .dsc or lwan's tree); --source overrides them."""
    sources = {}
    for name, target in found.items():
        value = os.environ.get(source_env(name))
        if not value or not target.takes_source:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            die(
                f"{source_env(name)}={value}: no such file or directory",
                hint=f"point {source_env(name)} at the source of {name} "
                "(a .dsc with its files beside it, or a source tree or tarball), or unset it",
            )
        sources[name] = path.resolve()
    return sources


def _summary(outcomes: list[builder.Outcome], started: float) -> None:
    info("")
    for o in outcomes:
        detail = o.message if o.status in ("failed", "skipped") else o.lint
        info(f"  {o.target:<10} {o.status:<8} {o.seconds:6.1f} s  {detail}".rstrip())
    info(f"total {time.monotonic() - started:.1f} s")
    if any(o.status == "failed" for o in outcomes):
        die("some packages were not built: see the errors above")


_build_options = [
    click.option(
        "--project",
        type=click.Path(path_type=Path, file_okay=False),
        help="ESCA source tree (default: the one containing the current directory)",
    ),
    click.option(
        "--dist",
        type=click.Path(path_type=Path, file_okay=False),
        help="where the packages go (default: <project>/dist/<codename of this Debian release>)",
    ),
    click.option(
        "--build-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="work and log directory (default: <project>/build/esca-pkg)",
    ),
    click.option("-j", "--jobs", type=click.IntRange(1), help="parallel jobs (default: CPUs)"),
    click.option(
        "--lint/--no-lint",
        default=True,
        show_default=True,
        help="run lintian; errors or warnings fail the build",
    ),
    click.option("--force", is_flag=True, help="rebuild even when nothing changed"),
]


def build_options(f: click.decorators.FC) -> click.decorators.FC:
    for opt in reversed(_build_options):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="log every command run; tracebacks on errors")
@click.version_option(package_name="esca-pkg", prog_name="esca-pkg")
def cli(debug: bool) -> None:
    """Build ESCA's Debian packages, publish them as an apt repository, and check
    this machine (see docs/packaging.md)."""
    log.set_debug(debug)


@cli.command("build-all")
@build_options
def build_all(
    project: Path | None,
    dist: Path | None,
    build_dir: Path | None,
    jobs: int | None,
    lint: bool,
    force: bool,
) -> None:
    """Build every package; unchanged ones are reused from DIST."""
    started = time.monotonic()
    ctx = _context(project, dist, build_dir, jobs, lint, force)
    todo, skipped = [], {}
    found = targets.available(ctx.project)
    for name in targets.build_order(found.values()):
        t = found[name]
        reason = t.skip_reason(ctx)
        if reason:
            skipped[name] = reason
        else:
            todo.append(t)
    _summary(builder.build_many(ctx, todo, skipped), started)


@cli.command("build")
@click.argument("names", metavar="TARGET...", nargs=-1, required=True)
@click.option(
    "--source",
    type=click.Path(path_type=Path, exists=True),
    help="external source tree or tarball, for targets built from one (lwan); for a "
    "server built from Debian's source, a .dsc to use instead of the archive's",
)
@build_options
def build(
    names: tuple[str, ...],
    source: Path | None,
    project: Path | None,
    dist: Path | None,
    build_dir: Path | None,
    jobs: int | None,
    lint: bool,
    force: bool,
) -> None:
    """Build the packages of TARGET (see `esca-pkg targets`)."""
    started = time.monotonic()
    sources = {n: source.resolve() for n in names} if source else {}
    ctx = _context(project, dist, build_dir, jobs, lint, force, sources)
    chosen = [targets.get(n, ctx.project) for n in names]
    _summary(builder.build_many(ctx, chosen), started)


@cli.command("repo")
@click.argument(
    "dist_arg", metavar="[DIST]", required=False, type=click.Path(path_type=Path, file_okay=False)
)
@click.option(
    "--dist",
    type=click.Path(path_type=Path, file_okay=False),
    help="where the built packages are: a directory of .debs, or one with a "
    "subdirectory per release (default: <project>/dist, holding bookworm/, trixie/)",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="repository directory (default: <dist>/repo)",
)
@click.option(
    "--origin",
    default=repo_mod.DEFAULT_ORIGIN,
    show_default=True,
    help="Origin of the Release files (what `Pin: release o=...` names)",
)
@click.option("--label", default=repo_mod.DEFAULT_LABEL, show_default=True)
@click.option(
    "--suite",
    metavar="CODENAME",
    help="put every package into this suite (default: the release each package was "
    "built for, from its .changes)",
)
@click.option("--sign-key", metavar="KEYID", help="sign the Release files with this gpg key")
@click.option(
    "--gnupghome",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="gpg home holding the signing key (default: gpg's own)",
)
def repo(
    dist_arg: Path | None,
    dist: Path | None,
    output: Path | None,
    origin: str,
    label: str,
    suite: str | None,
    sign_key: str | None,
    gnupghome: Path | None,
) -> None:
    """Publish the built .debs of DIST as an apt repository in DIST/repo, one
    suite per Debian release they were built for."""
    if dist_arg and dist and dist_arg.resolve() != dist.resolve():
        die("give the package directory once: as DIST or as --dist")
    dist = dist or dist_arg
    if dist is None:
        dist = find_project(None).root / "dist"
    dist = dist.resolve()
    out = (output or dist / "repo").resolve()
    if not dist.is_dir():
        die(f"{dist} does not exist", hint="build the packages first: esca-pkg build-all")
    # One build directory, or the per-release ones under it (dist/bookworm, ...).
    dirs = [dist]
    if not any(p.is_file() for p in dist.glob("*.deb")):
        dirs = sorted(
            p for p in dist.iterdir() if p.is_dir() and p != out and not p.name.startswith(".")
        )
    if suite:
        suites = {suite: sorted(p for d in dirs for p in d.glob("*.deb") if p.is_file())}
    else:
        suites = repo_mod.debs_by_distribution(dirs)
    res = repo_mod.build_repo(
        suites, out, origin=origin, label=label, sign_key=sign_key, gnupghome=gnupghome
    )
    count = sum(len(v) for v in res.suites.values())
    for name, listed in res.suites.items():
        info(f"suite {name}:")
        for pkg, version, arch in listed:
            info(f"  {pkg} {version} {arch}")
    info(
        f"repository: {out} ({count} packages in {len(res.suites)} suites"
        + (", signed" if res.signed else ", unsigned")
        + ")"
    )
    click.echo("apt source line (for a file in /etc/apt/sources.list.d/), by release:")
    for name in res.suites:
        click.echo(f"  {res.sources_line(name)}")
    click.echo(
        f"pin (for /etc/apt/preferences.d/esca):  Package: *  /  Pin: release o={origin}"
        "  /  Pin-Priority: 600"
    )


@cli.command("doctor")
@click.option(
    "--area",
    "areas",
    multiple=True,
    type=click.Choice(["build", "kernel", "run"]),
    help="check only this area (repeatable; default: all)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--project",
    type=click.Path(path_type=Path, file_okay=False),
    help="ESCA source tree (default: the one containing the current directory)",
)
def doctor(areas: tuple[str, ...], as_json: bool, project: Path | None) -> None:
    """What this machine has and lacks for building and running ESCA, with fixes.

    Exits 1 when something fails (a package cannot be built, no backend runs)."""
    try:
        ctx: BuildContext | None = _context(project, None, None, None, True, False)
    except EscaError:
        ctx = None
    checks = doc.all_checks(ctx, set(areas or ("build", "kernel", "run")), doc.System())
    if as_json:
        click.echo(json.dumps(doc.as_dicts(checks), indent=1))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        area = ""
        for c in checks:
            if c.area != area:
                area = c.area
                click.echo(f"{area}:")
            click.echo(f"  [{marks[c.status]}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo("         fix: " + c.fix.replace("\n", "\n              "))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)


@cli.command("symbols")
@click.option(
    "--project",
    type=click.Path(path_type=Path, file_okay=False),
    help="ESCA source tree (default: the one containing the current directory)",
)
def symbols_cmd(project: Path | None) -> None:
    """Regenerate libesca0's symbols file from the built library."""
    ctx = _context(project, None, None, None, False, True)
    path, added, removed = symbols_mod.regenerate(ctx)
    info(f"wrote {path}")
    for s in added:
        info(f"  added   {s}")
    for s in removed:
        info(f"  removed {s}  (an ABI break: raise the SONAME)")
    if not added and not removed:
        info("  no change")


@cli.command("targets")
@click.option(
    "--project",
    type=click.Path(path_type=Path, file_okay=False),
    help="ESCA source tree (default: the one containing the current directory)",
)
def list_targets(project: Path | None) -> None:
    """List the build targets in build order."""
    try:
        proj = find_project(project)
    except EscaError:
        proj = None  # no source tree: no server recipes
    found = targets.available(proj)
    for name in targets.build_order(found.values()):
        click.echo(f"{name:<10} {found[name].summary}")


def main() -> None:
    log.run_main(cli)


if __name__ == "__main__":
    main()
