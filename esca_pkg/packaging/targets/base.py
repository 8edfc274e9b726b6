"""What a build target is, and the common debhelper flow most targets follow.

A target turns part of the project (or an external source) into .deb files.
`Target` is the minimal interface the builder drives; `DebhelperTarget`
implements the usual flow: stage the files into a source tree, render
debian/ from templates/<name>/, generate debian/changelog from VERSION and the
Debian release (ctx.package_version, e.g. 0.1.0+deb13, distribution trixie), run
dpkg-buildpackage.  A new target is one module in esca_pkg/packaging/targets/
with a class decorated by `@register` (see its __init__.py); a new server is a
recipe folder (servers/<name>/, built by server.py).
"""

from __future__ import annotations

import datetime
import shutil
import sys
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from typing import ClassVar

from debian.deb822 import Deb822

from esca_pkg.log import die
from esca_pkg.packaging import copyright, debbuild
from esca_pkg.packaging.context import BuildContext


def source_env(target: str) -> str:
    """The environment variable naming a local source for TARGET (ESCA_NGINX_SOURCE)."""
    return f"ESCA_{target.upper().replace('-', '_')}_SOURCE"


class Target(ABC):
    name: str
    summary: str
    #: targets whose packages must be built first (build-all orders by this)
    requires: ClassVar[tuple[str, ...]] = ()
    #: position in build-all among targets with no ordering constraint
    order: ClassVar[int] = 50
    #: built from a local source when one is given (--source, ESCA_<NAME>_SOURCE)
    takes_source: ClassVar[bool] = False

    def skip_reason(self, ctx: BuildContext) -> str | None:
        """Why build-all leaves this target out on this run (None: build it)."""
        return None

    @abstractmethod
    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        """Every file the build reads, as (stable label, path): hashed to decide reuse."""

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        """Further things the outputs depend on (versions of tools, settings)."""
        return {}

    def lint_fix(self) -> str:
        """The fix named when lintian finds errors or warnings in this target's packages."""
        return (
            f"fix the packaging (esca_pkg/templates/{self.name}/), "
            "or override with a written reason"
        )

    @abstractmethod
    def control(self, ctx: BuildContext) -> Path:
        """A debian/control file whose Build-Depends are this target's (for doctor)."""

    @abstractmethod
    def build(self, ctx: BuildContext, log: Path) -> debbuild.BuildResult:
        """Build; return the .changes and the files it lists (in ctx.work_dir(name))."""


def module_file(obj: object) -> tuple[str, Path]:
    """(label, path) of the Python module defining obj's class, as a hash input."""
    mod = sys.modules[type(obj).__module__]
    path = Path(mod.__file__ or "")
    return (f"esca_pkg:{path.name}", path)


