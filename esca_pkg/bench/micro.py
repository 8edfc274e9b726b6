"""The libesca micro-benchmark: per-call cost of small calls, direct vs batched.

Runs esca-microbench under each backend, interleaved (off, uring, module,
off, uring, ... ) and repeated, and reports the median per-call cost and the
overhead reduction against the direct baseline (backend off).

Besides the backends, the io_uring ring settings can be compared one by one
(RING_SETTINGS: the ring with every setting, and without each of them),
every batch forced through the ring (ESCA_ADAPT=0) so that the settings, not
libesca's adaptive choice, make the difference.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from esca_pkg.log import die
from esca_pkg.proc import run
from esca_pkg.runtime import backends
from esca_pkg.runtime.backends import Backend

#: esca-microbench of the esca-microbench package
PACKAGED = Path("/usr/lib/esca/esca-microbench")

BATCH_SIZES = (1, 8, 32, 64)
OPS = ("write", "close")
#: every op esca-microbench knows (sockopt: TCP_NODELAY on loopback TCP;
#: waitwrite: the writes, then an epoll_wait that returns at once)
ALL_OPS = ("write", "close", "sockopt", "waitwrite")

_FORCED = (("ESCA_ADAPT", "0"),)

#: ring settings (ESCA_URING_SETUP, ESCA_URING_SOCKOPT, ESCA_FLUSH_WAIT,
#: docs/libesca.md), each a variant of the uring backend
RING_SETTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "ring": _FORCED,
    "ring-nodefer": (*_FORCED, ("ESCA_URING_SETUP", "coop,register")),
    "ring-noregister": (*_FORCED, ("ESCA_URING_SETUP", "coop,defer")),
    "ring-plain": (*_FORCED, ("ESCA_URING_SETUP", "none")),
    "ring-sockopt": (*_FORCED, ("ESCA_URING_SOCKOPT", "1")),
    "ring-noflushwait": (*_FORCED, ("ESCA_FLUSH_WAIT", "0")),
}


def variant_env(name: str) -> dict[str, str]:
    """The environment of a backend name (off, uring, module) or ring setting."""
    if name in RING_SETTINGS:
        return {"ESCA_BACKEND": "uring", **dict(RING_SETTINGS[name])}
    return {"ESCA_BACKEND": name}


@dataclass(frozen=True)
class MicroSetup:
    library: Path
    program: Path
    backends: tuple[str, ...]
    rounds: int = 2000
    repeats: int = 5
    sockets: int = 1


@dataclass
class MicroResult:
    samples: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)

    def median(self, op: str, backend: str, batch: int) -> float:
        return statistics.median(self.samples[(op, backend, batch)])


def find_program(top: Path) -> Path:
    """esca-microbench: top's build (make -C libesca), else the installed one."""
    for prog in (top / "libesca" / "build" / "esca-microbench", PACKAGED):
        if prog.is_file():
            return prog
    die(
        "esca-microbench was not found",
        hint="run 'make -C libesca' in the source tree, or apt install esca-microbench",
    )


def usable_backends() -> tuple[str, ...]:
    """off and every ESCA backend this process can use."""
    usable = [b.value for b, c in backends.usable().items() if c.usable]
    return ("off", *(b for b in (Backend.URING.value, Backend.MODULE.value) if b in usable))


def run_micro(
    setup: MicroSetup, ops: tuple[str, ...] = OPS, batches: tuple[int, ...] = BATCH_SIZES
) -> MicroResult:
    result = MicroResult()
    for _ in range(setup.repeats):
        for op in ops:
            for batch in batches:
                for backend in setup.backends:  # interleaved A B A B ...
                    proc = run(
                        [setup.program, op, str(batch), str(setup.rounds), str(setup.sockets)],
                        env={"LD_PRELOAD": str(setup.library), **variant_env(backend)},
                        capture=True,
                        system_path=False,
                    )
                    ns = float(proc.stdout.split()[2])
                    result.samples.setdefault((op, backend, batch), []).append(ns)
    return result


def format_table(
    setup: MicroSetup,
    result: MicroResult,
    ops: tuple[str, ...] = OPS,
    batches: tuple[int, ...] = BATCH_SIZES,
) -> str:
    esca = [b for b in setup.backends if b != "off"]
    head = ["op", "batch", "direct ns/call"]
    for b in esca:
        head += [f"{b} ns/call", f"{b} reduction"]
    rows = [head]
    for op in ops:
        for batch in batches:
            base = result.median(op, "off", batch)
            row = [op, str(batch), f"{base:.0f}"]
            for b in esca:
                v = result.median(op, b, batch)
                row += [f"{v:.0f}", f"{(1 - v / base) * 100:+.0f}% ({v / base:.2f})"]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
