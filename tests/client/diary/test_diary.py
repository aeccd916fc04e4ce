"""Dev-diary entries: the drafted entry of a real run, and reading and writing it through the tag the UI uses."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from labclient.diary import entries as diary
from labclient.errors import EditRefused, RunNotFound
from labclient.store.failures import mlflow_failure
from labserver.units import human_bytes

pytestmark = pytest.mark.usefixtures("migrated_store")
NOTE = "Baseline first: plain SGD, no tricks."


def _train(cli, team="blue", *extra):
    result = cli("train", "--team", team, "--trainer", "logreg", "--dataset", "digits", "--epochs", "2", *extra)
    assert result.exit_code == 0, result.output
    return result


def _run(embedded_uri, name):
    client = MlflowClient(embedded_uri)
    team = name.split("/")[0]
    runs = client.search_runs(
        [client.get_experiment_by_name(team).experiment_id], filter_string=f"attributes.run_name = '{name}'"
    )
    assert len(runs) == 1, name
    return client, runs[0]


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _tiny_run(team: str, note: str | None = None) -> str:
    """A run made with the Python API, no training: enough for reading and writing entries."""
    import labclient

    with labclient.start_run(team=team, note=note) as run:
        run.log_metrics({"test_accuracy": 0.5})
        return run.name


@pytest.fixture
def fake_editor(tmp_path, monkeypatch):
    """$EDITOR set to a script that appends a line to the file it is given, then exits with `status`."""

    def install(status: int, line: str = "Smaller eta: smoother cost curve.") -> None:
        script = tmp_path / f"editor_{status}.py"
        script.write_text(
            textwrap.dedent(f"""
            import sys
            path = sys.argv[1]
            text = open(path, encoding="utf-8").read()
            open(path, "w", encoding="utf-8").write(text.rstrip("\\n") + "\\n" + {line!r} + "\\n")
            sys.exit({status})
        """)
        )
        monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
        monkeypatch.delenv("VISUAL", raising=False)

    return install


# --- the draft ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_drafts_the_entry(cli, embedded_uri):
    _train(cli, "blue", "--note", NOTE, "--lr", "0.3")
    client, run = _run(embedded_uri, "blue/run-1")
    text, params, metrics = run.data.tags["mlflow.note.content"], run.data.params, run.data.metrics

    assert text.startswith(f"# blue/run-1: logreg on digits, {metrics['test_accuracy']:.2%} held-out accuracy\n")
    assert _section(text, "Our note").strip() == NOTE
    assert "**logreg**, layers Flatten → Linear(64→10)" in text and "1,437 training and 360 held-out images" in text
    hyper = _section(text, "Hyperparameters")
    for row in (
        "| learning rate η | 0.3 |",
        "| mini-batch size | 64 |",
        "| epochs | 2 |",
        "| optimizer | sgd |",
        "| cost function | cross_entropy |",
    ):
        assert row in hyper, row
    assert params["lr"] == "0.3"

    results = _section(text, "Results")
    right = round(metrics["test_accuracy"] * 360)
    assert (
        f"| accuracy | {metrics['test_accuracy']:.2%} ({right} of 360 right) | {metrics['train_accuracy']:.2%} |"
        in results
    )
    assert f"| cost | {metrics['test_cost']:.4f} | {metrics['train_cost']:.4f} |" in results
    assert "not 1 − accuracy" in results and f"1 − accuracy = {1 - metrics['test_accuracy']:.4f}" in results
    assert "cross-entropy" in results

    image = f"![cost curve of blue/run-1](get-artifact?path=plots%2Fcost_curve.png&run_uuid={run.info.run_id})"
    assert image in _section(text, "Cost curve")
    assert "plots/cost_curve.png" in {item.path for item in client.list_artifacts(run.info.run_id, "plots")}

    compute = _section(text, "Compute")
    assert "| device | cpu: " in compute and f"{run.data.tags['lab.hw.cpu.cores']} cores" in compute
    assert f"{metrics['samples_per_s']:,.0f} training samples/s" in compute and "| training time |" in compute
    assert "| parameters | 650 (4 bytes each) |" in compute and "| MACs per sample | 640 " in compute
    assert f"expected {human_bytes(metrics['weights_expected_bytes'])} = 650 parameters × 4 bytes" in compute
    assert f"actual {human_bytes(metrics['weights_file_bytes'])}" in compute
    assert text.endswith("## What we learned\n")  # the team's section, left empty


@pytest.mark.slow
def test_the_textbook_network_gets_the_quadratic_cost_explained(cli, embedded_uri):
    result = cli("train", "--team", "blue", "--trainer", "mnist-mlp", "--dataset", "digits", "--epochs", "1")
    assert result.exit_code == 0, result.output
    text = _run(embedded_uri, "blue/run-1")[1].data.tags["mlflow.note.content"]
    assert "½‖y − a‖²" in _section(text, "Results") and "| cost function | quadratic |" in text
    assert "## Our note" not in text  # no --note, no empty section
    assert "Linear(64→30) → Sigmoid → Linear(30→10) → Sigmoid" in text


@pytest.mark.slow
def test_a_draft_too_long_for_mlflow_keeps_the_whole_note(cli, embedded_uri, tmp_path):
    long_note = "\n\n".join(f"Paragraph {index}: " + "the cost went down, then up. " * 12 for index in range(40))
    assert len(long_note) > diary.RUN_LIMIT
    result = _train(cli, "blue", "--note", long_note)
    assert f"{diary.RUN_LIMIT:,}" in result.output and diary.ENTRY_ARTIFACT in result.output
    client, run = _run(embedded_uri, "blue/run-1")
    description = run.data.tags["mlflow.note.content"]
    assert len(description) <= diary.RUN_LIMIT
    assert "MLflow keeps at most 8,000" in description and "diary%2Fentry.md" in description
    full = Path(client.download_artifacts(run.info.run_id, diary.ENTRY_ARTIFACT, str(tmp_path))).read_text(
        encoding="utf-8"
    )
    assert long_note.strip() in full and full.startswith(description.split("\n\n---\n\n")[0])
    entry = diary.read_entry("blue/run-1")
    assert entry.truncated and entry.text == full


DRAFT_REFUSED = """
from mlflow.exceptions import MlflowException
from labclient.tracking import sender

