"""Team names, shared by the server and the client: they become experiment names and basic-auth users."""

from __future__ import annotations

import re

TEAM_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TEAM_RULE = "lowercase letters, digits and '-', starting with a letter, at most 32 characters"
RESERVED = frozenset({"admin", "default", "lab"})


def is_valid_team(name: str | None) -> bool:
    return bool(name) and bool(TEAM_PATTERN.match(name)) and name not in RESERVED
