"""esca-dkms: the kernel module's source under /usr/src/esca-<version>, built by DKMS."""

from __future__ import annotations

import re
from pathlib import Path

from esca_pkg.log import die
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.targets import register
from esca_pkg.packaging.targets.base import DebhelperTarget
from esca_pkg.runtime import signing

MODULE_NAME = "esca"
_ASSIGN = re.compile(r"^\s*(PACKAGE_NAME|PACKAGE_VERSION)\s*=\s*\"?([^\"\n#]*)\"?", re.MULTILINE)


@register
class DkmsTarget(DebhelperTarget):
    name = "dkms"
    summary = "esca-dkms: the esca kernel module as DKMS source"
    template = "dkms"
    source_package = "esca-dkms"
    source_paths = ("dkms",)
    order = 10
    changelog_text = "Kernel module source packaged for DKMS by esca-pkg."

    def conf_source(self, ctx: BuildContext) -> Path | None:
        for name in ("dkms/dkms.conf.in", "dkms/dkms.conf"):
            if (ctx.project.root / name).is_file():
                return ctx.project.root / name
        return None

    def check_sources(self, ctx: BuildContext) -> None:
        if self.conf_source(ctx) is None:
            die(
                f"dkms: neither dkms/dkms.conf.in nor dkms/dkms.conf in {ctx.project.root}",
                hint="the kernel module (dkms/) is not there yet: build the other targets "
                "with esca-pkg build libesca / esca-pkg build tool",
            )

    def staged_name(self, rel: str) -> str | None:
        if rel in ("dkms/dkms.conf", "dkms/dkms.conf.in"):
            return None  # written by finish_stage with the version filled in
        return "module/" + rel.removeprefix("dkms/")

    def dkms_conf(self, ctx: BuildContext) -> str:
        src = self.conf_source(ctx)
        assert src is not None
        text = src.read_text().replace("@VERSION@", ctx.version)
        values = dict(_ASSIGN.findall(text))
        if values.get("PACKAGE_NAME", "").strip() != MODULE_NAME:
            die(
                f'{src}: PACKAGE_NAME must be "{MODULE_NAME}" (the package is '
                f"{MODULE_NAME}-dkms), found {values.get('PACKAGE_NAME')!r}",
                hint=f'set PACKAGE_NAME="{MODULE_NAME}" in {src.name}',
            )
        ver = values.get("PACKAGE_VERSION", "").strip()
        if ver not in (ctx.version, "#MODULE_VERSION#"):
            die(
                f"{src}: PACKAGE_VERSION is {ver!r} but VERSION says {ctx.version}",
                hint=f'write PACKAGE_VERSION="@VERSION@" in {src.name}: VERSION is the only '
                "place the version is defined",
            )
        return text

    def finish_stage(self, ctx: BuildContext, tree: Path) -> None:
        (tree / "module").mkdir(exist_ok=True)
        (tree / "module" / "dkms.conf").write_text(self.dkms_conf(ctx))

    def inputs(self, ctx: BuildContext) -> list[tuple[str, Path]]:
        # The postinst's signature messages are signing.py's.
        return [*super().inputs(ctx), ("esca_pkg:signing.py", Path(signing.__file__))]

    def variables(self, ctx: BuildContext) -> dict[str, object]:
        return {
            **super().variables(ctx),
            "module": MODULE_NAME,
            "signing_advice": signing.shell_advice(),
        }