def broken(*args, **kwargs):
    raise MlflowException("the store is read-only")

sender.store_run_entry = broken  # the name the sender calls (labclient.tracking.description's function)
import runpy
runpy.run_module("labclient.tracking.sender_process", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_failed_draft_never_fails_the_training(cli, embedded_uri, monkeypatch):
    from labclient.tracking import recorder

    # the draft is written by the run's sender process: that process's store refuses it
    monkeypatch.setattr(recorder, "SENDER_COMMAND", [sys.executable, "-c", DRAFT_REFUSED])
    result = _train(cli, "blue", "--note", NOTE)
    assert "the dev-diary draft was not saved (the store is read-only)" in result.output
    assert "labclient diary blue/run-1 --edit" in result.output
    run = _run(embedded_uri, "blue/run-1")[1]
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.note.content"] == NOTE  # --note's words survive


def test_the_limit_is_mlflows_own():
    from mlflow.utils import validation

    assert diary.RUN_LIMIT == validation.MAX_TAG_VAL_LENGTH == 8000
    assert diary.TEAM_LIMIT == validation.MAX_EXPERIMENT_TAG_VAL_LENGTH == 20000


# --- reading and writing: the CLI and the UI share the tag ------------------------------------------------
@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_ui_edits_are_what_the_cli_reads_and_the_reverse(cli, embedded_uri):
    name = _tiny_run("blue", note="first words")
    client, run = _run(embedded_uri, name)
    # what MLflow's UI does when a description is saved: set the run's mlflow.note.content tag
    client.set_tag(
        run.info.run_id, "mlflow.note.content", "## Edited in the browser\n\nThe cost plateaued at epoch 3.\n"
    )
    shown = cli("diary", name)
    assert shown.exit_code == 0, shown.output
    assert "Edited in the browser" in shown.output and "The cost plateaued at epoch 3." in shown.output
    assert cli("diary", name, "--raw").output == "## Edited in the browser\n\nThe cost plateaued at epoch 3.\n"

    assert cli("diary", name, "--append", "Tried momentum 0.9.").exit_code == 0
    after = client.get_run(run.info.run_id).data.tags["mlflow.note.content"]
    today = dt.date.today().isoformat()
    assert after.startswith("## Edited in the browser\n\nThe cost plateaued at epoch 3.\n\n**" + today)
    assert re.search(r"\*\*\d{4}-\d\d-\d\d \d\d:\d\d\*\* Tried momentum 0\.9\.\n$", after)


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_append_adds_dated_paragraphs_in_order(embedded_uri):
    name = _tiny_run("blue")
    diary.append_entry(name, "first", when=dt.datetime(2026, 3, 1, 9, 30))
    entry = diary.append_entry(name, "second", when=dt.datetime(2026, 3, 2, 10, 0))
    assert entry.text == "**2026-03-01 09:30** first\n\n**2026-03-02 10:00** second\n"
    assert diary.read_entry(name).text == entry.text


@pytest.mark.slow
def test_edit_saves_what_the_editor_wrote(cli, embedded_uri, fake_editor):
    _train(cli, "blue", "--note", NOTE)
    fake_editor(0)
    result = cli("diary", "blue/run-1", "--edit")
    assert result.exit_code == 0, result.output
    assert "saved the entry of blue/run-1" in result.output
    text = _run(embedded_uri, "blue/run-1")[1].data.tags["mlflow.note.content"]
    assert text.endswith("## What we learned\nSmaller eta: smoother cost curve.\n")
    assert NOTE in text


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_an_editor_that_fails_saves_nothing(cli, embedded_uri, fake_editor):
    name = _tiny_run("blue", note="untouched")
    fake_editor(1)
    result = cli("diary", name, "--edit")
    assert result.exit_code != 0
    assert "error: the editor exited with status 1; nothing was saved" in result.output
    assert "Traceback" not in result.output
    assert _run(embedded_uri, name)[1].data.tags["mlflow.note.content"] == "untouched"


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_an_unchanged_edit_says_so(cli, embedded_uri, tmp_path, monkeypatch):
    name = _tiny_run("blue", note="as it was")
    monkeypatch.setenv("EDITOR", "true")
    result = cli("diary", name, "--edit")
    assert result.exit_code == 0 and "no changes" in result.output


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_team_diary_is_the_experiment_description(cli, embedded_uri, fake_editor):
    _tiny_run("blue")
    client = MlflowClient(embedded_uri)
    experiment_id = client.get_experiment_by_name("blue").experiment_id
    client.set_experiment_tag(experiment_id, "mlflow.note.content", "# Team blue\n\nWe study learning rates.\n")
    assert cli("diary", "blue", "--raw").output == "# Team blue\n\nWe study learning rates.\n"
    fake_editor(0, "Week 2: momentum.")
    assert cli("diary", "blue", "--edit").exit_code == 0
    assert (
        client.get_experiment(experiment_id)
        .tags["mlflow.note.content"]
        .endswith("We study learning rates.\nWeek 2: momentum.\n")
    )


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_list_is_newest_first_with_first_lines(cli, embedded_uri):
    _tiny_run("blue", note="# Trying eta 3.0\n\ndetails")
    _tiny_run("red", note="red's first")
    _tiny_run("blue", note="Now with momentum")
    listed = cli("diary", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["blue/run-2", "red/run-1", "blue/run-1"]
    assert lines[0].endswith("Now with momentum") and lines[2].endswith("Trying eta 3.0")
    only_blue = cli("diary", "list", "--team", "blue").output.strip().splitlines()
    assert [line.split()[0] for line in only_blue] == ["blue/run-2", "blue/run-1"]
    assert [item.ref for item in diary.list_entries("blue", limit=1)] == ["blue/run-2"]


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_too_long_run_entry_is_kept_as_an_artifact(cli, embedded_uri):
    name = _tiny_run("blue")
    long_text = "# Long\n\n" + "\n".join(f"line {index}: " + "x" * 60 for index in range(200))
    entry = diary.write_entry(name, long_text)
    assert entry.truncated and entry.text == long_text.rstrip() + "\n"
    shown = cli("diary", name, "--raw")
    assert shown.output == entry.text  # the CLI shows the whole entry, not the cut description
    assert "MLflow description shows only its first 8,000 characters" in cli("diary", name).output
    # an edit made in the UI afterwards replaces the cut description, and wins over the old artifact
    client, run = _run(embedded_uri, name)
    client.set_tag(run.info.run_id, "mlflow.note.content", "short again")
    assert diary.read_entry(name).text == "short again" and not diary.read_entry(name).truncated


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_too_long_team_entry_is_refused_and_nothing_is_lost(cli, embedded_uri, fake_editor, isolated_lab):
    _tiny_run("blue")
    fake_editor(0, "y" * (diary.TEAM_LIMIT + 1))
    result = cli("diary", "blue", "--edit")
    assert result.exit_code != 0
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "at most 20,000" in line and "nothing was saved" in line
    kept = re.search(r"your edited text is kept in (\S+)\)", line).group(1)
    assert Path(kept).read_text(encoding="utf-8").endswith("y" * (diary.TEAM_LIMIT + 1) + "\n")
    assert "mlflow.note.content" not in MlflowClient(embedded_uri).get_experiment_by_name("blue").tags


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("blue/run-9", "blue/run-9 does not exist"),
        ("green", "no team 'green'"),
        ("Blue Team", "neither a run nor a team"),
    ],
)
def test_unknown_runs_and_teams(cli, embedded_uri, ref, fragment):
    _tiny_run("blue")
    result = cli("diary", ref)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (
        result.output.startswith("error: ")
        and fragment in result.output
        and len(result.output.strip().splitlines()) == 1
    )


