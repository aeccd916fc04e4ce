"""Names shared by the server and the client: teams, the run names the server gives, and the identity tags.

Team names become experiment names and basic-auth users. A run's identity is the team that owns its experiment and
the number the server allocated to it; the server alone writes them, as the tags below, and names the run
`TEAM/run-N` (labserver/identity.py refuses any team's request that would write them itself).
"""

from __future__ import annotations

import re

from labserver.tags import RUN_NUMBER_TAG, SERVER_OWNED_TAG_PREFIXES, SERVER_OWNED_TAGS

TEAM_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,31}")  # always used with fullmatch: `$` would accept "red\n"
TEAM_RULE = "lowercase letters, digits and '-', starting with a letter, at most 32 characters"
RESERVED = frozenset({"admin", "default", "lab"})

NUMBERED_RUN_NAME = re.compile(r"(?P<team>[a-z][a-z0-9-]{0,31})/(?:run|group)-(?P<number>[0-9]{1,9})")
RUN_NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # ASCII digits only: str.isdigit() also accepts "²" and "٣"


def is_valid_team(name: object) -> bool:
    return isinstance(name, str) and bool(TEAM_PATTERN.fullmatch(name)) and name not in RESERVED


def run_name(team: str, number: int) -> str:
    return f"{team}/run-{number}"


def run_number(value: object) -> int | None:
    """A run number read from a tag: a positive whole number in ASCII digits, else None."""
    return int(value) if isinstance(value, str) and RUN_NUMBER.fullmatch(value) else None


def is_server_owned_tag(key: object) -> bool:
    return isinstance(key, str) and (key in SERVER_OWNED_TAGS or key.startswith(SERVER_OWNED_TAG_PREFIXES))


def identity(client, run, experiment_names: dict[str, str] | None = None) -> tuple[str | None, int | None]:
    """(team, number) of a run from server-owned facts: its experiment's name and the number the server gave it.
    `experiment_names` (id -> name) saves a request per run when many runs are described."""
    experiment_id = run.info.experiment_id
    if experiment_names is not None and experiment_id in experiment_names:
        name = experiment_names[experiment_id]
    else:
        experiment = client.get_experiment(experiment_id)
        name = experiment.name if experiment is not None else None
    team = name if is_valid_team(name) else None
    return team, run_number(run.data.tags.get(RUN_NUMBER_TAG)) if team else None


def display_name(team: str | None, number: int | None, run_id: str) -> str:
    """How a run is named to users: `red/run-42`, else its run id (never a name a team wrote)."""
    return run_name(team, number) if team and number else run_id
