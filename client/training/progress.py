"""Terminal output for training: a live progress bar on a TTY, plain lines otherwise, and the summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from labclient.safe_text import markup
from labserver.units import human_bytes, human_count


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(markup(message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        # warnings quote the store's messages, which may quote what other teams wrote
        self.console.print(f"[yellow]warning:[/] {markup(message)}", highlight=False, soft_wrap=True)

    def start(self, total_steps: int) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cost {task.fields[cost]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task("train", total=total_steps, cost="-")
        self._progress.start()

    def steps(self, count: int, last_cost: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=count, cost=f"{last_cost:.4f}")

    def epoch(self, epoch: int, row: dict[str, float]) -> None:
        line = (
            f"epoch {epoch}: training cost {row['epoch_train_cost']:.4f}, held-out cost {row['epoch_test_cost']:.4f}, "
            f"accuracy {row['epoch_test_accuracy']:.4f}, {row['epoch_time_s']:.1f} s, "
            f"{row['epoch_samples_per_s']:,.0f} samples/s"
        )
        if self._progress is not None:
            self._progress.console.print(markup(line), highlight=False)
        else:
            self.info(line)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def print_table(rows: list[tuple[str, str]], title: str | None = None, console: Console | None = None) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(markup(key), markup(value))
    (console or Console()).print(table)


def summary_rows(result) -> list[tuple[str, str]]:
    figures = result.figures
    rows = [
        ("run", result.run_name or "dry run (nothing logged)"),
        ("trainer / data", f"{result.trainer} on {result.dataset}"),
        ("held-out accuracy", f"{result.test_accuracy:.4f}"),
        ("held-out cost", f"{result.test_cost:.4f}  (training cost {result.train_cost:.4f})"),
        ("time", f"{result.seconds:.1f} s for {result.epochs} epoch(s), {result.samples_per_s:,.0f} samples/s"),
        ("parameters", f"{figures.parameters:,} ({figures.bytes_per_parameter:g} bytes each)"),
        ("MACs per sample", f"{human_count(figures.macs_per_sample)} ({human_count(figures.flops_per_sample)} FLOPs)"),
        ("device", result.device),
    ]
    if result.weights_file_bytes:
        rows.append(
            (
                "weights file",
                f"{human_bytes(result.weights_file_bytes)} (tensors alone: {human_bytes(figures.weights_bytes)})",
            )
        )
    if result.url:
        rows.append(("see it", result.url))
    return rows
