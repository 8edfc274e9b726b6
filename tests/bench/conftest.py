"""The bench suite runs last: it measures the servers that the servers suite
(tests/servers) builds and installs, when both are collected."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [i for i in items if HERE in Path(str(i.path)).parents]
    if ours:
        rest = [i for i in items if HERE not in Path(str(i.path)).parents]
        items[:] = rest + ours
