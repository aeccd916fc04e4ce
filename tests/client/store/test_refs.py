"""Run references: parsing, resolving against a real store, and one-line errors naming the nearest runs."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from labclient.errors import InvalidReference, NoWeights, RunNotFound
from labclient.store import refs
from tests.client.exchange_support import one_line_error, run_of


@pytest.mark.parametrize(
    "text, expected",
    [
        ("red/run-42", ("red", 42, "number", None)),
        ("team-7/run-1", ("team-7", 1, "number", None)),
        ("red/latest", ("red", None, "latest", None)),
        ("blue/best", ("blue", None, "best", None)),
        ("0123456789abcdef0123456789abcdef", (None, None, "run_id", "0123456789abcdef0123456789abcdef")),
        ("runs:/0123456789abcdef0123456789abcdef/model", (None, None, "run_id", "0123456789abcdef0123456789abcdef")),
    ],
)
def test_parse_accepts_every_form(text, expected):
    parsed = refs.parse(text)
    assert (parsed.team, parsed.number, parsed.selector, parsed.run_id) == expected
    assert parsed.is_pinned == (expected[2] in ("number", "run_id"))


@pytest.mark.parametrize(
    "text, selector, model, version",
    [
        ("models:/m-0123456789abcdef0123456789abcdef", "logged_model", "m-0123456789abcdef0123456789abcdef", None),
        ("models:/red-mnist/3", "version", "red-mnist", "3"),
        ("models:/red-mnist@champion", "alias", "red-mnist", "champion"),
    ],
)
def test_parse_accepts_mlflows_model_forms(text, selector, model, version):
    parsed = refs.parse(text)
    assert (parsed.selector, parsed.model, parsed.version, parsed.is_pinned) == (selector, model, version, False)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "red",
        "models:/red-mnist",
        "models:/red-mnist/0",
        "models:/m-12",
        "runs:/0123abc/model",
        "red/run42",
        "red/run-",
        "Red/run-1",
        "red/run-1/x",
        "red/newest",
        "../red/run-1",
        "0123abc",
        "red/run--1",
    ],
)
def test_parse_refuses_malformed(text):
    with pytest.raises(InvalidReference, match="not a run reference"):
        refs.parse(text)


# slow: the tests below read the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
@pytest.mark.slow
def test_resolves_numbers_latest_best_and_ids(lab):
    client = MlflowClient(lab.uri)
    run_2 = run_of(lab.uri, "red/run-2")
    assert refs.resolve(client, "red/run-2").info.run_id == run_2.info.run_id
    assert refs.resolve(client, run_2.info.run_id).info.run_name == "red/run-2"
    # red/run-3 is newer but has no weights, so it is not the latest model
    assert refs.resolve(client, "red/latest").info.run_name == "red/run-2"
    accuracies = {name: run_of(lab.uri, name).data.metrics["test_accuracy"] for name in ("red/run-1", "red/run-2")}
    assert refs.resolve(client, "red/best").info.run_name == max(accuracies, key=accuracies.get)
    assert run_of(lab.uri, "red/run-3").data.metrics["test_accuracy"] > max(accuracies.values())  # ignored: no weights


@pytest.mark.slow
def test_unknown_number_lists_the_nearest_runs(lab):
    with pytest.raises(RunNotFound) as caught:
        refs.resolve(MlflowClient(lab.uri), "red/run-9")
    assert "red/run-9 does not exist; nearest runs of red: red/run-3, red/run-2, red/run-1" in caught.value.one_line()


@pytest.mark.slow
def test_malformed_reference_lists_the_teams_runs(lab):
    with pytest.raises(InvalidReference) as caught:
        refs.resolve(MlflowClient(lab.uri), "blue/run1")
    assert "latest runs of blue: blue/run-1" in caught.value.one_line()


@pytest.mark.slow
def test_unknown_team_lists_close_names(lab):
    with pytest.raises(RunNotFound, match="no team 'redd'; teams: red"):
        refs.resolve(MlflowClient(lab.uri), "redd/latest")


@pytest.mark.slow
def test_unknown_run_id(lab):
    with pytest.raises(RunNotFound, match="no run with id"):
        refs.resolve(MlflowClient(lab.uri), "f" * 32)


@pytest.mark.slow
def test_team_without_weights_has_no_latest(lab):
    import labclient

    with labclient.start_run(team="empty") as run:
        run.log_metrics({"test_accuracy": 0.5})
    with pytest.raises(NoWeights, match="no finished run with weights"):
        refs.resolve(MlflowClient(lab.uri), "empty/best")


@pytest.mark.slow
@pytest.mark.parametrize(
    "reference, fragments",
    [
        ("red/run-99", ["red/run-99 does not exist", "nearest runs of red: red/run-3"]),
        ("red/run99", ["not a run reference", "latest runs of red", "TEAM/run-N"]),
        ("nosuch/latest", ["no team 'nosuch'"]),
    ],
)
def test_cli_errors_are_one_line(cli, lab, reference, fragments):
    one_line_error(cli("fetch", reference), *fragments)


@pytest.mark.slow
def test_mlflows_model_references_name_the_run_that_produced_the_model(lab, cli):
    """A registered version (by number or alias) and a logged model resolve to their run; fetch takes them all."""
    client = MlflowClient(lab.uri)
    red_2 = run_of(lab.uri, "red/run-2")
    client.create_registered_model("red-refs")
    version = client.create_model_version("red-refs", f"runs:/{red_2.info.run_id}/model", run_id=red_2.info.run_id)
    client.set_registered_model_alias("red-refs", "champion", version.version)
    logged = client.create_logged_model(red_2.info.experiment_id, source_run_id=red_2.info.run_id)
    for text in (
        f"models:/red-refs/{version.version}",
        "models:/red-refs@champion",
        f"models:/{logged.model_id}",
        f"runs:/{red_2.info.run_id}/model",
    ):
        assert refs.resolve(client, text).info.run_name == "red/run-2", text
    fetched = cli("fetch", "models:/red-refs@champion")
    assert fetched.exit_code == 0 and "red/run-2" in fetched.output
    one_line_error(cli("fetch", "models:/red-refs@nobody"), "models:/red-refs@nobody does not exist")
    one_line_error(cli("fetch", "models:/nobody/1"), "models:/nobody/1 does not exist")
    orphan = client.create_logged_model(red_2.info.experiment_id)
    one_line_error(cli("fetch", f"models:/{orphan.model_id}"), "names a model that no run of this store produced")
