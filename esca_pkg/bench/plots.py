"""PNG plots of a result document (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esca_pkg.log import die


def require() -> None:
    """Fail now, with the fix, when matplotlib is missing."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        die(
            "matplotlib is not installed: the plots cannot be drawn",
            hint="apt-get install python3-matplotlib, or pip install 'esca-pkg[bench]'; "
            "or pass --no-plots",
        )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by(doc: dict[str, Any], server: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for c in doc["cells"]:
        if c["server"] == server:
            out.setdefault((c["backend"], c["connections"]), []).append(c)
    for cells in out.values():
        cells.sort(key=lambda c: c["size_kb"])
    return out


def _servers(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c["server"] for c in doc["cells"]))


def _size_axis(ax: Any, doc: dict[str, Any]) -> None:
    """Log scale, ticks at the measured file sizes."""
    sizes = sorted({c["size_kb"] for c in doc["cells"]})
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("file size (KB)")


def _ratio_panels(doc: dict[str, Any], path: Path, figure: str, ylabel: str, title: str) -> None:
    """A B/A ratio (figure: "cpu" or "rps") against file size, one panel per
    server, a line per backend and connection count; bars: the 95 % interval."""
    plt = _pyplot()
    names = _servers(doc)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, server in zip(axes[0], names, strict=True):
        for (backend, conns), cells in _by(doc, server).items():
            x = [c["size_kb"] for c in cells]
            r = [c["summary"][figure]["ratio"] for c in cells]
            y = [q["median"] for q in r]
            err = [[q["median"] - q["low"] for q in r], [q["high"] - q["median"] for q in r]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{backend}, -c {conns}")
        ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
        _size_axis(ax, doc)
        ax.set_ylabel(ylabel)
        ax.set_title(server)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu(doc: dict[str, Any], path: Path) -> None:
    """Server CPU per request, ESCA/vanilla, against file size (the verdict's figure)."""
    _ratio_panels(
        doc,
        path,
        "cpu",
        "server CPU per request, ESCA / vanilla",
        "Server CPU time per request (median of interleaved pairs, bars: 95% interval; "
        "below 1 = cheaper)",
    )


def throughput(doc: dict[str, Any], path: Path) -> None:
    """Throughput ratio ESCA/vanilla against file size, one panel per server."""
    _ratio_panels(
        doc,
        path,
        "rps",
        "requests/s, ESCA / vanilla",
        "Throughput ratio (median of interleaved pairs, bars: 95% interval)",
    )


def syscalls(doc: dict[str, Any], path: Path) -> None:
    """Syscalls per request against file size: vanilla, ESCA and the minimum."""
    plt = _pyplot()
    names = _servers(doc)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, server in zip(axes[0], names, strict=True):
        for i, ((backend, conns), cells) in enumerate(_by(doc, server).items()):
            color = f"C{i}"
            x = [c["size_kb"] for c in cells]
            s = [c["summary"] for c in cells]
            ax.plot(
                x,
                [q["vanilla_syscalls_per_request"] for q in s],
                color=color,
                linestyle="--",
                marker="s",
                label=f"vanilla -c {conns}",
            )
            ax.plot(
                x,
                [q["esca_syscalls"]["measured"] for q in s],
                color=color,
                marker="o",
                label=f"{backend} -c {conns}",
            )
            ax.plot(
                x,
                [q["esca_syscalls"]["minimum"] for q in s],
                color=color,
                linestyle=":",
                marker="x",
                label=f"minimum -c {conns}",
            )
        _size_axis(ax, doc)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("syscalls per request")
        ax.set_title(server)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        "System calls per request (perf raw_syscalls:sys_enter on the workers)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
