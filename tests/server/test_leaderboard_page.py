"""The web leaderboard's HTML: every cell escaped, links into the MLflow UI's "Model training" layout.
(tests/server/test_browser.py renders it in Chromium against a real server.)"""

from __future__ import annotations

from html.parser import HTMLParser

from labserver import leaderboard_page

HOSTILE = '<script>alert("x")</script>&<b>'


def _row(**changes) -> dict:
    row = {
        "rank": 1,
        "team": "blue",
        "run": "blue/run-3",
        "metric": "test_accuracy",
        "value": 0.9731,
        "test_accuracy": 0.9731,
        "test_cost": 0.0912,
        "parameters": 23_860,
        "macs_per_sample": 23_820,
        "training_time_s": 12.34,
        "device": "cpu",
        "trained_at": "2026-05-01T09:30:12+00:00",
        "run_id": "0123456789abcdef0123456789abcdef",
        "experiment_id": "2",
    }
    return {**row, **changes}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.links, self.cells, self._in_td = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if tag == "a" and name == "href"]
        if tag == "td":
            self._in_td = True
            self.cells.append("")

    def handle_endtag(self, tag):
        self._in_td = self._in_td and tag != "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells[-1] += data


def _parse(html: str) -> _Collect:
    parsed = _Collect()
    parsed.feed(html)
    return parsed


def test_a_row_shows_the_figures_and_links_into_the_ui():
    parsed = _parse(leaderboard_page.render([_row()], metric="test_accuracy", by="team"))
    assert parsed.cells == [
        "1",
        "blue",
        "blue/run-3",
        "97.31%",
        "0.0912",
        "23,860",
        "23.82k",
        "12.3 s",
        "cpu",
        "2026-05-01 09:30",
    ]
    run_link = "../#/experiments/2/runs/0123456789abcdef0123456789abcdef?workflowType=machine_learning"
    assert run_link in parsed.links and "../#/experiments/2?workflowType=machine_learning" in parsed.links


def test_user_text_is_escaped_everywhere():
    row = _row(team=HOSTILE, run=HOSTILE, device=HOSTILE, run_id='"><script>x</script>', experiment_id="1/../2")
    html = leaderboard_page.render([row], metric="test_accuracy", by="team", error=None)
    parsed = _parse(html)
    assert "script" not in parsed.tags and parsed.tags.count("b") == 0
    assert parsed.cells[1] == HOSTILE and parsed.cells[2] == HOSTILE and parsed.cells[8] == HOSTILE
    assert (
        "../#/experiments/1%2F..%2F2/runs/%22%3E%3Cscript%3Ex%3C%2Fscript%3E?workflowType=machine_learning"
        in parsed.links
    )
    error_page = leaderboard_page.render([], metric=HOSTILE, by="team", error=f"no metric {HOSTILE}")
    assert "<script>" not in error_page and "&lt;script&gt;" in error_page


def test_other_metrics_get_their_own_column_and_empty_boards_say_what_to_do():
    parsed = _parse(
        leaderboard_page.render([_row(metric="training_time_s", value=12.34)], metric="training_time_s", by="team")
    )
    assert parsed.cells[5] == "12.34"  # the ranking metric, after accuracy and cost
    empty = leaderboard_page.render([], metric="test_accuracy", by="team")
    assert 'id="leaderboard"' not in empty and "labclient train --team TEAM" in empty


def test_training_times_keep_three_figures():
    assert [leaderboard_page.seconds(v) for v in (0.01904, 0.3486, 12.34, 1234.5, None)] == [
        "0.019 s",
        "0.349 s",
        "12.3 s",
        "1,234.5 s",
        "–",
    ]


def test_the_page_allows_no_script():
    assert "default-src 'none'" in leaderboard_page.CONTENT_SECURITY_POLICY
    assert "script-src" not in leaderboard_page.CONTENT_SECURITY_POLICY
