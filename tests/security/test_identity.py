"""Identity: `red/run-42` always means red's run, every listing shows each team as itself, and no value one team
writes can break a page or a command for the others.

The attacks are replayed against a real labserver on loopback and real `labclient` processes. Where the server
refuses an attack outright, the client's own defence is also checked against records forged below the server
(written straight into its database, as a server without these rules, or a leaked database password, would allow).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from bench.servers import BIN
from labclient.diary.entries import _listing
from labserver.leaderboard import PLATFORM_METRICS, UnknownMetric, leaderboard_rows
from labserver.leaderboard_page import render

WEIGHTS = {"0.weight": np.ones((10, 64), dtype=np.float32), "0.bias": np.zeros(10, dtype=np.float32)}


def _api(server, team, method, path, **kwargs):
    return requests.request(method, server.url + path, auth=server.auth(team), timeout=30, **kwargs)


def _experiment(server, team) -> str:
    return _api(
        server, team, "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": team}
    ).json()["experiment"]["experiment_id"]


def _labclient(server, team, home, *args, check=True) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_"))}
    env.update(
        server.client_env(team),
        LAB_HOME=str(home / "data"),
        LAB_CACHE_DIR=str(home / "cache"),
        LAB_CONFIG=str(home / "config.toml"),
        LAB_DRAIN_TIMEOUT="60",
    )
    result = subprocess.run([str(BIN / "labclient"), *args], env=env, capture_output=True, text=True, timeout=240)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _push(server, team, tmp_path, note: str | None = None) -> tuple[str, str]:
    """A run with weights, as `labclient push` makes it; returns its run id and name."""
    from safetensors.numpy import save_file

    path = tmp_path / f"{team}-weights.safetensors"
    save_file(WEIGHTS, str(path))
    pushed = _labclient(
        server,
        team,
        tmp_path / team,
        "push",
        str(path),
        "--arch",
        "64-10:relu",
        "--dataset",
        "digits",
        *(["--note", note] if note else []),
    )
    run_id = pushed.stdout.split("see it: ", 1)[1].split("/runs/", 1)[1].split("?", 1)[0]
    return run_id, pushed.stdout.split(" as ", 1)[1].split()[0]


# --- the server refuses a team's own attempts ----------------------------------------------------------
REFUSED = [
    ("runs/set-tag", lambda run: {"run_id": run, "key": "lab.team", "value": "red"}),
    ("runs/set-tag", lambda run: {"run_id": run, "key": "lab.run_number", "value": "1"}),
    ("runs/set-tag", lambda run: {"run_id": run, "key": "mlflow.runName", "value": "red/run-1"}),
    ("runs/set-tag", lambda run: {"run_id": run, "key": "mlflow.runName", "value": "blue/run-99"}),
    ("runs/set-tag", lambda run: {"run_id": run, "key": "lab.verified.accuracy", "value": "0.99"}),
    ("runs/delete-tag", lambda run: {"run_id": run, "key": "lab.run_number"}),
    ("runs/log-batch", lambda run: {"run_id": run, "tags": [{"key": "lab.team", "value": "red"}]}),
    ("runs/update", lambda run: {"run_id": run, "run_name": "red/run-1"}),
    ("runs/update", lambda run: {"run_id": run, "run_name": "red/my-best-model"}),
    ("runs/create", lambda run: {"experiment_id": None, "run_name": "red/run-1"}),
    ("runs/create", lambda run: {"experiment_id": None, "tags": [{"key": "lab.run_number", "value": "7"}]}),
]


@pytest.mark.slow
@pytest.mark.parametrize("route, body", REFUSED, ids=[f"{route} {index}" for index, (route, _) in enumerate(REFUSED)])
def test_a_team_cannot_write_a_runs_identity(hostile_server, route, body):
    server = hostile_server
    experiment = _experiment(server, "blue")
    run_id = _api(server, "blue", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}).json()[
        "run"
    ]["info"]["run_id"]
    registered = _api(server, "blue", "POST", "/api/2.0/lab/runs/register", json={"run_id": run_id}).json()
    payload = body(run_id)
    if payload.get("experiment_id", "") is None:
        payload["experiment_id"] = experiment
    refused = _api(server, "blue", "POST", f"/api/2.0/mlflow/{route}", json=payload)
    assert refused.status_code == 403, refused.text
    assert "server" in refused.json()["message"] or "team red's" in refused.json()["message"]
    run = _api(server, "blue", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert run["info"]["run_name"] == registered["run_name"] == f"blue/run-{registered['number']}"
    assert tags["lab.team"] == "blue" and tags["lab.run_number"] == str(registered["number"])


@pytest.mark.slow
def test_a_team_may_still_name_and_tag_its_runs_freely(hostile_server):
    server = hostile_server
    experiment = _experiment(server, "blue")
    created = _api(
        server,
        "blue",
        "POST",
        "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment, "run_name": "blue/wide-net", "tags": [{"key": "lab.kind", "value": "x"}]},
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["info"]["run_id"]
    assert (
        _api(
            server, "blue", "POST", "/api/2.0/mlflow/runs/update", json={"run_id": run_id, "run_name": "try 2"}
        ).status_code
        == 200
    )
    assert (
        _api(
            server,
            "blue",
            "POST",
            "/api/2.0/mlflow/runs/set-tag",
            json={"run_id": run_id, "key": "note", "value": "lab.team red/run-1"},
        ).status_code
        == 200
    )
    # and the admin keeps every power
    assert (
        requests.post(
            server.url + "/api/2.0/mlflow/runs/set-tag",
            auth=server.auth("admin"),
            timeout=30,
            json={"run_id": run_id, "key": "lab.verified.checked", "value": "1"},
        ).status_code
        == 200
    )


@pytest.mark.slow
def test_registration_numbers_only_the_callers_own_runs(hostile_server):
    server = hostile_server
    red_run = _api(
        server, "red", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": _experiment(server, "red")}
    ).json()["run"]["info"]["run_id"]
    assert _api(server, "blue", "POST", "/api/2.0/lab/runs/register", json={"run_id": red_run}).status_code == 403
    first = _api(server, "red", "POST", "/api/2.0/lab/runs/register", json={"run_id": red_run}).json()
    again = _api(server, "red", "POST", "/api/2.0/lab/runs/register", json={"run_id": red_run}).json()
    assert first == again and first["team"] == "red"


# --- records forged below the server: the client still reads identity from the store's own facts ---------
@pytest.fixture(scope="module")
def forged(hostile_server, tmp_path_factory):
    """red/run-1 is red's; blue then writes (straight into the database) tags that claim its run is red/run-1,
    and a second run whose team tag is a path out of the cache."""
    server, folder = hostile_server, tmp_path_factory.mktemp("forged")
    red_run, red_name = _push(server, "red", folder, note="the real red model")
    blue_run, _ = _push(server, "blue", folder)
    escape_run, _ = _push(server, "blue", folder)
    for team, run_id, accuracy in (("red", red_run, 0.9), ("blue", blue_run, 0.8), ("blue", escape_run, 0.7)):
        _api(
            server,
            team,
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            json={"run_id": run_id, "key": "test_accuracy", "value": accuracy, "timestamp": 1, "step": 0},
        )
    database = MlflowClient(server.db_uri)  # below the server: what a team could do on a server without its rules
    for key, value in (("lab.team", "red"), ("lab.run_number", red_name.split("-")[-1]), ("mlflow.runName", red_name)):
        database.set_tag(blue_run, key, value)
    for key, value in (("lab.team", "../../../escaped"), ("lab.run_number", "1/../../escaped")):
        database.set_tag(escape_run, key, value)
    return {"red": red_run, "red_name": red_name, "blue": blue_run, "escape": escape_run, "folder": folder}


@pytest.mark.slow
def test_forged_tags_cannot_poison_a_cache_or_write_outside_it(hostile_server, forged, tmp_path):
    server = hostile_server
    victim = tmp_path / "victim"
    red_name = forged["red_name"]
    latest = _labclient(server, "mallory", victim, "fetch", "blue/latest")
    assert forged["escape"] in latest.stdout and red_name not in latest.stdout
    _labclient(server, "mallory", victim, "fetch", forged["escape"])
    _labclient(server, "mallory", victim, "fetch", forged["blue"])
    real = _labclient(server, "mallory", victim, "fetch", red_name)
    assert f"{red_name} ({forged['red']})" in real.stdout  # red's own run, not the cached forgery
    again = _labclient(server, "mallory", victim, "fetch", red_name)
    assert f"({forged['red']}): already cached" in again.stdout
    written = sorted(str(path.relative_to(victim)) for path in victim.rglob("*") if path.is_file() or path.is_symlink())
    assert all(path.startswith(("cache/models/", "data/")) for path in written), written
    assert not list(tmp_path.rglob("escaped*")) and not list(forged["folder"].rglob("escaped*"))
    refs_folder = victim / "cache" / "models" / "refs"
    assert [f"{path.parent.name}/{path.name}" for path in refs_folder.rglob("run-*")] == [red_name]


@pytest.mark.slow
def test_listings_show_each_run_under_its_experiments_team(hostile_server, forged, tmp_path):
    server = hostile_server
    board = _api(server, "mallory", "GET", "/api/2.0/lab/leaderboard", params={"by": "run"}).json()["rows"]
    teams = {row["run_id"]: row["team"] for row in board}
    assert teams[forged["red"]] == "red" and teams[forged["blue"]] == "blue" and teams[forged["escape"]] == "blue"
    names = {row["run_id"]: row["run"] for row in board}
    assert names[forged["red"]] == forged["red_name"] and names[forged["blue"]].startswith("blue/")
    page = _api(server, "mallory", "GET", "/lab/leaderboard", params={"by": "run"}).text
    assert f'data-team="blue" data-run-id="{forged["blue"]}"' in page
    listing = _labclient(server, "mallory", tmp_path, "diary", "list").stdout
    assert [line.split()[0] for line in listing.splitlines() if line.strip()].count(forged["red_name"]) == 1, listing
    leaderboard = _labclient(server, "mallory", tmp_path, "leaderboard", "--by", "run", "--json").stdout
    assert {row["run_id"]: row["team"] for row in json.loads(leaderboard)} == teams


@pytest.mark.slow
def test_one_teams_absurd_values_break_no_page_and_no_command(hostile_server, tmp_path):
    """NaN and infinite metrics, a start time no calendar holds, and a run number in non-ASCII digits."""
    server = hostile_server
    experiment = _experiment(server, "mallory")
    absurd = []
    for value, start in (("NaN", 1), ("Infinity", 99999999999999999), ("-Infinity", -5)):
        run = _api(
            server,
            "mallory",
            "POST",
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": experiment, "start_time": start},
        ).json()["run"]["info"]["run_id"]
        _api(server, "mallory", "POST", "/api/2.0/lab/runs/register", json={"run_id": run})
        logged = _api(
            server,
            "mallory",
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            json={
                "run_id": run,
                "metrics": [
                    {"key": key, "value": value, "timestamp": 1, "step": 0}
                    for key in ("test_accuracy", "test_cost", "compute_parameters", "training_time_s")
                ],
                "tags": [
                    {"key": "lab.weights.sha256", "value": "0" * 64},
                    {"key": "lab.hw.device", "value": "\x1b]0;pwned\x07"},
                ],
            },
        )
        assert logged.status_code == 200, logged.text
        _api(server, "mallory", "POST", "/api/2.0/mlflow/runs/update", json={"run_id": run, "status": "FINISHED"})
        absurd.append(run)
    MlflowClient(server.db_uri).set_tag(absurd[0], "lab.run_number", "²")  # below the server, which refuses it
    for by in ("team", "run"):
        for metric in ("test_accuracy", "test_cost", "training_time_s", "compute_parameters"):
            page = _api(server, "red", "GET", "/lab/leaderboard", params={"by": by, "metric": metric})
            assert page.status_code == 200, page.text
            rows = _api(server, "red", "GET", "/api/2.0/lab/leaderboard", params={"by": by, "metric": metric})
            assert rows.status_code == 200, rows.text
            parsed = json.loads(rows.text, parse_constant=lambda name: pytest.fail(f"{name} in the leaderboard JSON"))
            assert not any(row["run_id"] in absurd and row["value"] is not None for row in parsed["rows"])
    for args in (("leaderboard",), ("leaderboard", "--by", "run", "--metric", "cost"), ("diary", "list")):
        _labclient(server, "red", tmp_path, *args)
    refused = _labclient(server, "red", tmp_path, "fetch", absurd[1], check=False)
    assert (
        refused.returncode != 0
        and len([line for line in refused.stderr.splitlines() if line.startswith("error:")]) == 1
    )


@pytest.mark.slow
def test_teams_cannot_tie_their_work_to_another_teams(hostile_server):
    """A logged model must come from a run of the team's own experiment; a run may declare only the team's own
    models as outputs; writing and linking traces is the admin's."""
    server = hostile_server
    red_experiment, blue_experiment = _experiment(server, "red"), _experiment(server, "blue")
    red_run = _api(server, "red", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": red_experiment}).json()[
        "run"
    ]["info"]["run_id"]
    blue_run = _api(
        server, "blue", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": blue_experiment}
    ).json()["run"]["info"]["run_id"]
    red_model = _api(
        server,
        "red",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json={"experiment_id": red_experiment, "source_run_id": red_run, "name": "red-net"},
    )
    assert red_model.status_code == 200, red_model.text
    model_id = red_model.json()["model"]["info"]["model_id"]

    stolen = _api(
        server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json={"experiment_id": blue_experiment, "source_run_id": red_run, "name": "mine"},
    )
    assert stolen.status_code == 403 and "source run is team red's" in stolen.json()["message"]
    claimed = _api(
        server,
        "blue",
        "POST",
        "/api/2.0/mlflow/runs/outputs",
        json={"run_id": blue_run, "models": [{"model_id": model_id, "step": 0}]},
    )
    assert claimed.status_code == 403, claimed.text  # MLflow's own rule refuses it before the lab's does
    linked = _api(
        server, "blue", "POST", "/api/2.0/mlflow/traces/link-to-run", json={"trace_ids": ["tr-1"], "run_id": red_run}
    )
    assert linked.status_code == 403
    own = _api(
        server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json={"experiment_id": blue_experiment, "source_run_id": blue_run, "name": "blue-net"},
    )
    assert own.status_code == 200, own.text