class DebhelperTarget(Target):
    #: directory under esca_pkg/templates/ holding the debian/ templates
    template: ClassVar[str]
    source_package: ClassVar[str]
    #: project paths (files or directories) staged into the source tree
    source_paths: ClassVar[tuple[str, ...]] = ()
    changelog_text: ClassVar[str] = "Package built from the ESCA source tree by esca-pkg."

    # -- hooks for subclasses -------------------------------------------------------------

    def check_sources(self, ctx: BuildContext) -> None:
        """Fail with a clear message when the project lacks what this target needs."""

    def staged_name(self, rel: str) -> str | None:
        """Where a project file goes in the source tree (None: left out)."""
        return rel

    def variables(self, ctx: BuildContext) -> dict[str, object]:
        staged = []
        for rel in self.project_files(ctx):
            dest = self.staged_name(rel)
            if dest is not None:
                staged.append((dest, ctx.project.root / rel))
        files, licenses = copyright.scan(staged)
        return {
            "copyright_files": files,
            "copyright_licenses": licenses,
            "version": ctx.version,
            "package_version": ctx.package_version,
            "maintainer": debbuild.maintainer(),
            "source_package": self.source_package,
            "year": datetime.datetime.fromtimestamp(
                ctx.project.changelog_epoch(), datetime.UTC
            ).year,
        }

    def finish_stage(self, ctx: BuildContext, tree: Path) -> None:
        """Last changes to the staged tree (generated files)."""

    def build_env(self, ctx: BuildContext) -> dict[str, str]:
        return {}

    # -- the flow ---------------------------------------------------------------------------

    def project_files(self, ctx: BuildContext) -> list[str]:
        return ctx.project.files(*self.source_paths)

    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        files = [(f"project:{rel}", ctx.project.root / rel) for rel in self.project_files(ctx)]
        for tdir in (self.template, "common"):
            troot = debbuild.templates_root() / tdir
            for rel in debbuild.template_files(tdir):
                with resources.as_file(troot.joinpath(*rel.split("/"))) as p:
                    files.append((f"template:{tdir}/{rel}", Path(p)))
        files.append(module_file(self))
        files.append(("esca_pkg:debbuild.py", Path(debbuild.__file__)))
        files.append(("esca_pkg:targets/base.py", Path(__file__)))
        files.append(("esca_pkg:copyright.py", Path(copyright.__file__)))
        return files

    def rendered_control(self, ctx: BuildContext) -> list[Deb822]:
        env = debbuild.jinja_env()
        text = env.get_template(f"{self.template}/debian/control").render(**self.variables(ctx))
        return list(Deb822.iter_paragraphs(text.splitlines(keepends=True)))

    def control(self, ctx: BuildContext) -> Path:
        out = ctx.work_dir(self.name) / "control.rendered"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(p.dump() for p in self.rendered_control(ctx)))
        return out

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        names = debbuild.build_depends_names(self.rendered_control(ctx)[0])
        names += ["dpkg-dev", "debhelper", "lintian"]
        versions = debbuild.installed_versions(sorted(set(names)))
        extra = {f"installed:{n}": v for n, v in versions.items()}
        extra["maintainer"] = debbuild.maintainer()
        extra["version"] = ctx.package_version
        extra["release"] = ctx.release.codename
        extra["lint"] = str(ctx.lint)
        return extra

    def tree(self, ctx: BuildContext) -> Path:
        return ctx.work_dir(self.name) / f"{self.source_package}-{ctx.package_version}"

    def stage(self, ctx: BuildContext) -> Path:
        self.check_sources(ctx)
        work = ctx.work_dir(self.name)
        if work.exists():
            shutil.rmtree(work)
        tree = self.tree(ctx)
        tree.mkdir(parents=True)
        for rel in self.project_files(ctx):
            dest = self.staged_name(rel)
            if dest is None:
                continue
            (tree / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ctx.project.root / rel, tree / dest, follow_symlinks=False)
        debbuild.render_templates(self.template, tree, self.variables(ctx))
        debbuild.write_changelog(
            tree / "debian" / "changelog",
            self.source_package,
            ctx.package_version,
            ctx.project.changelog_epoch(),
            [self.changelog_text],
            distribution=ctx.release.codename,
        )
        self.finish_stage(ctx, tree)
        return tree

    def build(
        self, ctx: BuildContext, log: Path, env: dict[str, str] | None = None
    ) -> debbuild.BuildResult:
        tree = self.stage(ctx)
        unmet = debbuild.unmet_build_depends(tree / "debian" / "control")
        if unmet:
            names = " ".join(debbuild.relation_names(unmet))
            die(
                f"{self.name}: unmet build dependencies: {unmet}",
                hint=f"apt-get install --no-install-recommends {names}",
            )
        build_env = {**self.build_env(ctx), **(env or {})}
        return debbuild.dpkg_buildpackage(tree, log, ctx.jobs, build_env)


def require_files(ctx: BuildContext, target: str, paths: list[str], owner: str) -> None:
    missing = [p for p in paths if not (ctx.project.root / p).exists()]
    if missing:
        die(
            f"{target}: {', '.join(missing)} not found in {ctx.project.root}",
            hint=f"{owner}; or build the other targets with esca-pkg build <target>",
        )
