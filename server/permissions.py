"""Every route gets one authorization decision; a route without one is refused (fail closed).

MLflow's basic-auth already decides most routes: every team reads everything (default READ), and a
team edits only its own experiment (MANAGE, granted by `labserver team add`). On top of that, the lab
reserves for the admin what would let a team squat names or change the rules: creating, renaming or
deleting experiments, managing users, roles and permissions, and the GenAI features a class does not use.
The Model Registry is open to teams under the lab's naming rule (labserver/registry.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from labserver.registry import REGISTRY_READS_BY_POST, REGISTRY_WRITES


class Decision(str, enum.Enum):
    PUBLIC = "public"  # no login: health checks, static files of the UI
    AUTHENTICATED = "authenticated"  # any team: the UI shell, who-am-I, the leaderboard
    MLFLOW = "mlflow"  # basic-auth's validator for this route decides (team permissions)
    SELF_AUTHORIZING = "self-authorizing"  # MLflow filters the result by the caller's permissions
    TEAM_OWNER = "team-owner"  # lab route: the team named in the request, or the admin
    TEAM_REGISTRY = "team-registry"  # basic-auth's validator, then the lab's registry rules (labserver/registry.py)
    ADMIN_ONLY = "admin-only"


_API_PREFIX = re.compile(r"^/(?:ajax-)?api/\d+\.\d+")

_PUBLIC_PATHS = re.compile(r"^/(?:health|version|favicon\.ico|static-files/.*|static/.*|build/.*)$")
_PUBLIC_SUFFIXES = re.compile(r"^/mlflow/server-info$")
_UI_PATHS = re.compile(r"^/(?:|#.*)$")

# Lab routes are registered by labserver.views; each declares its decision here.
LAB_ROUTES: dict[tuple[str, str], Decision] = {}

_ADMIN_ONLY_ANY_METHOD = re.compile(
    r"^/mlflow/(?:"
    r"experiments/(?:create|update|delete|restore)"
    r"|(?:experiments|registered-models|prompts|scorers|gateway|gateway-[a-z-]+)/permissions(?:/.*)?"
    r"|users/(?!current(?:/permissions)?$).*"
    r"|roles(?:/.*)?"
    r"|workspaces/.+"
    r"|prompt-optimization(?:/.*)?"
    r")$"
)
# Families a class does not use: reading them is MLflow's call, changing them is the admin's. The registry's
# routes that a team may use (REGISTRY_WRITES) are decided before this.
_ADMIN_ONLY_WRITES = re.compile(
    r"^/(?:mlflow/)?(?:registered-models|model-versions|prompts|gateway|webhooks|mcp-servers|scorers|"
    r"prompt-optimization|datasets|issues|jobs|assistant|secrets|endpoints|workspaces)(?:/.*)?$"
)
_NON_API_ADMIN_ONLY = re.compile(r"^/(?:signup|gateway/.*|v1/traces.*)$")
# Traces are a GenAI feature a class does not use: teams read them, only the admin writes them (which also keeps
# a team from linking its traces to another team's run). The reads that MLflow serves as POST stay open.
_TRACE_WRITES = re.compile(
    r"^/mlflow/traces(?:/(?!(?:search|batchGetInfos|batchGet|get|metrics|"
    r"calculate-filter-correlation)$).*)?$"
)


def api_suffix(path: str) -> str | None:
    match = _API_PREFIX.match(path)
    return path[match.end() :] if match else None


def decide(
    path: str, method: str, has_mlflow_validator: bool, self_authorizing: bool = False, not_implemented: bool = False
) -> Decision | None:
    """The decision for one request. `has_mlflow_validator`: basic-auth guards the route;
    `self_authorizing`: MLflow filters its answer by the caller's permissions; `not_implemented`: 501 for all."""
    if (path, method) in LAB_ROUTES:
        return LAB_ROUTES[(path, method)]
    if not_implemented:
        return Decision.AUTHENTICATED
    if _PUBLIC_PATHS.match(path):
        return Decision.PUBLIC
    if _UI_PATHS.match(path):
        return Decision.AUTHENTICATED
    if _NON_API_ADMIN_ONLY.match(path):
        return Decision.ADMIN_ONLY
    suffix = api_suffix(path)
    if suffix is None:
        if path == "/graphql" or self_authorizing:
            return Decision.SELF_AUTHORIZING
        return Decision.MLFLOW if has_mlflow_validator else None
    if _PUBLIC_SUFFIXES.match(suffix):
        return Decision.PUBLIC
    if _ADMIN_ONLY_ANY_METHOD.match(suffix):
        return Decision.ADMIN_ONLY
    if (suffix, method) in REGISTRY_WRITES:
        return Decision.TEAM_REGISTRY if has_mlflow_validator else None
    reads = method in ("GET", "HEAD", "OPTIONS") or (suffix, method) in REGISTRY_READS_BY_POST
    if not reads and (_ADMIN_ONLY_WRITES.match(suffix) or _TRACE_WRITES.match(suffix)):
        return Decision.ADMIN_ONLY
    if self_authorizing or suffix in ("/mlflow/runs/search", "/graphql"):
        return Decision.SELF_AUTHORIZING
    if has_mlflow_validator:
        return Decision.MLFLOW
    return None


