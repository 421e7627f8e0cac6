"""The benchmark report's plots (matplotlib, the optional ``plots`` extra): PNG files, one per figure.

matplotlib is imported only when a plot is drawn, through ``matplotlib.figure.Figure`` (no pyplot,
no global backend state), so the report works without it: ``available()`` says whether plots can
be drawn, and the report then says how to get them (``pip install popek[plots]``).  Bars of a
figure that is a bound rather than a complete price (docs/benchmarks.md §1: unpriced counters are
never zero cycles) are hatched, so a plot never looks more certain than its table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["INSTALL_HINT", "available", "forkwait_bars", "generation_sweep", "nanobench_bars", "walk_refs"]

INSTALL_HINT = "pip install popek[plots]"
"""What the report tells a reader without matplotlib."""

_HATCH = "///"
_DPI = 110


def available() -> bool:
    """True when matplotlib can be imported (plots are drawn)."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 8.0, height: float = 4.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png", metadata={"Software": None}, bbox_inches="tight")
    return path


def nanobench_bars(
    rows: Sequence[str],
    series: Mapping[str, Sequence[tuple[float | None, bool]]],
    path: Path,
    title: str,
) -> Path:
    """Grouped bars on a log scale, one group per nanobenchmark (``rows``), one bar per series
    (``series[label][i]`` = (cycles, exact?) of row i; None: no figure), as Adams & Agesen 2006
    Figure 4 draws them; a bar that is not exact is hatched."""
    series = {label: values for label, values in series.items() if any(v is not None for v, _ in values)}
    fig = _figure(max(8.0, 1.2 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [r + (i - (len(series) - 1) / 2) * width for r in range(len(rows))]
        heights = [max(v, 0.5) if v is not None else 0 for v, _ in values]
        bars = ax.bar(xs, heights, width, label=label)
        for bar, (v, exact) in zip(bars, values, strict=True):
            if v is not None and not exact:
                bar.set_hatch(_HATCH)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), rows)
    ax.set_ylabel("cycles per iteration (log)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars stay visible
    return _save(fig, path)


def forkwait_bars(values: Mapping[str, tuple[float, bool]], path: Path, title: str) -> Path:
    """One bar per column (a VMM, or a paper column): (slowdown relative to native, exact?)."""
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot()
    labels = list(values)
    bars = ax.bar(range(len(labels)), [values[k][0] for k in labels])
    for bar, k in zip(bars, labels, strict=True):
        if not values[k][1]:
            bar.set_hatch(_HATCH)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel("time relative to native")
    ax.set_title(title)
    return _save(fig, path)


def generation_sweep(
    profiles: Sequence[str], series: Mapping[str, Sequence[tuple[float | None, bool]]], path: Path, title: str
) -> Path:
    """One line per VMM across cost profiles (processor generations, in order): forkwait cycles
    per iteration; hollow markers where the figure is a bound."""
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for label, points in series.items():
        xs = [i for i, (v, _) in enumerate(points) if v is not None]
        ys = [v for v, _ in points if v is not None]
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        for x, (v, exact) in enumerate(points):
            if v is not None and not exact:
                ax.plot([x], [v], marker="o", markerfacecolor="white", color=line.get_color())
    ax.set_xticks(range(len(profiles)), profiles)
    ax.set_yscale("log")
    ax.set_ylabel("cycles per iteration (log)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def walk_refs(points: Sequence[tuple[str, float, float | None]], path: Path, title: str) -> Path:
    """Memory references per page walk, measured beside the expected n·m + n + m of a 2D walk
    (Bhargava et al. 2008), one pair of bars per benchmark."""
    fig = _figure(max(6.0, 0.9 * len(points) + 2), 4.0)
    ax = fig.add_subplot()
    xs = range(len(points))
    ax.bar([x - 0.2 for x in xs], [p[1] for p in points], 0.4, label="measured")
    ax.bar([x + 0.2 for x in xs], [p[2] or 0 for p in points], 0.4, label="n·m + n + m")
    ax.set_xticks(list(xs), [p[0] for p in points], rotation=20, ha="right")
    ax.set_ylabel("memory references per walk")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)
