"""Registry of build targets.

Each module in this package defines one target class decorated with
`@register`; the modules are imported on first use, so adding a target is
adding a module (for example nginx.py).  Packages outside this tree can add
targets through the entry-point group "esca_pkg.targets".
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from esca_pkg.log import die
from esca_pkg.targets.base import Target

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
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    for ep in entry_points(group="esca_pkg.targets"):
        ep.load()


def names() -> list[str]:
    """Target names in build order: `requires` first, then by `order` and name."""
    _load()
    pending = sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name))
    ordered: list[str] = []
    while pending:
        for cls in pending:
            if all(r in ordered or r not in _REGISTRY for r in cls.requires):
                ordered.append(cls.name)
                pending.remove(cls)
                break
        else:
            die(
                "build targets require each other in a cycle: " + ", ".join(c.name for c in pending)
            )
    return ordered


def get(name: str) -> Target:
    _load()
    if name not in _REGISTRY:
        die(f"unknown target '{name}'", hint="choose one of: " + ", ".join(names()))
    return _REGISTRY[name]()