_ARTIFACT_WRITE = re.compile(
    r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/(?:artifacts|mpu/(?:create|complete|abort))/(?P<path>.*)$"
)
# The two folders MLflow writes artifacts into: a run's, and (MLflow 3) a logged model's, which lives under its
# experiment's `models/` folder (SqlAlchemyStore.create_logged_model: `<experiment>/models/m-<32 hex>/artifacts`).
_RUN_FOLDER = re.compile(r"^(?P<experiment>\d+)/(?P<run>[0-9a-f]{32})/artifacts/(?P<file>.+)$")
_MODEL_FOLDER = re.compile(r"^(?P<experiment>\d+)/models/(?P<model>m-[0-9a-f]{32})/artifacts/(?P<file>.+)$")
FOLDER_RULE = "artifact uploads must stay inside one run's or one logged model's folder"


@dataclass(frozen=True)
class ArtifactWrite:
    """The folder an artifact upload or delete writes into: a run's (run_id) or a logged model's (model_id)."""

    experiment_id: str
    run_id: str | None = None
    model_id: str | None = None


class ArtifactPathRefused(ValueError):
    """An artifact write outside one run's or logged model's folder, or with an empty, `.` or `..` part."""


def artifact_write_target(path: str, method: str) -> ArtifactWrite | None:
    """The folder an artifact write names; None for a request that writes no artifact (reads included).
    Raises ArtifactPathRefused for a path outside both kinds of folder, or with an empty, '.' or '..' part."""
    from urllib.parse import unquote

    match = _ARTIFACT_WRITE.match(path)
    if match is None or method in ("GET", "HEAD", "OPTIONS"):
        return None
    artifact_path = match.group("path")
    for _ in range(10):  # decoded until it stops changing, as MLflow's validate_path_is_safe decodes it
        decoded = unquote(artifact_path)
        if decoded == artifact_path:
            break
        artifact_path = decoded
    else:
        raise ArtifactPathRefused(FOLDER_RULE)
    inside = _RUN_FOLDER.match(artifact_path) or _MODEL_FOLDER.match(artifact_path)
    if inside is None:
        raise ArtifactPathRefused(FOLDER_RULE)
    parts = inside.group("file").replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ArtifactPathRefused(FOLDER_RULE)
    found = inside.groupdict()
    return ArtifactWrite(found["experiment"], found.get("run"), found.get("model"))


def artifact_write_escapes_folder(path: str, method: str) -> bool:
    try:
        artifact_write_target(path, method)
    except ArtifactPathRefused:
        return True
    return False