def test_team_names_are_matched_whole():
    from labclient.errors import InvalidTeamName
    from labclient.store.target import validate_team
    from labserver.names import is_valid_team

    for name in ("red\n", "red\n\n", " red", "red/run-1", "RED"):
        assert not is_valid_team(name)
        with pytest.raises(InvalidTeamName):
            validate_team(name)
    assert is_valid_team("red") and validate_team("red-2") == "red-2"


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_labserver_refuses_a_team_name_with_a_trailing_newline(tmp_path):
    from tests.servers import LabServer, run_labserver

    server = LabServer(home=tmp_path, db_uri=f"sqlite:///{tmp_path / 'db.sqlite'}", artifacts=str(tmp_path / "a"))
    output = run_labserver(server, "team", "add", "red\n", check=False)
    assert output.strip().startswith("error: invalid team name 'red\\n'")
    assert "red" not in run_labserver(server, "team", "list")


def test_the_client_refuses_to_write_identity_tags():
    import labclient
    from labclient.errors import ConfigError

    with pytest.raises(ConfigError, match="written by the server only"):
        with labclient.start_run(team="blue", tags={"lab.team": "red"}, offline=True):
            pass
    with labclient.start_run(team="blue", offline=True) as run:
        for key in ("lab.run_number", "mlflow.runName", "lab.verified.accuracy"):
            with pytest.raises(ConfigError, match="written by the server only"):
                run.set_tags({key: "1"})


