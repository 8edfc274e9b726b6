"""`esca-pkg build nginx|lighttpd|lwan`: the build target of a patched server.

ServerTarget implements the builder's Target interface (esca_pkg/targets/):
the builder decides reuse from inputs() and key_extra(), runs build(), lints
and publishes.  The inputs are the recipe directory (servers/<name>/) and
this code; key_extra adds the Debian source versions the archive lists (so
a new security upload triggers a rebuild) or the lwan source's fingerprint.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import ClassVar

from debian.deb822 import Deb822
from debian.debian_support import Version

from esca_pkg import debbuild
from esca_pkg.context import BuildContext
from esca_pkg.log import die, info
from esca_pkg.servers import apt_source, debian_rebuild, lwan
from esca_pkg.servers.recipe import Kind, Recipe, load
from esca_pkg.targets.base import Target


class ServerTarget(Target):
    """One patched server, described by servers/<name>/recipe.toml."""

    order: ClassVar[int] = 80

    def recipe(self, ctx: BuildContext) -> Recipe:
        return load(ctx.project.root, self.name)

    def skip_reason(self, ctx: BuildContext) -> str | None:
        if self.recipe(ctx).kind is Kind.UPSTREAM_CMAKE and self.name not in ctx.sources:
            return (
                f"{self.name} is in no package registry: esca-pkg build {self.name} --source PATH"
            )
        return None

    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        files = [(f"servers/{self.name}/{rel}", p) for rel, p in self.recipe(ctx).input_files()]
        here = Path(__file__).parent
        for mod in ("build.py", "recipe.py", "apt_source.py", "debian_rebuild.py", "lwan.py"):
            files.append((f"esca_pkg:servers/{mod}", here / mod))
        files.append(("esca_pkg:debbuild.py", Path(debbuild.__file__)))
        mod_file = sys.modules[type(self).__module__].__file__
        if mod_file:
            files.append((f"esca_pkg:targets/{Path(mod_file).name}", Path(mod_file)))
        return files

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        recipe = self.recipe(ctx)
        extra = {"maintainer": debbuild.maintainer(), "lint": str(ctx.lint)}
        if recipe.kind is Kind.DEBIAN_SOURCE:
            archive = apt_source.SourceArchive.for_build_dir(ctx.build_dir)
            archive.update()
            extra["release"] = archive.release
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
            lwan.render_control(recipe, tree)
            shutil.copyfile(tree / "debian" / "control", out)
            return out
        # The Build-Depends of the newest listed version, from the Sources index
        # (no download needed).
        archive = apt_source.SourceArchive.for_build_dir(ctx.build_dir)
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
            archive = apt_source.SourceArchive.for_build_dir(ctx.build_dir)
            archive.update()
            version, dsc = archive.download(recipe.source_package, ctx.build_dir / "sources")
            info(f"{self.name}: Debian source {recipe.source_package} {version}")
            changes = debian_rebuild.rebuild(
                recipe, dsc, work, ctx.jobs, log, distribution=archive.release
            )
        else:
            changes = lwan.build(recipe, self._upstream(ctx), work, ctx.jobs, log)
        debs = debian_rebuild.kept_debs(changes, recipe.keep)
        return debbuild.BuildResult(changes, debs)

    def _upstream(self, ctx: BuildContext) -> lwan.UpstreamSource:
        source = ctx.sources.get(self.name)
        if source is None:
            die(
                f"{self.name} is in no package registry: its build needs the upstream source",
                hint=f"esca-pkg build {self.name} --source PATH (a source tree or a tarball)",
            )
        return lwan.UpstreamSource.open(source)
