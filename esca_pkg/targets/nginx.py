"""nginx rebuilt from Debian's source package with the ESCA hooks (servers/nginx/)."""

from __future__ import annotations

from esca_pkg.servers.build import ServerTarget
from esca_pkg.targets import register


@register
class NginxTarget(ServerTarget):
    name = "nginx"
    summary = "nginx rebuilt from Debian's source package with the ESCA hooks"
