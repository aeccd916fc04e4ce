"""Names shared by the server and the client: teams, the run names the server gives, and the identity tags.

Team names become experiment names and basic-auth users. A run's identity is the team that owns its experiment and
the number the server allocated to it; the server alone writes them, as the tags below, and names the run
`TEAM/run-N` (labserver/identity.py refuses any team's request that would write them itself).
"""

from __future__ import annotations

import re

TEAM_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,31}")  # always used with fullmatch: `$` would accept "red\n"
TEAM_RULE = "lowercase letters, digits and '-', starting with a letter, at most 32 characters"
RESERVED = frozenset({"admin", "default", "lab"})

TEAM_TAG = "lab.team"
RUN_NUMBER_TAG = "lab.run_number"
SERVER_OWNED_TAGS = (TEAM_TAG, RUN_NUMBER_TAG)
SERVER_OWNED_TAG_PREFIXES = ("lab.verified.",)
RUN_NAME_TAG = "mlflow.runName"
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
