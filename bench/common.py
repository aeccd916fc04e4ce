"""What every benchmark shares: the run context, alternating repetitions, statistics, and the report's Markdown.

A benchmark module defines NUMBER, NAME, TITLE, NEEDS_SERVER and `run(ctx) -> Section`; the runner
(bench/__main__.py) runs those listed in bench/registry.py and assembles bench/RESULTS.md from their sections.
"""

from __future__ import annotations

import math
import operator
import os
import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


# --- statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    samples: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile: with fewer than 100 samples, p99 is the maximum."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def stats(values: Sequence[float]) -> Stats:
    if not values:
        raise ValueError("no samples")
    return Stats(tuple(float(value) for value in values))


def paired_ratios(ours: Sequence[float], baseline: Sequence[float]) -> Stats:
    """Ratio per repetition: ours and the baseline of one repetition ran back to back, so drift cancels."""
    return stats([a / b for a, b in zip(ours, baseline, strict=True)])


def alternate(variants: dict[str, Callable[[], T]], reps: int, warmup: bool = True) -> dict[str, list[T]]:
    """Run each variant `reps` times, rotating which goes first, so machine drift hits all of them alike.

    Each variant returns its own measurement (seconds, samples/s, a tuple of both ...); a first
    untimed call of each pays for lazy imports, allocator growth and caches.
    """
    names = list(variants)
    if warmup:
        for name in names:
            variants[name]()
    results: dict[str, list[T]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(variants[name]())
    return results


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    op: str  # "<=", ">=", "<"
    value: float
    unit: str = "x"

    def met(self, measured: float) -> bool:
        return {"<=": operator.le, ">=": operator.ge, "<": operator.lt}[self.op](measured, self.value)

    def __str__(self) -> str:
        return f"{self.op} {fmt_value(self.value, self.unit)}"


@dataclass(frozen=True)
class Figure:
    """One headline number of a section: a ratio (unit "x") or an absolute value, with its spread."""

    label: str
    stats: Stats
    unit: str = "x"
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.stats.median)

    def row(self) -> list[str]:
        verdict = "" if self.met is None else ("**yes**" if self.met else "**NO**")
        cells = [fmt_value(v, self.unit) for v in (self.stats.median, self.stats.minimum, self.stats.maximum)]
        return [self.label, *cells, str(self.target) if self.target else "", verdict]


FIGURE_HEADERS = ["comparison", "median", "min", "max", "target", "met"]


@dataclass
class Section:
    number: int
    title: str
    body: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"## {self.number}. {self.title}", ""]
        if self.figures:
            parts += [
                "<!-- targets -->",
                table(FIGURE_HEADERS, [figure.row() for figure in self.figures]),
                "<!-- /targets -->",
                "",
            ]
        if self.body:
            parts += [self.body.strip(), ""]
        parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts).rstrip() + "\n"


# --- formatting ---------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}×" if value < 10 else f"{value:,.0f}×"
    if unit == "s":
        return fmt_seconds(value)
    if unit in ("samples/s", "points/s"):
        return f"{value:,.0f}"
    return f"{value:.3g} {unit}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_spread(values: Stats, unit: str = "s") -> str:
    """median (min–max), the way every table cell reports repeated measurements."""
    return f"{fmt_value(values.median, unit)} ({fmt_value(values.minimum, unit)} – {fmt_value(values.maximum, unit)})"


def fmt_overhead(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


# --- the run context ----------------------------------------------------------------------------
@dataclass
class Context:
    profile: str
    data_dir: Path
    workdir: Path
    postgres: str | None  # admin connection URL, or None to skip PostgreSQL
    stack: ExitStack = field(default_factory=ExitStack)
    _servers: dict = field(default_factory=dict)
    _datasets: dict = field(default_factory=dict)

    @property
    def warmup(self) -> bool:
        """Smoke runs only check that everything runs: no untimed warm-up calls."""
        return self.profile != "smoke"

    @property
    def dataset_name(self) -> str:
        """Smoke runs train on the bundled 8x8 digits: the code path is the same, the work is tiny."""
        return "digits" if self.profile == "smoke" else "mnist"

    def alternate(self, variants: dict[str, Callable[[], T]], reps: int, warmup: bool = True) -> dict[str, list[T]]:
        return alternate(variants, reps, warmup and self.warmup)

    def sizes(self, table_by_profile: dict):
        return table_by_profile[self.profile]

    def dataset(self):
        from labclient.training.data import load_dataset

        if self.dataset_name not in self._datasets:
            self._datasets[self.dataset_name] = load_dataset(self.dataset_name, self.data_dir, self.workdir / "cache")
        return self._datasets[self.dataset_name]

    def backends(self) -> list[str]:
        return ["sqlite"] + (["postgresql"] if self.postgres and self.profile != "smoke" else [])

    def server(self, backend: str):
        """A tracking server on loopback, started on first use and shared until the run ends."""
        from bench.servers import start_server

        if backend not in self._servers:
            self._servers[backend] = self.stack.enter_context(
                start_server(backend, self.workdir / backend, self.postgres)
            )
        return self._servers[backend]


def find_data_dir(explicit: Path | None = None) -> Path:
    """mnist-10k, found the way tests/conftest.py finds it: LAB_TEST_DATASETS, then ../shared/datasets."""
    if explicit is not None:
        if not explicit.is_dir():
            raise SystemExit(f"error: --data-dir {explicit} is not a folder; point it at the mnist-10k folder")
        return explicit
    candidates = []
    override = os.environ.get("LAB_TEST_DATASETS")
    candidates += [Path(override) / "mnist-10k"] if override else []
    candidates += [REPO.parent / "shared" / "datasets" / "mnist-10k", REPO / "shared" / "datasets" / "mnist-10k"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise SystemExit("error: mnist-10k not found; pass --data-dir PATH or set LAB_TEST_DATASETS to the datasets folder")
