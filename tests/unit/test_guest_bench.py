"""scripts/guest-bench's parts that need no guest: the variant syntax and the
tables from a recorded guest.json (docs/bench/guest/nginx.json)."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    path = ROOT / "scripts" / "guest-bench"
    loader = importlib.machinery.SourceFileLoader("guest_bench", str(path))
    spec = importlib.util.spec_from_loader("guest_bench", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_variant_syntax():
    gb = load()
    assert gb.variant("module-wait=module:ESCA_FLUSH_WAIT=1,ESCA_ADAPT=0") == {
        "name": "module-wait",
        "backend": "module",
        "env": {"ESCA_FLUSH_WAIT": "1", "ESCA_ADAPT": "0"},
    }
    assert gb.variant("off=off") == {"name": "off", "backend": "off", "env": {}}
    for bad in ("module", "x=kernel", "x=module:ADAPT=0", "x=module:ESCA_ADAPT"):
        with pytest.raises(argparse.ArgumentTypeError):
            gb.variant(bad)


def test_tables_from_a_recorded_run():
    gb = load()
    doc = json.loads((ROOT / "docs" / "bench" / "guest" / "nginx.json").read_text())
    text = gb.summarize(doc)
    # instructions = guest ns / 2^shift; the change against the first variant
    assert "| null | 331 | 341 | 0.970 |" in text
    assert "| nginx | 1 KB | 16 | off | 55,585 | - | 8.11 |" in text
    assert "| nginx | 1 KB | 16 | module | 54,843 | -1.3% (-1.4…-1.3) | 3.16 |" in text
    assert "Modelled, not measured" in text


def test_carried_waits_are_loop_iterations():
    """A wait libesca carried into FLUSH_WAIT is an iteration of the event
    loop although no epoll_wait syscall counted it (recorded: nginx, module
    with and without flush-with-wait, docs/bench/guest/nginx-wait.json)."""
    gb = load()
    doc = json.loads((ROOT / "docs" / "bench" / "guest" / "nginx-wait.json").read_text())
    text = gb.summarize(doc)
    assert "| nginx | 1 KB | 1 | module-nowait | 56,725 | -0.1% (-0.2…-0.0) | 5.00 | 5.00 |" in text
    assert "| nginx | 1 KB | 1 | module-wait | 55,892 | -1.5% (-1.6…-1.5) | 4.00 | 3.98 |" in text