# --- properties: any value a team can write, through every listing ----------------------------------------
TEXT = st.text(max_size=40)
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30).map(float))
TIMES = st.one_of(st.none(), st.integers(-(10**20), 10**20))


class _Run:
    def __init__(self, experiment_id, run_id, name, status, start, metrics, tags, params):
        self.info = type(
            "Info",
            (),
            {"experiment_id": experiment_id, "run_id": run_id, "run_name": name, "status": status, "start_time": start},
        )()
        self.data = type("Data", (), {"metrics": metrics, "tags": tags, "params": params})()


class _Page(list):
    token = None


class _Client:
    """The MlflowClient calls the listings make, over runs a team wrote."""

    def __init__(self, experiments: dict[str, str], runs: list[_Run]):
        self.experiments, self.runs = experiments, runs

    def search_experiments(self):
        return [
            type("Experiment", (), {"experiment_id": key, "name": name})() for key, name in self.experiments.items()
        ]

    def get_experiment(self, experiment_id):
        return type("Experiment", (), {"experiment_id": experiment_id, "name": self.experiments[experiment_id]})()

    def search_runs(self, experiment_ids, filter_string="", order_by=None, max_results=1000, page_token=None):
        return _Page(run for run in self.runs if run.info.experiment_id in experiment_ids)


