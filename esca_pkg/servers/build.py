"""`esca-pkg build nginx|lighttpd|lwan`: the entry point the targets call.

A build is reused while its inputs are unchanged: the recipe directory
(servers/<name>/), the source version chosen and the build options, through
the tool's stamp cache (esca_pkg/cache.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from esca_pkg import cache
from esca_pkg.context import BuildContext
from esca_pkg.log import die, info
from esca_pkg.servers import apt_source, debian_rebuild, lwan
from esca_pkg.servers.recipe import Kind, Recipe, load


def build_server(ctx: BuildContext, name: str) -> list[Path]:
    """Build one patched server; returns its .debs in ctx.dist."""
    recipe = load(ctx.project.root, name)
    if recipe.kind is Kind.DEBIAN_SOURCE:
        return _build_debian_source(ctx, recipe)
    return _build_upstream(ctx, recipe)


def _publish(ctx: BuildContext, name: str, key: str, debs: list[Path]) -> list[Path]:
    ctx.dist.mkdir(parents=True, exist_ok=True)
    # Packages of an older build of this target leave dist/, so that the
    # repository holds one version of each.
    old = cache.Stamp.load(ctx.dist, name)
    if old:
        for stale in old.outputs:
            (ctx.dist / stale).unlink(missing_ok=True)
    out = []
    for deb in debs:
        dest = ctx.dist / deb.name
        shutil.copy2(deb, dest)
        out.append(dest)
    cache.Stamp.of(key, ctx.dist, [p.name for p in out]).save(ctx.dist, name)
    return out


def _reuse(ctx: BuildContext, name: str, key: str) -> list[Path] | None:
    stamp = cache.Stamp.load(ctx.dist, name)
    if ctx.force or stamp is None or not stamp.fresh(key, ctx.dist):
        return None
    info(f"{name}: up to date ({', '.join(sorted(stamp.outputs))})")
    return [ctx.dist / n for n in sorted(stamp.outputs)]


def _build_debian_source(ctx: BuildContext, recipe: Recipe) -> list[Path]:
    archive = apt_source.SourceArchive.for_build_dir(ctx.build_dir)
    archive.update()
    listed = archive.versions(recipe.source_package)
    key = cache.hash_inputs(
        recipe.input_files(),
        {"listed": " ".join(str(v) for v in listed), "release": archive.release,
         "kind": recipe.kind.value},
    )
    reused = _reuse(ctx, recipe.name, key)
    if reused is not None:
        return reused
    work = ctx.work_dir(recipe.name)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = ctx.log_path(recipe.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    version, dsc = archive.download(recipe.source_package, ctx.build_dir / "sources")
    info(f"{recipe.name}: Debian source {recipe.source_package} {version}")
    new_version, debs = debian_rebuild.rebuild(recipe, dsc, work, ctx.jobs, log,
                                               distribution=archive.release)
    out = _publish(ctx, recipe.name, key, debs)
    info(f"{recipe.name} {new_version}: {', '.join(p.name for p in out)}")
    return out


def _build_upstream(ctx: BuildContext, recipe: Recipe) -> list[Path]:
    source = ctx.sources.get(recipe.name)
    if source is None:
        die(f"{recipe.name} is in no package registry: its build needs the upstream source",
            hint=f"esca-pkg build {recipe.name} --source PATH (a source tree or a tarball)")
    src = lwan.UpstreamSource.open(source)
    key = cache.hash_inputs(
        recipe.input_files(), {"source": src.fingerprint(), "kind": recipe.kind.value},
    )
    reused = _reuse(ctx, recipe.name, key)
    if reused is not None:
        return reused
    work = ctx.work_dir(recipe.name)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = ctx.log_path(recipe.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    version, debs = lwan.build(recipe, src, work, ctx.jobs, log)
    out = _publish(ctx, recipe.name, key, debs)
    info(f"{recipe.name} {version}: {', '.join(p.name for p in out)}")
    return out
