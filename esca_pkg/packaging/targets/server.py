"""`esca-pkg build <server>`: the build target of a patched server, one per
recipe folder servers/<name>/ (registered by esca_pkg/packaging/targets).

ServerTarget implements the builder's Target interface:
the builder decides reuse from inputs() and key_extra(), runs build(), lints
and publishes.  The inputs are the recipe directory (servers/<name>/) and
this code; key_extra adds the Debian source versions the archive lists (so
a new security upload triggers a rebuild) or the lwan source's fingerprint.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import ClassVar

from debian.deb822 import Deb822, Dsc
from debian.debian_support import Version

from esca_pkg.log import die, info
from esca_pkg.packaging import debbuild, debian_source, rebuild, upstream
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.targets.base import Target, source_env
from esca_pkg.runtime import hooks
from esca_pkg.servers import recipe as recipes
from esca_pkg.servers.recipe import Kind, Recipe


class ServerTarget(Target):
    """One patched server, described by servers/<name>/recipe.toml."""

    order: ClassVar[int] = 80
    takes_source: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.summary = f"{name}, rebuilt with the ESCA hooks (servers/{name}/recipe.toml)"

    def recipe(self, ctx: BuildContext) -> Recipe:
        """The recipe, with the build facts of the release the sources come from."""
        found = recipes.load(recipes.source_dir(ctx.project.root), self.name)
        if found.kind is Kind.DEBIAN_SOURCE:
            found = found.for_release(self._archive(ctx).release)
        found.check_build_files()
        return found

    def lint_fix(self) -> str:
        return (
            f"a tag Debian's own packaging raises: override it with the reason in "
            f"servers/{self.name}/recipe.toml ([lintian-overrides], or "
            f"[release.<codename>.lintian-overrides] for one release); else fix the patch"
        )

    def _archive(self, ctx: BuildContext) -> debian_source.SourceArchive:
        return debian_source.SourceArchive.for_build_dir(ctx.build_dir)

    def skip_reason(self, ctx: BuildContext) -> str | None:
        if self.recipe(ctx).kind is Kind.UPSTREAM_CMAKE and self.name not in ctx.sources:
            return (
                f"{self.name} is in no package registry: esca-pkg build {self.name} --source PATH "
                f"(or set {source_env(self.name)}=PATH)"
            )
        return None

    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        files = [(f"servers/{self.name}/{rel}", p) for rel, p in self.recipe(ctx).input_files()]
        for mod in (debbuild, debian_source, rebuild, upstream, recipes, hooks):
            files.append((f"esca_pkg:{mod.__name__}", Path(str(mod.__file__))))
        files.append(("esca_pkg:packaging/targets/server.py", Path(__file__)))
        return files

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        recipe = self.recipe(ctx)
        extra = {"maintainer": debbuild.maintainer(), "lint": str(ctx.lint)}
        if recipe.kind is Kind.DEBIAN_SOURCE:
            archive = self._archive(ctx)
            extra["release"] = archive.release
            local = ctx.sources.get(self.name)
            if local is not None:
                extra["dsc"] = hashlib.sha256(
                    self._local_dsc(recipe, local)[1].read_bytes()
                ).hexdigest()
            else:
                archive.update()
                extra["listed"] = " ".join(str(v) for v in archive.versions(recipe.source_package))
        else:
            extra["source"] = self._upstream(ctx).fingerprint()
        return extra

    def control(self, ctx: BuildContext) -> Path:
        recipe = self.recipe(ctx)
        work = ctx.work_dir(self.name)
        if recipe.kind is Kind.UPSTREAM_CMAKE:
            out = work / "control.rendered"
            out.parent.mkdir(parents=True, exist_ok=True)
            tree = work / "control-tree"
            (tree / "debian").mkdir(parents=True, exist_ok=True)
            upstream.render_control(recipe, tree)
            shutil.copyfile(tree / "debian" / "control", out)
            return out
        # The Build-Depends of the newest listed version, from the Sources index
        # (no download needed).
        archive = self._archive(ctx)
        archive.update()
        paras = archive.paragraphs(recipe.source_package)
        if not paras:
            die(
                f"no source package '{recipe.source_package}' in the lists",
                hint=f"check {archive.sources_list}",
            )
        newest = max(paras, key=lambda p: Version(p["Version"]))
        control = Deb822()
        control["Source"] = recipe.source_package
        for fld in ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep"):
            if newest.get(fld):
                control[fld] = newest[fld]
        out = work / "control.sources"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(control.dump())
        return out

    def build(self, ctx: BuildContext, log: Path) -> debbuild.BuildResult:
        recipe = self.recipe(ctx)
        work = ctx.work_dir(self.name)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        if recipe.kind is Kind.DEBIAN_SOURCE:
            archive = self._archive(ctx)
            local = ctx.sources.get(self.name)
            if local is not None:
                version, dsc = self._local_dsc(recipe, local)
            else:
                archive.update()
                version, dsc = archive.download(recipe.source_package, ctx.build_dir / "sources")
            info(f"{self.name}: Debian source {recipe.source_package} {version}")
            changes = rebuild.rebuild(
                recipe, dsc, work, ctx.jobs, log, distribution=archive.release
            )
        else:
            changes = upstream.build(recipe, self._upstream(ctx), work, ctx.jobs, log)
        debs = rebuild.kept_debs(changes, recipe.keep)
        # Never publish a server without the hooks (the builder publishes only
        # what build() returns).
        rebuild.check_hooks(debs, recipe.run.binary)
        return debbuild.BuildResult(changes, debs)

    def _local_dsc(self, recipe: Recipe, path: Path) -> tuple[Version, Path]:
        """A Debian source package given with --source (a .dsc beside its files): for a
        mirror that lists versions it does not serve.  dpkg-source checks the files'
        checksums when unpacking."""
        if path.suffix != ".dsc" or not path.is_file():
            die(
                f"{self.name} is built from Debian's source: --source must be a .dsc, not {path}",
                hint=f"dget the {recipe.source_package} source of this release and give its .dsc",
            )
        with path.open() as fh:
            dsc = Dsc(fh)
        if dsc.get("Source") != recipe.source_package or not dsc.get("Version"):
            die(
                f"{path} is the source of {dsc.get('Source')!r}, not of {recipe.source_package!r}",
                hint=f"give a .dsc of {recipe.source_package}",
            )
        return Version(dsc["Version"]), path

    def _upstream(self, ctx: BuildContext) -> upstream.UpstreamSource:
        source = ctx.sources.get(self.name)
        if source is None:
            die(
                f"{self.name} is in no package registry: its build needs the upstream source",
                hint=f"esca-pkg build {self.name} --source PATH (a source tree or a tarball)",
            )
        return upstream.UpstreamSource.open(source)
