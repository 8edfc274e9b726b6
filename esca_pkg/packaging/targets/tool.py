"""esca-tools: the esca-pkg / esca-run / esca-bench / esca-stat commands, from
pyproject.toml, with the server recipes (servers/*/recipe.toml and their
configuration templates, as package data esca_pkg/recipes/) and the
tmpfiles.d entry of /run/esca.

Built with dh and pybuild-plugin-pyproject (see docs/packaging.md for why not stdeb).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from esca_pkg.log import die, warn
from esca_pkg.packaging.context import BuildContext
from esca_pkg.packaging.targets import register
from esca_pkg.packaging.targets.base import DebhelperTarget, require_files

#: one-line descriptions for the manual pages help2man writes
SCRIPT_SUMMARIES = {
    "esca-pkg": "build, check and publish ESCA's Debian packages",
    "esca-run": "run a server with ESCA system call batching",
    "esca-bench": "measure what ESCA buys on this machine",
    "esca-stat": "show the live ESCA counters of running processes",
}
#: what esca-run needs of a recipe folder at run time
RECIPE_RUN_FILES = ("recipe.toml", "serve.conf.j2")


@register
class ToolTarget(DebhelperTarget):
    name = "tool"
    summary = "esca-tools: the esca-pkg, esca-run, esca-bench and esca-stat commands"
    template = "tool"
    source_package = "esca-tools"
    source_paths = ("pyproject.toml", "VERSION", "README.md", "esca_pkg", "servers")
    order = 30
    changelog_text = "Python package built from pyproject.toml by esca-pkg."

    def check_sources(self, ctx: BuildContext) -> None:
        require_files(
            ctx,
            self.name,
            ["pyproject.toml", "esca_pkg/__init__.py"],
            "the tool's own files are missing",
        )

    def staged_name(self, rel: str) -> str | None:
        """servers/<name>/{recipe.toml,serve.conf.j2} become package data."""
        if rel.startswith("servers/"):
            parts = rel.split("/")
            if len(parts) == 3 and parts[2] in RECIPE_RUN_FILES:
                return f"esca_pkg/recipes/{parts[1]}/{parts[2]}"
            return None
        return rel

    def scripts(self, ctx: BuildContext) -> tuple[list[str], list[str]]:
        """Console scripts of pyproject.toml: (those whose module exists, the others)."""
        try:
            data = tomllib.loads((ctx.project.root / "pyproject.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            die(f"cannot read pyproject.toml: {e}")
        present, absent = [], []
        for script, ref in sorted(data.get("project", {}).get("scripts", {}).items()):
            mod = ref.split(":")[0].replace(".", "/")
            root = ctx.project.root
            if (root / f"{mod}.py").is_file() or (root / mod / "__init__.py").is_file():
                present.append(script)
            else:
                absent.append(script)
        return present, absent

    def variables(self, ctx: BuildContext) -> dict[str, object]:
        present, absent = self.scripts(ctx)
        return {
            **super().variables(ctx),
            "scripts": [(s, SCRIPT_SUMMARIES.get(s, "part of ESCA")) for s in present],
            "dropped_scripts": absent,
        }

    def finish_stage(self, ctx: BuildContext, tree: Path) -> None:
        for s in self.scripts(ctx)[1]:
            warn(
                f"tool: the module of console script {s} is not written yet: "
                "the package leaves that command out"
            )
        readme = tree / "README.md"
        if not readme.exists():
            warn("tool: README.md is missing; the package's Python metadata gets a stub")
            readme.write_text("ESCA: Effective System Call Aggregation.\n")