@st.composite
def _runs(draw):
    experiments = {"1": "red", "2": "blue", "3": draw(TEXT)}
    runs = []
    for index in range(draw(st.integers(1, 6))):
        metric_names = st.sampled_from(
            ["test_accuracy", "test_cost", "compute_parameters", "compute_macs_per_sample", "training_time_s", "x"]
        )
        tags = draw(
            st.dictionaries(
                st.one_of(
                    st.sampled_from(
                        [
                            "lab.team",
                            "lab.run_number",
                            "lab.hw.device",
                            "lab.weights.sha256",
                            "mlflow.note.content",
                            "lab.hw.gpu.name",
                        ]
                    ),
                    TEXT,
                ),
                TEXT,
                max_size=5,
            )
        )
        runs.append(
            _Run(
                draw(st.sampled_from(list(experiments))),
                f"{index:032x}",
                draw(st.one_of(st.none(), TEXT)),
                draw(st.sampled_from(["FINISHED", "FAILED", "RUNNING", draw(TEXT)])),
                draw(TIMES),
                draw(st.dictionaries(metric_names, VALUES, max_size=6)),
                tags,
                draw(st.dictionaries(TEXT, TEXT, max_size=3)),
            )
        )
    return experiments, runs


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    _runs(),
    st.sampled_from(["test_accuracy", "test_cost", "training_time_s", "compute_parameters"]),
    st.sampled_from(["team", "run"]),
)
def test_any_values_give_a_leaderboard_that_renders(data, metric, by):
    experiments, runs = data
    try:
        rows = leaderboard_rows(_Client(experiments, runs), metric=metric, by=by)
    except UnknownMetric as err:  # a metric no run logs: one line saying so, for names teams choose
        assert metric not in PLATFORM_METRICS and "no finished run logs" in str(err)
        return
    text = json.dumps(rows, allow_nan=False)  # valid JSON: no NaN or Infinity tokens
    for row in rows:
        run = next(run for run in runs if run.info.run_id == row["run_id"])
        assert row["team"] == experiments[run.info.experiment_id]  # never a tag
        assert row["run"] == row["run_id"] or row["run"].startswith(f"{row['team']}/run-")
        assert all(
            value is None or math.isfinite(value) for value in (row["value"], row["test_accuracy"], row["test_cost"])
        )
    html = render(rows, metric=metric, by=by)
    assert "<script" not in html.lower() and text is not None


