"""Bad input to `labclient train`: one line, non-zero exit, no traceback, and no half-made run."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient


def _assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _no_runs(isolated_lab) -> bool:
    db = isolated_lab / "data" / "mlflow.db"
    if not db.exists():
        return True
    client = MlflowClient(f"sqlite:///{db}")
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--trainer", "resnet-9000"], ["unknown trainer", "mnist-mlp"]),
        (["--trainer", "nowhere/trainer.py"], ["does not exist"]),
        (["--lr", "0"], ["--lr", "greater than 0"]),
        (["--lr", "-0.5"], ["--lr"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--epochs", "-3"], ["--epochs"]),
        (["--param", "hidden"], ["KEY=VALUE"]),
        (["--param", "no_such_setting=1"], ["--no-such-setting"]),
        (["--dataset", "imagenet"], ["unknown dataset"]),
    ],
)
def test_bad_options(cli, isolated_lab, args, fragments):
    result = (
        cli("train", "--team", "blue", "--dataset", "digits", *args)
        if "--dataset" not in args
        else cli("train", "--team", "blue", *args)
    )
    _assert_clean_error(result, *fragments)
    assert _no_runs(isolated_lab)


@pytest.mark.parametrize("team", ["Blue", "1blue", "blue team", "../red", "b" * 33, ""])
def test_invalid_team_names(cli, isolated_lab, team):
    result = cli("train", "--team", team, "--dataset", "digits")
    _assert_clean_error(result, "team")
    assert _no_runs(isolated_lab)


def test_missing_team(cli, isolated_lab):
    _assert_clean_error(cli("train", "--dataset", "digits"), "no team", "LAB_TEAM")


def test_missing_dataset_says_how_to_fix_it(cli, isolated_lab, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train", "--team", "blue", "--data-dir", str(empty))
    _assert_clean_error(result, "could not be downloaded", "--data-dir", "--dataset digits")
    assert _no_runs(isolated_lab)


def test_unwritable_data_directory(cli, isolated_lab, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("train", "--team", "blue", "--data-dir", str(blocker / "mnist"))
    _assert_clean_error(result, "not writable", "--data-dir")
    assert _no_runs(isolated_lab)


def test_cuda_without_cuda_is_an_error_not_a_fallback(cli, isolated_lab, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli("train", "--team", "blue", "--dataset", "digits", "--device", "cuda")
    _assert_clean_error(result, "--device cuda", "not available", "--device cpu")
    assert _no_runs(isolated_lab)


@pytest.mark.slow
def test_nan_cost_stops_and_marks_the_run_failed(cli, isolated_lab, embedded_uri):
    result = cli(
        "train", "--team", "blue", "--trainer", "logreg", "--dataset", "digits", "--lr", "1e38", "--epochs", "3"
    )
    _assert_clean_error(result, "learning rate too high")
    client = MlflowClient(embedded_uri)
    runs = client.search_runs([client.get_experiment_by_name("blue").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]


def test_debug_shows_the_traceback(cli, monkeypatch):
    from labclient.errors import TrainerNotFound

    monkeypatch.setenv("LAB_DEBUG", "1")
    with pytest.raises(TrainerNotFound):
        cli("train", "--team", "blue", "--trainer", "nope")
