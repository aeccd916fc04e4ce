"""Dev-diary entries: a run's description, or a team's (its experiment's description).

Both live in the tag `mlflow.note.content`, the one MLflow's web UI shows and edits, so an edit made
in the UI is what these functions read, and the reverse. A run description holds at most
MAX_TAG_VAL_LENGTH characters (MLflow silently cuts longer ones); a longer entry is kept whole as
the artifact diary/entry.md and its description shows the beginning plus a pointer.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.utils.validation import MAX_EXPERIMENT_TAG_VAL_LENGTH

from labclient.config import get_settings
from labclient.errors import ConfigError, EntryTooLong, InvalidReference, RunNotFound
from labclient.store.client import open_client
from labclient.store.failures import mlflow_failures
from labclient.store.target import TEAM_PATTERN, Target, resolve_target, validate_team
from labclient.tracking.description import (
    _POINTER_RULE,
    _TRUNCATION_MARK,
    ENTRY_ARTIFACT,
    RUN_LIMIT,
    store_run_entry,
)  # noqa: F401
from labclient.tracking.draft import artifact_link, describe_architecture, draft_entry  # noqa: F401  (the draft API)
from labserver.names import display_name, identity, is_valid_team
from labserver.tags import DESCRIPTION_TAG

TEAM_LIMIT = MAX_EXPERIMENT_TAG_VAL_LENGTH  # 20,000 characters in MLflow 3.17


@dataclass
class Entry:
    ref: str  # "blue/run-3", or "blue" for the team's own diary
    team: str
    text: str  # the whole entry, read from diary/entry.md when the description holds only its start
    url: str
    run_id: str | None = None
    truncated: bool = False  # the description shows only the start; the full text is diary/entry.md
    limit: int = RUN_LIMIT

    @property
    def is_team_entry(self) -> bool:
        return self.run_id is None


@dataclass
class Listing:
    ref: str
    team: str
    run_id: str
    started: dt.datetime
    status: str
    first_line: str
    number: int = 0


@dataclass
class _Place:
    client: Any
    target: Target
    ref: str
    team: str
    experiment_id: str
    description: str
    run_id: str | None = None

    @property
    def url(self) -> str:
        if self.run_id:
            return self.target.run_url(self.experiment_id, self.run_id)
        return self.target.experiment_url(self.experiment_id)


# --- the Python API ---------------------------------------------------------------------------------
def read_entry(ref: str, *, tracking_uri: str | None = None) -> Entry:
    """The entry of a run (`blue/run-3`) or of a team (`blue`), as the UI shows it, but whole."""
    return _read(_locate(ref, tracking_uri))


def write_entry(ref: str, text: str, *, tracking_uri: str | None = None) -> Entry:
    """Replace the entry. Refused with EditRefused for another team's run on a shared server."""
    return _write(_locate(ref, tracking_uri), text)


def append_entry(ref: str, text: str, *, when: dt.datetime | None = None, tracking_uri: str | None = None) -> Entry:
    """Add a paragraph that starts with the date and time."""
    if not text or not text.strip():
        raise ConfigError("--append needs some text", 'for example --append "eta 0.5 was worse: cost jumped around"')
    place = _locate(ref, tracking_uri)
    paragraph = f"**{(when or dt.datetime.now()):%Y-%m-%d %H:%M}** {text.strip()}\n"
    body = _read(place).text.rstrip()
    return _write(place, f"{body}\n\n{paragraph}" if body else paragraph)


def read_team_entry(team: str, *, tracking_uri: str | None = None) -> Entry:
    return read_entry(validate_team(team), tracking_uri=tracking_uri)


def write_team_entry(team: str, text: str, *, tracking_uri: str | None = None) -> Entry:
    return write_entry(validate_team(team), text, tracking_uri=tracking_uri)


def list_entries(team: str | None = None, *, limit: int = 50, tracking_uri: str | None = None) -> list[Listing]:
    """Run entries, newest first, of one team or of every team in the store."""
    client, target = _open(tracking_uri)
    with mlflow_failures(target, team or "every team", editing=False):
        if team:
            experiment = _team_experiment(client, target, validate_team(team))
            teams = {experiment.experiment_id: experiment.name}
        else:
            teams = {e.experiment_id: e.name for e in client.search_experiments() if is_valid_team(e.name)}
        runs = (
            client.search_runs(list(teams), order_by=["attributes.start_time DESC"], max_results=limit) if teams else []
        )
    listings = [_listing(run, teams) for run in runs]
    return sorted(listings, key=lambda item: (item.started, item.number), reverse=True)


def first_line(text: str, width: int = 100) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#>*-_ ").rstrip("*_ ")
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return "(no entry yet)"


