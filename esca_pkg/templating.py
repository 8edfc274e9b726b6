"""The one jinja2 set-up of the tool: undefined variables are errors, files keep
their last newline, nothing is HTML-escaped (debian/ files, configurations)."""

from __future__ import annotations

import jinja2


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
