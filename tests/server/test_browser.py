"""MLflow's web UI in a real headless Chromium, against a real labserver process.

Team red trains a run through the CLI; the browser, logged in as red, finds the run's dev-diary entry
and its cost curve, edits the entry, and `labclient diary` prints the edit. Team blue may read the
run but not edit it, in the browser or with the CLI. The web leaderboard lists each team's best run.
Screenshots go to a temp folder (printed at the end of each test; see `pytest -s` or the basetemp).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 30_000  # the UI's first load compiles a large bundle; the machine is shared
LAYOUT = "workflowType=machine_learning"


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """A server of their own: these tests rank and edit runs, so other tests' runs must stay out."""
    from tests.servers import sqlite_lab_server

    server = sqlite_lab_server(tmp_path_factory.mktemp("browser-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install Debian's package (`apt-get install chromium`, or run "
            "scripts/test-prerequisites); these tests never download Playwright's own browser"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-screenshots")


@pytest.fixture(scope="module")
def trained(lab_server, tmp_path_factory) -> dict[str, dict]:
    """One run per team, trained with `labclient train` against the server: {team: run as MLflow's JSON}."""
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        for team, epochs in (("red", "1"), ("blue", "2")):
            output = _labclient(
                patch,
                lab_server,
                team,
                tmp_path_factory,
                "train",
                "--trainer",
                "logreg",
                "--dataset",
                "digits",
                "--epochs",
                epochs,
            )
            name = re.search(rf"run ({team}/run-\d+) started", output).group(1)
            runs[team] = _run_by_name(lab_server, team, name)
    return runs


@pytest.fixture
def page_as(browser):
    """A page in a fresh browser context logged in as a team (HTTP basic auth), or with no login for team=None."""
    contexts = []

    def open_page(server, team):
        credentials = {"username": team, "password": server.tokens[team]} if team else None
        context = browser.new_context(http_credentials=credentials, viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- helpers ------------------------------------------------------------------------------------------
def _labclient(patch, server, team, tmp_path_factory, *args) -> str:
    """`labclient ARGS` as a team, in-process (CliRunner), with its own home, cache and config."""
    from click.testing import CliRunner

    from labclient.cli.main import main
    from labclient.config import reset_settings

    home = tmp_path_factory.mktemp(f"client-{team}")
    for key, value in {
        **server.client_env(team),
        "LAB_HOME": str(home / "data"),
        "LAB_CACHE_DIR": str(home / "cache"),
        "LAB_CONFIG": str(home / "config.toml"),
        "LAB_MNIST_MIRRORS": '["http://127.0.0.1:9/"]',
    }.items():
        patch.setenv(key, value)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        patch.delenv(key, raising=False)
    reset_settings()
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    reset_settings()
    assert result.exit_code == 0, result.output
    return result.output


def _api(server, team: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, auth=server.auth(team), timeout=30, **kwargs)


def _run_by_name(server, team: str, name: str) -> dict:
    experiment = _api(server, team, "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": team})
    found = _api(
        server,
        team,
        "POST",
        "/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment.json()["experiment"]["experiment_id"]],
            "filter": f"attributes.run_name = '{name}'",
        },
    )
    (run,) = found.json()["runs"]
    return run


def _run_url(server, run: dict) -> str:
    return f"{server.url}/#/experiments/{run['info']['experiment_id']}/runs/{run['info']['run_id']}?{LAYOUT}"


def _description(server, run: dict, team: str = "red") -> str:
    got = _api(server, team, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run["info"]["run_id"]})
    return {tag["key"]: tag["value"] for tag in got.json()["run"]["data"]["tags"]}.get("mlflow.note.content", "")


def _open_run_page(page, server, run: dict):
    from playwright.sync_api import expect

    page.goto(_run_url(server, run))
    expect(page.get_by_role("heading", name=run["info"]["run_name"], exact=True).first).to_be_visible()
    close_assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close_assistant.count():  # the GenAI assistant panel only narrows the page
        close_assistant.click()


def _edit_description(page, change) -> tuple[str, object]:
    """Opens the editor, applies `change` to the text, saves; returns the text sent and the server's answer."""
    page.get_by_role("button", name="Edit description").click()
    editor = page.locator("textarea.mde-text")
    edited = change(editor.input_value())
    editor.fill(edited)
    with page.expect_response(lambda response: "/runs/set-tag" in response.url) as answer:
        page.get_by_role("button", name="Save", exact=True).click()
    return edited, answer.value


def _image_loaded(locator) -> bool:
    """Waits until the browser has finished with the image (loaded or broken); True when it shows pixels."""
    locator.scroll_into_view_if_needed()
    locator.page.wait_for_function("img => img.complete", arg=locator.element_handle(), timeout=WAIT_MS)
    return locator.evaluate("img => img.naturalWidth > 0")


def _screenshot(page, shots: Path, name: str) -> Path:
    path = shots / name
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {path}")
    return path


