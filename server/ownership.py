"""Which team owns what, from server-side facts only: an experiment is the team's it is named after (only the admin
creates experiments), a run and a logged model are their experiment's team's, and a registered model is the team's
whose name and a dash start the model's name.

Lookups answer None for what does not exist, so that MLflow's own handlers answer such a request as they always do.
"""

from __future__ import annotations

from labserver.names import is_valid_team


def team_experiment(store, team: str):
    """The team's experiment (an MLflow Experiment), or None."""
    try:
        return store.get_experiment_by_name(team)
    except Exception:  # a name MLflow refuses to look up owns nothing
        return None


def experiment_team(store, experiment_id: object) -> str | None:
    try:
        name = store.get_experiment(str(experiment_id)).name
    except Exception:
        return None
    return name if is_valid_team(name) else None


def run_experiment_id(store, run_id: object) -> str | None:
    if not isinstance(run_id, str) or not run_id:
        return None
    try:
        return str(store.get_run(run_id).info.experiment_id)
    except Exception:
        return None


def model_experiment_id(store, model_id: object) -> str | None:
    if not isinstance(model_id, str) or not model_id:
        return None
    try:
        return str(store.get_logged_model(model_id).experiment_id)
    except Exception:
        return None


def team_names() -> list[str]:
    """Every team that can log in now (basic-auth's users but the admin)."""
    from mlflow.server.auth import store

    return [user.username for user in store.list_users() if not user.is_admin and is_valid_team(user.username)]


def name_owner(name: object, teams: list[str]) -> str | None:
    """The team whose name and a dash start `name`. When two teams' prefixes both match (`red-` and `red-2-`), the
    longer one owns the name: `red-2-mnist` is team red-2's, so team red cannot take names that read as red-2's."""
    if not isinstance(name, str):
        return None
    owners = [team for team in teams if name.startswith(f"{team}-") and len(name) > len(team) + 1]
    return max(owners, key=len, default=None)


def model_folder_refusal(
    store, experiment_id: str, model_id: str, team: str | None, admin: bool
) -> tuple[int, str] | None:
    """Why `team` may not write into `<experiment_id>/models/<model_id>/artifacts/`, as (HTTP status, message), or
    None. The team that owns the experiment (or the admin) writes there, and only for a logged model that really
    is that experiment's: a folder of a model that does not exist, or lives elsewhere, is nobody's to fill."""
    owner = experiment_team(store, experiment_id)
    if not admin and (team is None or owner != team):
        whose = f"team {owner}'s" if owner else "not a team's"
        return 403, (
            f"team {team} may add files only to its own experiment's runs and logged models; "
            f"experiment {experiment_id} is {whose}"
        )
    if model_experiment_id(store, model_id) != str(experiment_id):
        return 400, f"experiment {experiment_id} has no logged model {model_id}; create the logged model first"
    return None
