"""esca: the project's own packages, from the top-level debian/.

debian/ is an ordinary native source package (esca-dkms, libesca0,
libesca-dev, esca-microbench, esca-tools): `dpkg-buildpackage -b` or
`gbp buildpackage` in a checkout builds it as they build any package.  This
target does what a backport does on top: it copies the files the build reads
into a work tree, adds a changelog entry naming the Debian release the
packages are built for (0.3.0+deb12, bookworm: release.py says why), runs
dpkg-buildpackage there and lints the result.
"""

from __future__ import annotations

import datetime
import email.utils
import shutil
from pathlib import Path

from debian.changelog import Changelog, ChangelogParseError
from debian.deb822 import Deb822

from esca_pkg.log import die
from esca_pkg.packaging import debbuild
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.targets import register
from esca_pkg.packaging.targets.base import Target, module_file

SOURCE_PACKAGE = "esca"
#: what debian/rules reads: the source package's build needs nothing else
SOURCE_PATHS = (
    "VERSION",
    "README.md",
    "pyproject.toml",
    "debian",
    "dkms",
    "esca_pkg",
    "libesca",
    "servers",
)


@register
class EscaTarget(Target):
    name = "esca"
    summary = "esca-dkms, libesca0, libesca-dev, esca-microbench, esca-tools (debian/)"
    order = 10

    def lint_fix(self) -> str:
        return (
            "fix debian/, or override the tag in debian/<package>.lintian-overrides "
            "with a comment giving the reason"
        )

    def control(self, ctx: BuildContext) -> Path:
        return ctx.project.root / "debian" / "control"

    def changelog(self, ctx: BuildContext) -> Changelog:
        """debian/changelog, checked against VERSION (the one place the version is set)."""
        path = ctx.project.root / "debian" / "changelog"
        try:
            log = Changelog(path.read_text(), strict=True)
        except (OSError, ChangelogParseError) as e:
            die(f"cannot read {path}: {e}", hint="write it with dch (devscripts)")
        if not len(log) or log.package != SOURCE_PACKAGE:
            die(
                f"{path}: the newest entry must be for the source package {SOURCE_PACKAGE}",
                hint=f"dch --create --package {SOURCE_PACKAGE} -v {ctx.version}",
            )
        if str(log.version) != ctx.version:
            die(
                f"{path}: the newest entry is {log.version} but VERSION says {ctx.version}",
                hint=f"add an entry for the release: dch -v {ctx.version} "
                "(or put the changelog's version into VERSION)",
            )
        return log

    def project_files(self, ctx: BuildContext) -> list[str]:
        return ctx.project.files(*SOURCE_PATHS)

    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        files = [(f"project:{rel}", ctx.project.root / rel) for rel in self.project_files(ctx)]
        files.append(module_file(self))
        files.append(("esca_pkg:debbuild.py", Path(debbuild.__file__)))
        return files

    def key_extra(self, ctx: BuildContext) -> dict[str, str]:
        with self.control(ctx).open() as fh:
            source = Deb822(fh)
        names = debbuild.build_depends_names(source)
        names += ["dpkg-dev", "debhelper", "lintian"]
        versions = debbuild.installed_versions(sorted(set(names)))
        extra = {f"installed:{n}": v for n, v in versions.items()}
        extra["maintainer"] = debbuild.maintainer()
        extra["version"] = ctx.package_version
        extra["release"] = ctx.release.codename
        extra["lint"] = str(ctx.lint)
        return extra

    def tree(self, ctx: BuildContext) -> Path:
        return ctx.work_dir(self.name) / f"{SOURCE_PACKAGE}-{ctx.package_version}"

    def stage(self, ctx: BuildContext) -> Path:
        """The work tree: the project's files and a changelog entry for this release."""
        log = self.changelog(ctx)
        work = ctx.work_dir(self.name)
        if work.exists():
            shutil.rmtree(work)
        tree = self.tree(ctx)
        tree.mkdir(parents=True)
        for rel in self.project_files(ctx):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ctx.project.root / rel, tree / rel, follow_symlinks=False)
        # Dated a second after the newest entry (lintian wants it later): the same
        # tree gives the same packages.
        when = email.utils.parsedate_to_datetime(log.date) + datetime.timedelta(seconds=1)
        log.new_block(
            package=SOURCE_PACKAGE,
            version=ctx.package_version,
            distributions=ctx.release.codename,
            urgency="medium",
            author=debbuild.maintainer(),
            date=email.utils.format_datetime(when),
            changes=[
                "",
                f"  * Built for Debian {ctx.release.number} ({ctx.release.codename}) by esca-pkg.",
                "",
            ],
        )
        (tree / "debian" / "changelog").write_text(str(log))
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
        return debbuild.dpkg_buildpackage(tree, log, ctx.jobs, env)