# --- internals --------------------------------------------------------------------------------------
def _open(tracking_uri: str | None):
    target = resolve_target(get_settings(), tracking_uri)
    return open_client(target), target


def _locate(ref: str, tracking_uri: str | None) -> _Place:
    """`blue/run-3` (any form client/refs.py knows: TEAM/latest, TEAM/best, a run id) or a bare team `blue`."""
    from labclient.store import refs

    ref = (ref or "").strip()
    names_run = _names_a_run(ref)
    if not names_run and not TEAM_PATTERN.fullmatch(ref):
        raise InvalidReference(f"{ref!r} is neither a run nor a team", f"use {refs.FORMS}, or a team name such as blue")
    client, target = _open(tracking_uri)
    with mlflow_failures(target, ref, editing=False):
        if names_run:
            run = refs.resolve(client, ref)
            team, number = identity(client, run)
            name = display_name(team, number, run.info.run_id)
            team = team or _experiment_name(client, run.info.experiment_id)
            description = run.data.tags.get(DESCRIPTION_TAG, "")
            return _Place(client, target, name, team, run.info.experiment_id, description, run.info.run_id)
        experiment = _team_experiment(client, target, ref)
    return _Place(client, target, ref, ref, experiment.experiment_id, experiment.tags.get(DESCRIPTION_TAG, ""))


def _names_a_run(ref: str) -> bool:
    from labclient.store import refs

    if "/" in ref:
        return True  # malformed run references get refs' own error, with the team's nearest runs
    try:
        return refs.parse(ref).selector == "run_id"
    except InvalidReference:
        return False


def _team_experiment(client, target: Target, team: str):
    experiment = client.get_experiment_by_name(team)
    if experiment is None:
        raise RunNotFound(
            f"no team {team!r} on {target.uri}", "check the spelling; `labclient leaderboard` shows the teams with runs"
        )
    return experiment


def _read(place: _Place) -> Entry:
    text, truncated = place.description, False
    if place.run_id and _TRUNCATION_MARK in text:
        full = _download_full_text(place)
        if full is not None and full.startswith(_visible_head(text)):
            text, truncated = full, True  # else the description was edited in the UI since, and it wins
    return _entry(place, text, truncated)


def _write(place: _Place, text: str) -> Entry:
    text = text.rstrip() + "\n" if text.strip() else ""
    with mlflow_failures(place.target, place.ref, editing=True, owner=place.team):
        if place.run_id:
            truncated = store_run_entry(place.client, place.run_id, place.ref, text)
        else:
            _check_team_length(place, text)
            place.client.set_experiment_tag(place.experiment_id, DESCRIPTION_TAG, text)
            truncated = False
    return _entry(place, text, truncated)


def _check_team_length(place: _Place, text: str) -> None:
    if len(text) > TEAM_LIMIT:
        raise EntryTooLong(
            f"the team diary of {place.team} has {len(text):,} characters but MLflow keeps at most {TEAM_LIMIT:,} in "
            "an "
            "experiment description; nothing was saved",
            "shorten it, or move details into a run's entry (run entries of any length are kept as diary/entry.md)",
        )


def _download_full_text(place: _Place) -> str | None:
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = place.client.download_artifacts(place.run_id, ENTRY_ARTIFACT, folder)
        except (MlflowException, OSError):
            return None
        return Path(path).read_text(encoding="utf-8")


def _visible_head(description: str) -> str:
    return description[: description.rfind(_POINTER_RULE)] if _POINTER_RULE in description else description


def _entry(place: _Place, text: str, truncated: bool) -> Entry:
    limit = RUN_LIMIT if place.run_id else TEAM_LIMIT
    return Entry(place.ref, place.team, text, place.url, place.run_id, truncated, limit)


def _listing(run, teams: dict[str, str]) -> Listing:

    tags = run.data.tags
    team, number = identity(None, run, teams)
    name = display_name(team, number, run.info.run_id)
    return Listing(
        ref=name,
        team=team or "",
        run_id=run.info.run_id,
        started=_started(run.info.start_time),
        status=str(run.info.status),
        first_line=first_line(tags.get(DESCRIPTION_TAG, "")).removeprefix(f"{name}: "),
        number=number or 0,
    )


def _started(milliseconds) -> dt.datetime:
    """A run's start; the epoch for a start time no calendar holds (a team chose it)."""
    try:
        return dt.datetime.fromtimestamp(int(milliseconds or 0) / 1000)
    except (TypeError, ValueError, OverflowError, OSError):
        return dt.datetime.fromtimestamp(0)


def _experiment_name(client, experiment_id: str) -> str:
    experiment = client.get_experiment(experiment_id)
    return experiment.name if experiment is not None else experiment_id
