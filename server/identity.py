"""A run's identity, which only the server writes, and the references a team may make to other teams' work.

A run's team is the experiment it lives in: the admin creates it with `labserver team add`, and no team can
create or rename an experiment. A run's number is the one the server allocated when the run was registered
(`register`, table lab_runs). The server writes both as the tags `lab.team` and `lab.run_number` and names the
run `TEAM/run-N`; `refusal` turns away any team's request that would write those tags, or such a name, itself,
so `red/run-42` always means the run red's experiment holds under the number the server gave it.

References between teams: a team may read everything, and its runs may name another team's model as an input
(a read-only reference that shows on its own run). It may not make its work look like another team's or the
reverse: a logged model must come from a run of the experiment it is logged to, which must be the team's own, and a
run may declare as outputs only models of its own experiment. Writing traces (and so linking them to runs) is the
admin's, like MLflow's other GenAI features (labserver/permissions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from labserver.names import NUMBERED_RUN_NAME, TEAM_PATTERN, is_server_owned_tag, is_valid_team, run_name
from labserver.tags import RUN_NAME_TAG, RUN_NUMBER_TAG, TEAM_TAG


class NotATeamExperiment(Exception):
    """The run lives in an experiment that no team owns (MLflow's Default, or one the admin made)."""


@dataclass(frozen=True)
class RegisteredRun:
    run_id: str
    team: str
    number: int

    @property
    def name(self) -> str:
        return run_name(self.team, self.number)


def register(store, lab_store, run_id: str) -> RegisteredRun:
    """Number a run in its team once, and write its identity tags and name. `store` is MLflow's tracking store
    on the server, or an MlflowClient on a local database: both have get_run, get_experiment and log_batch."""
    from mlflow.entities import RunTag

    run = store.get_run(run_id)
    team = store.get_experiment(run.info.experiment_id).name
    if not is_valid_team(team):
        raise NotATeamExperiment(f"experiment {team!r} is not a team's, so its runs get no number")
    registered = RegisteredRun(run_id, team, lab_store.register_run(run_id, team))
    tags = [
        RunTag(TEAM_TAG, team),
        RunTag(RUN_NUMBER_TAG, str(registered.number)),
        RunTag(RUN_NAME_TAG, registered.name),
    ]
    store.log_batch(run_id, metrics=[], params=[], tags=tags)
    return registered


# --- what a team may not write ------------------------------------------------------------------------
def refusal(suffix: str, method: str, body: object, caller: str, store) -> str | None:
    """Why the team `caller` may not make this request, or None. `suffix` is the path after /api/X.Y,
    `body` the parsed JSON body, `store` MLflow's tracking store (to look up runs and models)."""
    if method != "POST" and method != "PATCH":
        return None
    body = body if isinstance(body, dict) else {}
    if suffix in ("/mlflow/runs/create", "/mlflow/runs/log-batch"):
        return _tags_refusal(body.get("tags"), caller) or _name_refusal(body.get("run_name"), caller)
    if suffix == "/mlflow/runs/set-tag":
        return _tags_refusal([body], caller)
    if suffix == "/mlflow/runs/delete-tag":
        key = body.get("key")
        return f"the tag {key} is written by the server only" if is_server_owned_tag(key) else None
    if suffix == "/mlflow/runs/update":
        return _name_refusal(body.get("run_name"), caller)
    if suffix == "/mlflow/logged-models":
        return _source_run_refusal(body, caller, store)
    if suffix == "/mlflow/runs/outputs":
        return _outputs_refusal(body, caller, store)
    return None


def _tags_refusal(tags: object, caller: str) -> str | None:
    for tag in tags if isinstance(tags, list) else []:
        key = tag.get("key") if isinstance(tag, dict) else None
        if is_server_owned_tag(key):
            return f"the tag {key} is written by the server only: a run's team and number are not a team's to set"
        if key == RUN_NAME_TAG:
            found = _name_refusal(tag.get("value"), caller)
            if found:
                return found
    return None


def _name_refusal(name: object, caller: str) -> str | None:
    """Run names of the form TEAM/run-N are given by the server; names under another team's prefix are refused."""
    if not isinstance(name, str):
        return None
    if NUMBERED_RUN_NAME.fullmatch(name.strip()):
        return (
            f"the run name {name.strip()!r} has the form TEAM/run-N, which only the server gives "
            "(when it numbers a run)"
        )
    prefix = name.strip().split("/", 1)[0]
    if "/" in name and TEAM_PATTERN.fullmatch(prefix) and prefix != caller:
        return f"team {caller} cannot name a run {name.strip()!r}: names starting with {prefix}/ are team {prefix}'s"
    return None


def _experiment_name(store, experiment_id: object) -> str | None:
    try:
        return store.get_experiment(str(experiment_id)).name
    except Exception:  # an unknown id: MLflow's own validator answers it
        return None


def _run_team(store, run_id: object) -> str | None:
    try:
        return _experiment_name(store, store.get_run(str(run_id)).info.experiment_id)
    except Exception:
        return None


def _source_run_refusal(body: dict, caller: str, store) -> str | None:
    """A logged model's source run is a run of the experiment the model is logged to."""
    source = body.get("source_run_id")
    if not source:
        return None
    owner = _run_team(store, source)
    if owner is not None and owner != caller:
        return f"team {caller} cannot log a model whose source run is team {owner}'s; log it from a run of your own"
    try:
        run_experiment = str(store.get_run(str(source)).info.experiment_id)
    except Exception:  # an unknown run: MLflow answers it
        return None
    if run_experiment != str(body.get("experiment_id")):
        return (
            f"a logged model's source run must be a run of the experiment it is logged to: run {source} is in "
            f"experiment {run_experiment}, not {body.get('experiment_id')}"
        )
    return None


def _outputs_refusal(body: dict, caller: str, store) -> str | None:
    for model in body.get("models") or []:
        model_id = model.get("model_id") if isinstance(model, dict) else None
        if not model_id:
            continue
        try:
            owner = _experiment_name(store, store.get_logged_model(str(model_id)).experiment_id)
        except Exception:
            owner = None
        if owner is not None and owner != caller:
            return f"team {caller} cannot declare team {owner}'s model {model_id} as an output of its run"
    return None
