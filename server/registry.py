"""The Model Registry for teams: a team registers models from its own work under names that start with its own
name, and every team reads every registered model.

A registered model belongs to the team whose name and a dash start the model's name: `blue-mnist` is team blue's
(labserver/ownership.py). A team may create registered models only under its own prefix, and change only those:
their description, tags, aliases, stages, versions, deletion, and renames that keep the prefix. A version's
source must be the team's own work: `runs:/<run of its experiment>/...`, `models:/m-<logged model of its
experiment>`, a version of one of its own registered models, or a path under its experiment's artifact location;
the run and logged model a version names must be its own too. Tags that make a registered model a prompt
(`mlflow.prompt.*`) stay the admin's, as prompts do (labserver/permissions.py).

These rules come on top of basic-auth's, which run first: it grants the team that creates a registered model
MANAGE on it and every other team its default READ, so a name that another team created stays read-only to all but
its creator and the admin, whatever its prefix.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from labserver.ownership import model_experiment_id, name_owner, run_experiment_id, team_experiment

# (path suffix after /api/X.Y, method) of every registry request that changes something, and the request fields
# that name the registered models it changes. Every other write to the registry's families is the admin's.
REGISTRY_WRITES: dict[tuple[str, str], tuple[str, ...]] = {
    ("/mlflow/registered-models/create", "POST"): ("name",),
    ("/mlflow/registered-models/rename", "POST"): ("name", "new_name"),
    ("/mlflow/registered-models/update", "PATCH"): ("name",),
    ("/mlflow/registered-models/delete", "DELETE"): ("name",),
    ("/mlflow/registered-models/set-tag", "POST"): ("name",),
    ("/mlflow/registered-models/delete-tag", "DELETE"): ("name",),
    ("/mlflow/registered-models/alias", "POST"): ("name",),
    ("/mlflow/registered-models/alias", "DELETE"): ("name",),
    ("/mlflow/model-versions/create", "POST"): ("name",),
    ("/mlflow/model-versions/update", "PATCH"): ("name",),
    ("/mlflow/model-versions/delete", "DELETE"): ("name",),
    ("/mlflow/model-versions/transition-stage", "POST"): ("name",),
    ("/mlflow/model-versions/set-tag", "POST"): ("name",),
    ("/mlflow/model-versions/delete-tag", "DELETE"): ("name",),
}
# A read that MLflow also serves as POST: open to every team like its GET form.
REGISTRY_READS_BY_POST = frozenset({("/mlflow/registered-models/get-latest-versions", "POST")})
_TAGGED = {
    "/mlflow/registered-models/create",
    "/mlflow/registered-models/set-tag",
    "/mlflow/model-versions/create",
    "/mlflow/model-versions/set-tag",
}
_PROMPT_TAG_PREFIX = "mlflow.prompt."


def rule(team: str) -> str:
    """What a team may do in the registry, in one line."""
    return f"team {team} may create registered models named {team}-..., and change only those"


def refusal(suffix: str, method: str, params: list[dict], caller: str, teams: list[str], store) -> str | None:
    """Why team `caller` may not make this registry request, or None. `params`: every parameter set the request
    carries (its JSON body and its query string, since MLflow's validators and handlers do not always read the
    same one), `teams`: every team's name, `store`: MLflow's tracking store."""
    fields = REGISTRY_WRITES.get((suffix, method))
    if fields is None:
        return None
    for given in params:
        for field in fields:
            name = given.get(field)
            if field in given and name_owner(name, teams) != caller:
                return f"{rule(caller)}; {name!r} is not one"
        if suffix in _TAGGED:
            tags = given.get("tags") if "create" in suffix else [given]
            for tag in tags if isinstance(tags, list) else []:
                key = tag.get("key") if isinstance(tag, dict) else None
                if isinstance(key, str) and key.startswith(_PROMPT_TAG_PREFIX):
                    return f"the tag {key} makes a registered model a prompt, and prompts are the admin's"
        if suffix == "/mlflow/model-versions/create":
            reason = _source_refusal(given, caller, teams, store)
            if reason:
                return reason
    return None


def _source_refusal(given: dict, caller: str, teams: list[str], store) -> str | None:
    experiment = team_experiment(store, caller)
    own = str(experiment.experiment_id) if experiment is not None else None
    run_id, model_id, source = given.get("run_id"), given.get("model_id"), given.get("source")
    if run_id and (own is None or run_experiment_id(store, run_id) != own):
        return f"team {caller} may register only its own work: run {run_id} is not a run of experiment {caller}"
    if model_id and (own is None or model_experiment_id(store, model_id) != own):
        return (
            f"team {caller} may register only its own work: logged model {model_id} is not one of experiment {caller}"
        )
    if source is None or (own is not None and _own_source(source, caller, own, experiment, teams, store)):
        return None
    return (
        f"team {caller} may register only its own work: the source must be runs:/<run of {caller}>/..., "
        f"models:/<logged model of {caller}>, models:/{caller}-.../<version>, "
        f"or a path under {experiment.artifact_location if experiment else 'its experiment'}; not {source!r}"
    )


def _own_source(source: object, caller: str, own: str, experiment, teams: list[str], store) -> bool:
    if not isinstance(source, str):
        return False
    scheme = urlsplit(source).scheme.lower()
    if scheme == "runs":
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        try:
            run_id, _ = RunsArtifactRepository.parse_runs_uri(source)
        except Exception:
            return False
        return run_experiment_id(store, run_id) == own
    if scheme == "models":
        from mlflow.store.artifact.utils.models import _parse_model_uri

        try:
            parsed = _parse_model_uri(source)
        except Exception:
            return False
        if parsed.model_id is not None:
            return model_experiment_id(store, parsed.model_id) == own
        return name_owner(parsed.name, teams) == caller
    return _within(source, experiment.artifact_location)


def _parts(uri: str) -> tuple[str, str, list[str]]:
    parsed = urlsplit(uri)
    parts = []
    for part in parsed.path.split("/"):
        for _ in range(10):  # decoded the way MLflow compares sources with artifact roots
            if unquote(part) == part:
                break
            part = unquote(part)
        parts.append(part)
    return parsed.scheme.lower(), parsed.netloc.lower(), [part for part in parts if part]


def _within(source: str, root: str) -> bool:
    """A path strictly inside `root` (same scheme and host), with no `.` or `..` part that could climb out."""
    scheme, host, parts = _parts(source)
    root_scheme, root_host, root_parts = _parts(root)
    return (
        (scheme, host) == (root_scheme, root_host)
        and bool(root_parts)
        and len(parts) > len(root_parts)
        and parts[: len(root_parts)] == root_parts
        and not any(part in (".", "..") or "/" in part or "\\" in part for part in parts)
    )
