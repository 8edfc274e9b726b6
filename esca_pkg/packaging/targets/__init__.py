"""Registry of build targets.

Each module in this package defines target classes decorated with
`@register` (esca: the top-level debian/); every server recipe of the project
(servers/<name>/recipe.toml) is a target too (server.py), so a new server is
a new recipe folder.  Packages outside this tree can add targets through the
entry-point group "esca_pkg.targets".
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from importlib.metadata import entry_points

from esca_pkg.log import die
from esca_pkg.packaging.project import Project
from esca_pkg.packaging.targets.base import Target
from esca_pkg.servers import recipe

_REGISTRY: dict[str, type[Target]] = {}
_loaded = False


def register(cls: type[Target]) -> type[Target]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"two build targets named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "server") and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    for ep in entry_points(group="esca_pkg.targets"):
        ep.load()


def available(project: Project | None) -> dict[str, Target]:
    """Every target: the registered ones and, in a source tree, one per server recipe."""
    from esca_pkg.packaging.targets.server import ServerTarget

    _load()
    found: dict[str, Target] = {name: cls() for name, cls in _REGISTRY.items()}
    if project is not None:
        for name in recipe.names(project.root / "servers"):
            if name in found:
                die(
                    f"servers/{name} has the name of the build target {name}",
                    hint="rename the server's recipe folder",
                )
            found[name] = ServerTarget(name)
    return found


def build_order(targets: Iterable[Target]) -> list[str]:
    """Target names in build order: `requires` first, then by `order` and name."""
    pending = sorted(targets, key=lambda t: (t.order, t.name))
    known = {t.name for t in pending}
    ordered: list[str] = []
    while pending:
        for t in pending:
            if all(r in ordered or r not in known for r in t.requires):
                ordered.append(t.name)
                pending.remove(t)
                break
        else:
            die(
                "build targets require each other in a cycle: " + ", ".join(t.name for t in pending)
            )
    return ordered


def names(project: Project | None) -> list[str]:
    """Every target's name, in build order."""
    return build_order(available(project).values())


def get(name: str, project: Project | None) -> Target:
    found = available(project)
    if name not in found:
        die(
            f"unknown target '{name}'",
            hint="choose one of: " + ", ".join(build_order(found.values())),
        )
    return found[name]
