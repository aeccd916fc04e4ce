"""Run references: `red/run-42`, `red/latest`, `red/best` (highest held-out accuracy), a raw MLflow run id, or
MLflow's own forms: `runs:/<run id>/<path>`, `models:/<name>/<version>`, `models:/<name>@<alias>` (the Model
Registry) and `models:/m-<id>` (a logged model), each naming the run that produced the model.

`parse` only reads the text; `resolve` asks the tracking store (MlflowClient calls only, so it works the
same on the embedded store and on a labserver). A reference that names nothing gets one line listing
the team's nearest runs.

Identity comes only from facts no team can write: a run's team is the experiment it lives in, and its number
the `lab.run_number` the server gave it (labserver/identity.py). Run names and `lab.team` tags are never read.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from labclient.errors import InvalidReference, NoWeights, RunNotFound
from labserver.names import TEAM_PATTERN, is_valid_team, run_name, run_number
from labserver.search import iter_runs
from labserver.tags import RUN_NUMBER_TAG, WEIGHTS_TAG

FORMS = (
    "TEAM/run-N, TEAM/latest, TEAM/best, a 32-character run id, runs:/RUN_ID/PATH, models:/NAME/VERSION, "
    "models:/NAME@ALIAS or models:/m-ID"
)
ACCURACY_METRIC = "test_accuracy"
SUGGESTIONS = 5

_NUMBERED = re.compile(r"(?P<team>[^/\s]+)/run-(?P<number>[0-9]{1,9})")
_SELECTOR = re.compile(r"(?P<team>[^/\s]+)/(?P<selector>latest|best)")
RUN_ID = re.compile(r"[0-9a-f]{32}")
_RUNS_URI = re.compile(r"runs:/(?P<run_id>[0-9a-f]{32})(?:/[^\s]*)?")
_LOGGED_MODEL = re.compile(r"models:/(?P<model_id>m-[0-9a-f]{32})/?")
_MODEL_VERSION = re.compile(r"models:/(?P<name>[^/@\s]{1,256})/(?P<version>[1-9][0-9]{0,9})/?")
_MODEL_ALIAS = re.compile(r"models:/(?P<name>[^/@\s]{1,256})@(?P<alias>[A-Za-z0-9_-]{1,255})/?")


@dataclass(frozen=True)
class Reference:
    text: str
    team: str | None = None
    number: int | None = None
    selector: str | None = None  # "number", "latest", "best", "run_id", "logged_model", "version" or "alias"
    run_id: str | None = None
    model: str | None = None  # a logged model's id, or a registered model's name
    version: str | None = None  # a registered model's version number, or its alias

    @property
    def is_pinned(self) -> bool:
        """A pinned reference always names the same run, so a cached copy answers it without the server."""
        return self.selector in ("number", "run_id")


def parse(text: str) -> Reference:
    text = (text or "").strip()
    if RUN_ID.fullmatch(text):
        return Reference(text, selector="run_id", run_id=text)
    if match := _RUNS_URI.fullmatch(text):
        return Reference(text, selector="run_id", run_id=match["run_id"])
    if match := _LOGGED_MODEL.fullmatch(text):
        return Reference(text, selector="logged_model", model=match["model_id"])
    if match := _MODEL_VERSION.fullmatch(text):
        return Reference(text, selector="version", model=match["name"], version=match["version"])
    if match := _MODEL_ALIAS.fullmatch(text):
        return Reference(text, selector="alias", model=match["name"], version=match["alias"])
    for pattern in (_NUMBERED, _SELECTOR):
        match = pattern.fullmatch(text)
        if match and TEAM_PATTERN.fullmatch(match["team"]):
            if pattern is _NUMBERED:
                return Reference(text, team=match["team"], number=int(match["number"]), selector="number")
            return Reference(text, team=match["team"], selector=match["selector"])
    raise InvalidReference(f"{text!r} is not a run reference", f"use {FORMS}")


def team_of(text: str) -> str | None:
    """The team part of a (possibly malformed) reference, for suggestions."""
    head = (text or "").strip().split("/", 1)[0].lower()
    return head if TEAM_PATTERN.fullmatch(head) else None


# --- resolving against the tracking store ------------------------------------------------------
def resolve(client, text: str):
    """The MLflow run a reference names; malformed and unknown references list the team's nearest runs."""
    try:
        reference = parse(text)
    except InvalidReference as err:
        team = team_of(text)
        hint = _suggestion(client, team, None) if team else ""
        raise InvalidReference(f"{err}{hint}", err.remedy) from None
    if reference.selector == "run_id":
        return _by_id(client, reference.run_id)
    if reference.selector in ("logged_model", "version", "alias"):
        return _by_id(client, _source_run(client, reference))
    experiment_id = _experiment_id(client, reference.team)
    if reference.selector == "number":
        return _by_number(client, experiment_id, reference)
    run = _with_weights(client, experiment_id, reference.selector)
    if run is None:
        raise NoWeights(
            f"team {reference.team} has no finished run with weights"
            + (" and a held-out accuracy" if reference.selector == "best" else ""),
            f"train one with `labclient train --team {reference.team}` or upload one with `labclient push`",
        )
    return run


