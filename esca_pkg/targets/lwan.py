"""lwan from its upstream source (--source PATH) with the ESCA hooks (servers/lwan/)."""

from __future__ import annotations

from esca_pkg.servers.build import ServerTarget
from esca_pkg.targets import register


@register
class LwanTarget(ServerTarget):
    name = "lwan"
    summary = "lwan from its upstream source (--source PATH) with the ESCA hooks"