def test_permission_denied_becomes_one_clear_line():
    rest = RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
    plain = MlflowException("API request failed with error code 403 != 200", error_code=1004)  # PERMISSION_DENIED
    response = requests.Response()
    response.status_code = 403
    upload = requests.HTTPError("403 Client Error: FORBIDDEN", response=response)  # an artifact upload refused
    for err in (rest, plain, upload):
        mapped = mlflow_failure(err, editing=True, owner="blue", reader="red", what="blue/run-3")
        assert isinstance(mapped, EditRefused)
        assert mapped.one_line().startswith("team red can read but not edit team blue's runs")
    team = mlflow_failure(rest, editing=True, owner="blue", reader="red", what="blue")
    assert str(team) == "team red can read but not edit team blue's diary"
    missing = mlflow_failure(
        RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"}),
        editing=False,
        owner="blue",
        reader="red",
        what="blue/run-3",
    )
    assert isinstance(missing, RunNotFound)


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_a_refused_edit_keeps_the_text(cli, embedded_uri, fake_editor, monkeypatch):
    """What a labserver answers when team red edits blue's run: 403, mapped to one line; the edit is kept."""
    name = _tiny_run("blue", note="blue's words")

    def refuse(self, run_id, key, value, *args, **kwargs):
        raise RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})

    monkeypatch.setattr(MlflowClient, "set_tag", refuse)
    monkeypatch.setenv("LAB_TEAM", "red")
    from labclient.config import reset_settings

    reset_settings()
    fake_editor(0, "red was here")
    result = cli("diary", name, "--edit")
    assert result.exit_code == EditRefused.exit_code
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: team red can read but not edit team blue's runs")
    kept = re.search(r"your edited text is kept in (\S+)\)", line).group(1)
    assert Path(kept).read_text(encoding="utf-8") == "blue's words\nred was here\n"
    assert cli("diary", name, "--append", "x").output.startswith("error: team red can read but not edit")


def test_diary_and_leaderboard_help_stay_light():
    code = (
        "from labclient.cli.main import main\n"
        "for args in (['diary', '--help'], ['diary', 'show', '--help'], ['leaderboard', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "import sys; print('\\n'.join(sys.modules))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "labclient.cli.diary" in loaded and not {"torch", "mlflow", "rich"} & loaded