def _by_id(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        if _is_missing(err):
            raise RunNotFound(f"no run with id {run_id}", f"use {FORMS}") from None
        raise


def _source_run(client, reference: Reference) -> str:
    """The run that produced the model a `models:/` reference names (a registered version's run, or its logged
    model's source run)."""
    from mlflow.exceptions import MlflowException

    try:
        if reference.selector == "version":
            version = client.get_model_version(reference.model, reference.version)
        elif reference.selector == "alias":
            version = client.get_model_version_by_alias(reference.model, reference.version)
        else:
            version = None
        model_id = version.model_id if version is not None else reference.model
        run_id = version.run_id if version is not None else None
        if not run_id and model_id:
            run_id = client.get_logged_model(model_id).source_run_id
    except MlflowException as err:
        if _is_missing(err):
            raise RunNotFound(
                f"{reference.text} does not exist on this store",
                "see the registered models on the MLflow UI's Models page, or the run's logged models",
            ) from None
        raise
    if not run_id:
        raise RunNotFound(
            f"{reference.text} names a model that no run of this store produced",
            "fetch the run that trained it, by its TEAM/run-N or run id",
        )
    return run_id


def _experiment_id(client, team: str) -> str:
    experiment = client.get_experiment_by_name(team)
    if experiment is not None and experiment.lifecycle_stage == "active":
        return experiment.experiment_id
    teams = [e.name for e in client.search_experiments() if is_valid_team(e.name)]
    close = difflib.get_close_matches(team, teams, n=SUGGESTIONS, cutoff=0.3) or sorted(teams)[:SUGGESTIONS]
    known = f"; teams: {', '.join(close)}" if close else "; there are no teams yet"
    raise RunNotFound(f"no team {team!r}{known}", "check the spelling of the team")


def _by_number(client, experiment_id: str, reference: Reference):
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.\"{RUN_NUMBER_TAG}\" = '{reference.number}'", max_results=2
    )
    runs = [run for run in runs if run.info.experiment_id == experiment_id]  # the team's own experiment only
    if len(runs) == 1:
        return runs[0]
    if len(runs) > 1:  # only a store written around the server could hold this
        raise RunNotFound(f"{reference.text} names {len(runs)} runs of team {reference.team}", "use the run id instead")
    raise RunNotFound(
        f"{run_name(reference.team, reference.number)} does not exist"
        + _suggestion(client, reference.team, reference.number),
        f"use {FORMS}",
    )


def _with_weights(client, experiment_id: str, selector: str):
    order = (
        [f"metrics.{ACCURACY_METRIC} DESC", "attributes.start_time DESC"]
        if selector == "best"
        else ["attributes.start_time DESC"]
    )
    for run in iter_runs(client, [experiment_id], "attributes.status = 'FINISHED'", order):
        if WEIGHTS_TAG not in run.data.tags:
            continue
        if selector == "best" and ACCURACY_METRIC not in run.data.metrics:
            continue
        return run
    return None


def team_runs(client, team: str) -> list[tuple[int, str, bool]]:
    """(number, run id, has weights) of every run of a team, newest number first."""
    experiment = client.get_experiment_by_name(team)
    if experiment is None:
        return []
    found = []
    for run in iter_runs(client, [experiment.experiment_id]):
        number = run_number(run.data.tags.get(RUN_NUMBER_TAG))
        if number is not None:
            found.append((number, run.info.run_id, WEIGHTS_TAG in run.data.tags))
    return sorted(found, reverse=True)


def nearest_runs(client, team: str, number: int | None = None, limit: int = SUGGESTIONS) -> list[str]:
    runs = team_runs(client, team)
    if number is not None:
        runs = sorted(runs, key=lambda item: (abs(item[0] - number), -item[0]))
    return [run_name(team, item[0]) for item in runs[:limit]]


def _suggestion(client, team: str | None, number: int | None) -> str:
    if not team:
        return ""
    try:
        names = nearest_runs(client, team, number)
    except Exception:  # suggestions are a courtesy; the original error matters more
        return ""
    if not names:
        return f"; team {team} has no runs" if client.get_experiment_by_name(team) else f"; there is no team {team!r}"
    label = "nearest runs" if number is not None else "latest runs"
    return f"; {label} of {team}: {', '.join(names)}"


def _is_missing(err) -> bool:
    code = getattr(err, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(err).lower()
