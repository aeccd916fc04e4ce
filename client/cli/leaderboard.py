"""`labclient leaderboard`: each team's best model, as a table or JSON."""

from __future__ import annotations

import json

import click

from labclient.safe_text import markup, one_line


@click.command()
@click.option(
    "--metric",
    default="test_accuracy",
    show_default=True,
    help="Rank by this metric (accuracy = test_accuracy, cost = test_cost; costs and times rank lowest first).",
)
@click.option(
    "--by",
    type=click.Choice(["team", "run"]),
    default="team",
    show_default=True,
    help="team: each team's best run; run: the best runs of all teams.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--tracking-uri", help="Read from this server or database instead of the configured one.")
def leaderboard(metric, by, limit, as_json, tracking_uri):
    """Each team's best model on held-out data: accuracy, cost, size, compute, time and device."""
    from labclient.diary.leaderboard import leaderboard as read_leaderboard
    from labclient.diary.leaderboard import left_out

    rows = read_leaderboard(metric=metric, by=by, limit=limit, tracking_uri=tracking_uri)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no finished runs with weights yet: train one with `labclient train --team TEAM`")
    else:
        _print_leaderboard(rows, by)
    if by == "team":
        # a board cut by --limit is not the whole board: then left_out reads it whole itself
        for item in left_out(metric=metric, tracking_uri=tracking_uri, ranked=None if limit else rows):
            click.echo(f"not on the board: {one_line(item['team'])}: {one_line(item['reason'])}")


def _print_leaderboard(rows: list[dict], by: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from labserver.units import human_count

    metric = rows[0]["metric"]
    extra = [metric] if metric not in ("test_accuracy", "test_cost") else []
    title = f"best run of each team, by {metric}" if by == "team" else f"best runs, by {metric}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("#", "team", "run", "accuracy", "cost", *extra, "params", "MACs", "time", "device", "trained (UTC)"):
        table.add_column(
            column,
            no_wrap=column in ("run", "trained (UTC)"),
            justify="right" if column in ("#", "accuracy", "cost", "params", "MACs", "time", *extra) else "left",
        )
    for row in rows:
        cells = [
            str(row["rank"]),
            row["team"],
            row["run"],
            _number(row["test_accuracy"], "{:.4f}"),
            _number(row["test_cost"], "{:.4f}"),
        ]
        value = row["value"]
        cells += [_number(value, "{:,.0f}" if value is not None and abs(value) >= 1000 else "{:.4g}")] if extra else []
        macs = row["macs_per_sample"]
        cells += [
            _number(row["parameters"], "{:,}"),
            human_count(macs) if macs is not None else "–",
            _number(row["training_time_s"], "{:.1f} s"),
            row["device"],
            (row["trained_at"] or "–").replace("T", " ")[:16],
        ]
        table.add_row(*map(markup, cells))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a file or pipe has no width to respect: keep every cell whole
    console.print(table)


def _number(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)
