"""The web leaderboard: labserver.leaderboard's rows as one small HTML page.

Team names, run names and device tags are written by the teams, so every cell and every link is
escaped, and the page is served with a Content-Security-Policy that allows no script at all.
Links are relative to the page (`/lab/leaderboard`), so they open the MLflow UI of the server the
reader is logged in to, in its "Model training" layout.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote, urlencode

from labserver.routes import UI_LAYOUT
from labserver.units import human_count

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
UI_ROOT = "../"  # the page is /lab/leaderboard; the UI is /
_VIEWS = (
    ("test_accuracy", "team", "each team's best, by held-out accuracy"),
    ("test_cost", "team", "by held-out cost"),
    ("training_time_s", "team", "by training time"),
    ("test_accuracy", "run", "best runs of all teams"),
)
_COLUMNS = (
    "#",
    "team",
    "run",
    "held-out accuracy",
    "held-out cost",
    "parameters",
    "MACs / sample",
    "training time",
    "device",
    "trained (UTC)",
)
_NUMERIC = {"#", "held-out accuracy", "held-out cost", "parameters", "MACs / sample", "training time"}

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 78rem; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
nav a, p a { color: #0969da; }
nav { margin: .8rem 0 1.2rem; }
nav a, nav strong { margin-right: 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .45rem .6rem; border-bottom: 1px solid #d0d7de; text-align: left; vertical-align: top;
         white-space: nowrap; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: normal; overflow-wrap: anywhere; min-width: 8rem; max-width: 22rem; }
tbody tr:first-child td { font-weight: 600; }
.error { color: #b42318; font-weight: 600; }
.muted { color: #59636e; }
"""


def run_path(experiment_id: str, run_id: str) -> str:
    """The hash route of a run page in the MLflow UI, in the "Model training" layout."""
    return f"#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}?{UI_LAYOUT}"


def experiment_path(experiment_id: str) -> str:
    return f"#/experiments/{quote(str(experiment_id), safe='')}?{UI_LAYOUT}"


def render(
    rows: list[dict], *, metric: str, by: str, error: str | None = None, left_out: list[dict] | None = None
) -> str:
    """The whole page; `error` (a one-line message) replaces the table; `left_out` names the unranked teams."""
    extra = metric not in ("test_accuracy", "test_cost")
    heading = f"Best run of each team, by {metric}" if by == "team" else f"Best runs of all teams, by {metric}"
    if error:
        body = f'<p class="error" role="alert">{escape(error)}</p>'
    elif not rows:
        body = (
            '<p class="muted">No finished runs with weights yet: '
            "train one with <code>labclient train --team TEAM</code>.</p>"
        )
    else:
        body = _table(rows, metric if extra else None)
    if left_out and not error:
        items = "".join(f"<li>{escape(item['team'])}: {escape(item['reason'])}</li>" for item in left_out)
        body += f'\n<p class="muted">Not on the board:</p>\n<ul class="muted" id="left-out">{items}</ul>'
    json_link = escape("../api/2.0/lab/leaderboard?" + urlencode({"metric": metric, "by": by}))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Leaderboard · lab</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<h1>Leaderboard</h1>\n<p class="muted">{escape(heading)}. Only finished runs that uploaded weights count '
        "(the run <code>TEAM/best</code> names); costs and times rank lowest first.</p>\n"
        f"{_nav(metric, by)}\n{body}\n"
        f'<p class="muted">The same rows: <a href="{json_link}">as JSON</a>, or <code>labclient leaderboard '
        "--json</code>.</p>\n"
        "</body>\n</html>\n"
    )


def _nav(metric: str, by: str) -> str:
    links = [f'<a href="{escape(UI_ROOT + "#/experiments?" + UI_LAYOUT)}">MLflow UI</a>']
    for view_metric, view_by, label in _VIEWS:
        if (view_metric, view_by) == (metric, by):
            links.append(f"<strong>{escape(label)}</strong>")
        else:
            links.append(f'<a href="?{escape(urlencode({"metric": view_metric, "by": view_by}))}">{escape(label)}</a>')
    return "<nav>" + "\n".join(links) + "</nav>"


def _table(rows: list[dict], extra_metric: str | None) -> str:
    columns = list(_COLUMNS)
    if extra_metric:
        columns.insert(5, extra_metric)
    head = "".join(f'<th scope="col"{_numeric(name, extra_metric)}>{escape(name)}</th>' for name in columns)
    body = "\n".join(_row(row, extra_metric) for row in rows)
    return f'<table id="leaderboard">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _row(row: dict, extra_metric: str | None) -> str:
    team = _link(experiment_path(row["experiment_id"]), row["team"])
    run = _link(run_path(row["experiment_id"], row["run_id"]), row["run"])
    # (html, class): "num" right-aligns figures, "text" lets free text written by a team wrap
    cells = [
        (str(row["rank"]), "num"),
        (team, ""),
        (run, ""),
        (_number(row["test_accuracy"], "{:.2%}"), "num"),
        (_number(row["test_cost"], "{:.4f}"), "num"),
    ]
    if extra_metric:
        value = row["value"]
        cells.append((_number(value, "{:,.0f}" if value is not None and abs(value) >= 1000 else "{:.4g}"), "num"))
    macs = row["macs_per_sample"]
    cells += [
        (_number(row["parameters"], "{:,}"), "num"),
        (escape(human_count(macs)) if macs is not None else "–", "num"),
        (seconds(row["training_time_s"]), "num"),
        (escape(row["device"] or ""), "text"),
        (escape((row["trained_at"] or "–").replace("T", " ")[:16]), ""),
    ]
    tds = "".join(f'<td class="{kind}">{html}</td>' if kind else f"<td>{html}</td>" for html, kind in cells)
    return f'<tr data-team="{escape(row["team"])}" data-run-id="{escape(row["run_id"])}">{tds}</tr>'


def seconds(value: float | None) -> str:
    """Three significant figures: a tiny model trains in hundredths of a second, which "0.0 s" would hide."""
    if value is None:
        return "–"
    return f"{value:,.1f} s" if value >= 100 else f"{value:.3g} s"


def _link(path: str, text: str) -> str:
    return f'<a href="{escape(UI_ROOT + path)}">{escape(text)}</a>'


def _numeric(name: str, extra_metric: str | None) -> str:
    return ' class="num"' if name in _NUMERIC or name == extra_metric else ""


def _number(value, pattern: str) -> str:
    return "–" if value is None else escape(pattern.format(value))