@PROPERTY
@given(_runs())
def test_any_values_give_a_diary_listing(data):
    experiments, runs = data
    teams = {key: name for key, name in experiments.items() if name in ("red", "blue")}
    for run in runs:
        if run.info.experiment_id not in teams:
            continue
        listing = _listing(run, teams)
        assert listing.team == teams[run.info.experiment_id]
        assert listing.ref == run.info.run_id or listing.ref.startswith(f"{listing.team}/run-")
        try:
            expected = dt.datetime.fromtimestamp((run.info.start_time or 0) / 1000)
        except (ValueError, OverflowError, OSError):
            expected = dt.datetime.fromtimestamp(0)  # a start no calendar holds is shown as the epoch
        assert listing.started == expected


@PROPERTY
@given(st.dictionaries(st.sampled_from(["lab.team", "lab.run_number", "x"]), TEXT, max_size=3), TEXT)
def test_identity_comes_from_the_experiment_and_ascii_numbers_only(tags, experiment_name):
    run = _Run("9", "a" * 32, "red/run-1", "FINISHED", 0, {}, tags, {})
    from labserver.names import identity, is_valid_team

    team, number = identity(None, run, {"9": experiment_name})

    assert team == (experiment_name if is_valid_team(experiment_name) else None)
    value = tags.get("lab.run_number", "")
    expected = (
        int(value) if team and value.isascii() and value.isdigit() and value[0] != "0" and len(value) < 10 else None
    )
    assert number == expected
