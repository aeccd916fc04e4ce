"""The comparison in the terminal, with rich: the same sections as the Markdown report."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from labclient.compare.document import sections
from labclient.safe_text import markup

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((value - low) / span * (len(SPARK) - 1) + 0.5))] for value in values)


def render(comparison, console: Console | None = None, all_params: bool = False) -> None:
    console = console or Console()
    for block in sections(comparison.data, all_params):
        _render_block(console, block, all_params)
    logged = comparison.data.get("logged_run")
    if logged:
        console.print(f"logged as {markup(logged['name'])}: {markup(logged['url'])}")


def _render_block(console: Console, block, all_params: bool) -> None:
    kind = block[0]
    if kind == "heading":
        console.print(f"\n[bold]{markup(block[1])}[/]")
    elif kind == "text":
        console.print(f"  {markup(block[1])}")
    elif kind == "table":
        table = Table(*map(markup, block[1]), show_header=True, header_style="bold", title_justify="left")
        for row in block[2]:
            table.add_row(*map(markup, row))
        console.print(table)
    elif kind == "spark":
        values = block[2]
        console.print(f"  {markup(block[1]):<44} {sparkline(values)}  {values[0]:.4g} -> {values[-1]:.4g}")
    elif kind == "image":
        console.print(f"  [dim]{markup(block[2])}: {markup(block[1])}[/]")
    elif kind == "details":
        if all_params:
            for child in block[2]:
                _render_block(console, child, all_params)
        else:
            console.print(f"  [dim]{markup(block[1])}[/]")