# --- the run page -------------------------------------------------------------------------------------
def test_run_page_shows_the_diary_entry_and_the_cost_curve(lab_server, trained, page_as, shots):
    from playwright.sync_api import expect

    run = trained["red"]
    page = page_as(lab_server, "red")
    _open_run_page(page, lab_server, run)
    assert LAYOUT in page.url
    entry = page.get_by_test_id("note-editor-preview-content")
    heading = entry.get_by_role("heading", level=1)
    title = re.compile(rf"^{re.escape(run['info']['run_name'])}: logreg on digits, \d+\.\d\d% held-out accuracy$")
    expect(heading).to_have_text(title)
    toggle = page.get_by_test_id("show-comment-toggle")
    expect(toggle).to_have_text("Show more")  # MLflow folds a long description
    toggle.click()
    expect(toggle).to_have_text("Show less")
    expect(entry.get_by_role("heading", name="Hyperparameters")).to_be_visible()
    table = entry.locator("table").filter(has_text="learning rate η")
    expect(table.get_by_role("row").filter(has_text="learning rate η")).to_contain_text("0.5")
    expect(table.get_by_role("row").filter(has_text="mini-batch size")).to_contain_text("64")
    expect(table.get_by_role("row").filter(has_text="epochs")).to_contain_text("1")
    # the entry's image goes through the UI's get-artifact route, with red's login
    assert _image_loaded(entry.locator('img[src*="get-artifact"][src*="cost_curve.png"]'))
    _screenshot(page, shots, "01-run-page-diary.png")

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).click()
    listed = page.get_by_text("cost_curve.png", exact=True)
    expect(listed).to_be_visible()
    listed.click()
    viewer = page.get_by_role("img", name="plots/cost_curve.png")
    expect(viewer).to_be_visible()
    assert _image_loaded(viewer)
    _screenshot(page, shots, "02-artifacts-cost-curve.png")


def test_an_edit_in_the_browser_is_what_the_cli_prints(lab_server, trained, page_as, shots, cli, as_team):
    from playwright.sync_api import expect

    run, marker = trained["red"], "Edited in the browser: eta 0.5 reached the plateau in one epoch."
    page = page_as(lab_server, "red")
    _open_run_page(page, lab_server, run)
    edited, answer = _edit_description(
        page, lambda text: text.replace("## What we learned", f"## What we learned\n\n{marker}")
    )
    assert answer.status == 200, answer.text()
    toggle = page.get_by_test_id("show-comment-toggle")
    expect(toggle).to_have_text("Show more")  # saved: the editor closed, the entry is folded again
    toggle.click()
    shown = page.get_by_test_id("note-editor-preview-content").get_by_text(marker)
    expect(shown).to_be_visible()
    shown.scroll_into_view_if_needed()
    _screenshot(page, shots, "03-edited-in-the-browser.png")

    as_team(lab_server, "red")
    printed = cli("diary", run["info"]["run_name"], "--raw")
    assert printed.exit_code == 0, printed.output
    assert printed.output.rstrip() == edited.rstrip() and marker in printed.output
    assert printed.output.startswith(f"# {run['info']['run_name']}: logreg on digits")


# --- another team -------------------------------------------------------------------------------------
def test_another_team_reads_but_cannot_edit(lab_server, trained, page_as, shots, cli, as_team):
    from playwright.sync_api import expect

    run = trained["red"]
    before = _description(lab_server, run)
    page = page_as(lab_server, "blue")
    _open_run_page(page, lab_server, run)
    entry = page.get_by_test_id("note-editor-preview-content")
    expect(entry.get_by_role("heading", level=1)).to_contain_text(run["info"]["run_name"])
    assert _image_loaded(entry.locator('img[src*="get-artifact"]').first)  # reading is every team's right

    _, answer = _edit_description(page, lambda text: text + "\nblue was here\n")
    assert answer.status == 403
    refusal = "team blue can read every team's runs but change only its own (ask the team that owns it, or the admin)"
    assert answer.json() == {"error_code": "PERMISSION_DENIED", "message": refusal}
    expect(page.get_by_text(refusal)).to_be_visible()  # MLflow's editor shows the server's message
    _screenshot(page, shots, "04-blue-refused-in-the-browser.png")

    as_team(lab_server, "blue")
    refused = cli("diary", run["info"]["run_name"], "--append", "blue was here")
    assert refused.exit_code == 3
    assert refused.output.strip().splitlines() == [
        (
            "error: team blue can read but not edit team red's runs (ask team red to change it, or write in your own: "
            "labclient diary blue --append TEXT)"
        )
    ]
    assert _description(lab_server, run) == before
    assert "blue was here" not in cli("diary", run["info"]["run_name"], "--raw").output


# --- the web leaderboard ------------------------------------------------------------------------------
def _expected_rows(server, **query) -> list[dict]:
    """The leaderboard as labclient computes it, over MLflow's REST API with the admin's login."""
    from mlflow.tracking import MlflowClient

    from labserver.leaderboard import leaderboard_rows

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", server.tokens["admin"])
        return leaderboard_rows(MlflowClient(server.url), **query)


