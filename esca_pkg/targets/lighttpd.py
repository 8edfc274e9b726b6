"""lighttpd rebuilt from Debian's source package with the ESCA hooks (servers/lighttpd/)."""

from __future__ import annotations

from esca_pkg.servers.build import ServerTarget
from esca_pkg.targets import register


@register
class LighttpdTarget(ServerTarget):
    name = "lighttpd"
    summary = "lighttpd rebuilt from Debian's source package with the ESCA hooks"
