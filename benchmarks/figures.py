"""The figures a benchmark reports, in one shape, so ``make bench`` can print one table.

Every benchmark script measures its contenders side by side in one process (interleaved
rounds) and then calls :func:`emit` with a list of :class:`Figure`. With ``--json PATH``
the figures are also written there; ``benchmarks/run_all.py`` runs each script in its own
process (Django can be configured once per process), collects the files and prints them
as one table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured comparison: ours against a baseline, measured in the same rounds."""

    #: What was measured, e.g. "encrypt 64 B" or "SQLite read 5,000 rows".
    name: str
    #: Our cost, in ``unit``.
    ours: float
    #: What ours is compared with, e.g. "asherah wheel" or "plain TextField".
    baseline: str
    #: The baseline's cost in the same unit (lower is better for both).
    baseline_value: float
    #: e.g. "us/op", "ms", "rows/s" (for throughput, set ``higher_is_better``).
    unit: str
    #: The largest acceptable ours/baseline ratio (the smallest, for throughput); None when
    #: the figure is reported without a target.
    target: float | None = None
    higher_is_better: bool = False
    #: The benchmark script the figure came from (filled in by run_all).
    source: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline_value if self.baseline_value else float("inf")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def emit(figures: list[Figure], path: Path | None) -> None:
    """Print ``figures`` as lines of a table and, with a path, write them as JSON."""
    for figure in figures:
        print(format_row(figure))
    if path is not None:
        path.write_text(json.dumps([asdict(figure) for figure in figures], indent=1) + "\n")


def load(path: Path, source: str) -> list[Figure]:
    rows = json.loads(path.read_text())
    return [Figure(**{**row, "source": source}) for row in rows]


def format_row(figure: Figure) -> str:
    if figure.target is None:
        verdict = "(reported)"
    else:
        sign = ">=" if figure.higher_is_better else "<="
        verdict = f"{sign} {figure.target:g}x {'ok' if figure.met else 'MISSED'}"
    return (
        f"{figure.name:38} {figure.ours:12.4g} {figure.baseline_value:12.4g} {figure.unit:8} "
        f"{figure.baseline:24} {figure.ratio:7.2f}x  {verdict}"
    )


def header() -> str:
    return (
        f"{'figure':38} {'ours':>12} {'baseline':>12} {'unit':8} {'baseline is':24} "
        f"{'ratio':>8}  target"
    )