def _page_rows(page) -> list[dict]:
    rows = page.locator("#leaderboard tbody tr")
    return [
        {
            "team": row.get_attribute("data-team"),
            "run_id": row.get_attribute("data-run-id"),
            "cells": row.locator("td").all_inner_texts(),
        }
        for row in rows.all()
    ]


def test_the_leaderboard_page_lists_each_teams_best_run(lab_server, trained, page_as, shots):
    from playwright.sync_api import expect

    from labserver import leaderboard_page
    from labserver.units import human_count

    markup = 'cpu <b id="injected">bold</b><script>window.injected = 1</script>'
    blue = trained["blue"]["info"]["run_id"]
    tagged = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/runs/set-tag",
        json={"run_id": blue, "key": "lab.hw.device", "value": markup},
    )
    assert tagged.status_code == 200  # teams write their own tags: the page must show them as text

    page = page_as(lab_server, "blue")  # any team's login reads it
    response = page.goto(lab_server.url + "/lab/leaderboard")
    assert response.status == 200 and response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()
    expected = _expected_rows(lab_server)
    shown = _page_rows(page)
    assert [(row["team"], row["run_id"]) for row in shown] == [(row["team"], row["run_id"]) for row in expected]
    assert {"red", "blue"} <= {row["team"] for row in shown}
    for row, want in zip(shown, expected, strict=True):
        rank, team, name, accuracy, cost, parameters, macs, time_s, device, when = row["cells"]
        assert (int(rank), team, name) == (want["rank"], want["team"], want["run"])
        assert accuracy == f"{want['test_accuracy']:.2%}" and cost == f"{want['test_cost']:.4f}"
        assert parameters == f"{want['parameters']:,}" and macs == human_count(want["macs_per_sample"])
        assert time_s == leaderboard_page.seconds(want["training_time_s"]) and time_s.endswith(" s")
        assert device == want["device"] and when == want["trained_at"].replace("T", " ")[:16]
    blue_row = next(row for row in shown if row["run_id"] == blue)
    assert blue_row["cells"][8] == markup  # shown as text, never run
    assert page.locator("#injected").count() == 0 and page.evaluate("window.injected") is None
    _screenshot(page, shots, "05-leaderboard.png")

    page.goto(lab_server.url + "/lab/leaderboard?metric=test_accuracy&by=run")
    ranked = [row["run_id"] for row in _page_rows(page)]
    assert {trained["red"]["info"]["run_id"], blue} <= set(ranked)
    assert ranked == [row["run_id"] for row in _expected_rows(lab_server, by="run")]

    red = trained["red"]["info"]
    page.get_by_role("link", name=red["run_name"], exact=True).click()  # into the UI's "Model training" layout
    expect(page.get_by_role("heading", name=red["run_name"], exact=True).first).to_be_visible()
    assert page.url == _run_url(lab_server, trained["red"])


def test_the_leaderboard_json_twin(lab_server, trained):
    answer = _api(lab_server, "red", "GET", "/api/2.0/lab/leaderboard", params={"metric": "cost"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["metric"] == "test_cost" and body["by"] == "team"
    costs = [row["test_cost"] for row in body["rows"]]
    assert costs == sorted(costs) and {"red", "blue"} <= {row["team"] for row in body["rows"]}
    # every team without a row is named with the reason; the ranked teams are not
    assert all(set(item) == {"team", "reason"} and item["reason"] for item in body["left_out"])
    assert not {"red", "blue"} & {item["team"] for item in body["left_out"]}
    for row in body["rows"]:
        assert row["url"] == f"{lab_server.url}/#/experiments/{row['experiment_id']}/runs/{row['run_id']}?{LAYOUT}"
    for query, fragment in (
        ({"metric": "no_such_metric"}, "no finished run logs a metric named 'no_such_metric'"),
        ({"by": "colour"}, "cannot rank by 'colour'"),
        ({"limit": "0"}, "limit must be a positive"),
    ):
        refused = _api(lab_server, "red", "GET", "/api/2.0/lab/leaderboard", params=query)
        assert refused.status_code == 400 and fragment in refused.json()["message"]


# --- logging in ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/lab/leaderboard"])
def test_a_browser_without_a_login_is_asked_for_one(lab_server, page_as, path):
    """The server answers 401 with a Basic challenge, which makes a browser show its login prompt; headless
    Chromium has nobody to type in it, so it dismisses the prompt and the navigation fails."""
    from playwright.sync_api import Error

    page = page_as(lab_server, None)
    with (
        page.expect_response(lab_server.url + path) as challenge,
        pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"),
    ):
        page.goto(lab_server.url + path)
    assert challenge.value.status == 401
    assert challenge.value.headers["www-authenticate"] == 'Basic realm="lab"'
