"""The Python API for a run: `with labclient.start_run(team="blue") as run: ...`.

`labclient train` uses exactly this object, so a team's hand-written loop logs the same way.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labclient.config import Settings, get_settings
from labclient.errors import LabError, LabWarning, ServerUnreachable
from labclient.files import git_commit
from labclient.models.weights import save_safetensors
from labclient.store.target import Target, resolve_target, validate_team
from labclient.store.transport import open_transport
from labclient.tracking.journal import Journal, new_meta
from labclient.tracking.recorder import Recorder, SenderProcess, check_tags
from labclient.tracking.sender import Sender
from labserver.names import run_name
from labserver.tags import (
    DESCRIPTION_TAG,
    GIT_COMMIT_TAG,
    SOURCE_NAME_TAG,
    SOURCE_TYPE_TAG,
    USER_TAG,
    WEIGHTS_BYTES_TAG,
    WEIGHTS_FORMAT_TAG,
    WEIGHTS_TAG,
)


class Run:
    """One run: everything it logs goes through its recorder into its journal, then to the tracking store.

    A run that could not reach its server at the start (or an `--offline` one) has no number yet: its
    name is the local one (`blue/local-1a2b3c4d`) until the sender or `labclient sync` publishes it.
    """

    def __init__(self, recorder: Recorder, target: Target, team: str, unreachable: str | None = None):
        self.recorder = recorder
        self.target = target
        self.team = team
        self.local_name = recorder.journal.meta["local_name"]
        self.unreachable = unreachable  # why the start was journalled only, when it was
        self.pending = False  # after finish(): not everything reached the store; `labclient sync` sends it
        self._workdir = tempfile.TemporaryDirectory(prefix="labrun-")
        self._manifest: dict[str, dict[str, Any]] = {}
        self._notes: list[str] = []

    @property
    def number(self) -> int | None:
        return self.recorder.state.get("number")

    @property
    def id(self) -> str | None:
        return self.recorder.state.get("run_id")

    @property
    def experiment_id(self) -> str | None:
        return self.recorder.state.get("experiment_id")

    @property
    def name(self) -> str:
        return run_name(self.team, self.number) if self.number else self.local_name

    @property
    def url(self) -> str | None:
        return self.target.run_url(self.experiment_id, self.id) if self.id else None

    @property
    def offline(self) -> bool:
        return self.recorder.offline

    @property
    def journal_path(self) -> Path:
        return self.recorder.journal.root

    @property
    def workdir(self) -> Path:
        return Path(self._workdir.name)

    def log_params(self, params: dict[str, Any]) -> None:
        self.recorder.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.recorder.log_metrics(metrics, step)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.recorder.log_metric(key, value, step)

    def log_metric_steps(self, key: str, values: list[float], first_step: int = 0, every: int = 1) -> None:
        """Many steps of one metric at once: values[i] at step first_step + i * every."""
        self.recorder.log_metric_steps(key, values, first_step, every)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.recorder.set_tags(tags)

    def note(self, text: str) -> None:
        """Add a paragraph to the run's description (its dev-diary entry in the MLflow UI)."""
        self._notes.append(text.strip())
        self.recorder.set_tags({DESCRIPTION_TAG: "\n\n".join(self._notes)})

    def log_artifact(self, local_path: Path | str, artifact_path: str | None = None) -> None:
        """Copied into the journal at once: the file may be changed or deleted as soon as this returns."""
        local_path = Path(local_path)
        key = f"{artifact_path}/{local_path.name}" if artifact_path else local_path.name
        sha256, size = self.recorder.log_artifact(local_path, artifact_path)
        self._manifest[key] = {"sha256": sha256, "size": size}

    def log_json(self, data: Any, name: str, artifact_path: str | None = None) -> Path:
        path = self.workdir / (artifact_path or "") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        self.log_artifact(path, artifact_path)
        return path

    def log_weights(self, weights: Any, spec: dict | None = None, config: dict | None = None) -> Path:
        """Save weights as `model/model.safetensors`, with the spec and config beside them and inside them."""
        folder = self.workdir / "model"
        folder.mkdir(exist_ok=True)
        metadata = {"run": self.name, **({"spec": spec} if spec else {}), **({"config": config} if config else {})}
        path = save_safetensors(weights, folder / "model.safetensors", metadata)
        self.log_artifact(path, "model")
        if spec:
            self.log_json(spec, "spec.json", "model")
        if config:
            self.log_json(config, "config.json", "model")
        entry = self._manifest["model/model.safetensors"]
        self.set_tags(
            {WEIGHTS_TAG: entry["sha256"], WEIGHTS_BYTES_TAG: entry["size"], WEIGHTS_FORMAT_TAG: "safetensors"}
        )
        return path

    def log_dataset(
        self,
        name: str,
        digest: str,
        source: str,
        context: str = "training",
        *,
        source_type: str = "local",
        profile: dict | None = None,
    ) -> None:
        """A dataset this run used, as MLflow shows it: `digest` identifies its content (the same data, the same
        digest), `context` says how the run used it ("training", "evaluation", ...)."""
        self.recorder.log_inputs(
            [
                {
                    "name": name,
                    "digest": digest,
                    "source": source,
                    "context": context,
                    "source_type": source_type,
                    "profile": profile,
                }
            ]
        )

    def draft_diary(self, note: str | None, architecture: str | None, plots: list[str]) -> None:
        """The drafted dev-diary entry becomes the description once the store holds the run's figures."""
        self.recorder.draft_diary(note, architecture, plots)

    def finish(self, status: str = "FINISHED") -> bool:
        """End the run; True when the store has all of it, False when it is pending in the journal."""
        try:
            if self._manifest:
                try:
                    self.log_json({"run": self.name, "files": self._manifest}, "manifest.json")
                except LabError as err:  # a full disk: the end still has to be recorded as well as it can
                    self.recorder.last_error = err.one_line()
            self.pending = not self.recorder.finish(status)
        finally:
            self._workdir.cleanup()
        return not self.pending

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, error, trace) -> bool:
        """FINISHED, FAILED on an exception, or KILLED on Ctrl-C: the one place a run's end status is decided."""
        self.finish("FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")
        return False


def create_run(
    team: str | None,
    *,
    settings: Settings | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, Any] | None = None,
    offline: bool | None = None,
    allow_offline: bool = False,
    sender: SenderProcess | None = None,
    on_notice=None,
    source: str | None = None,
) -> Run:
    """Start a run. `offline` journals it without contacting any server; `allow_offline` keeps going
    (journalled, numbered later) when the server cannot be reached, instead of raising ServerUnreachable.
    `sender`: a sender process already started for this target (`labclient train` starts it early).
    `on_notice(line)` hears at once of an entry the store refused for good, or of sending that stopped (a
    token rotated mid-run); by default each becomes a LabWarning through Python's `warnings`.
    `source`: the file that logs the run (the trainer's); by default the script Python is running."""
    settings = settings or get_settings()
    team = validate_team(team or settings.team)
    target = resolve_target(settings, tracking_uri)
    offline = settings.offline if offline is None else offline
    check_tags(tags or {})
    tags = {**standard_tags(team, source), **(tags or {})}
    meta = new_meta(team, target.uri, target.kind, tags, offline)
    journal = Journal.create(settings.journal_dir, meta)
    unreachable = None
    try:
        if not offline:  # bound here, so the run has its number before training starts
            try:
                Sender(journal, open_transport(target)).bind()
            except ServerUnreachable as err:
                if not allow_offline:
                    raise
                unreachable = err.one_line()
        recorder = Recorder(
            journal,
            None if offline else target,
            drain_timeout=settings.drain_timeout,
            keep_journal=settings.journal_keep,
            sender=sender,
            on_notice=on_notice or _warn,
        )
    except BaseException:
        journal.discard()
        if sender is not None:
            sender.release()
        raise
    return Run(recorder, target, team, unreachable)


def _warn(line: str) -> None:
    warnings.warn(line, LabWarning, stacklevel=2)


@contextmanager
def start_run(
    team: str | None = None,
    *,
    note: str | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, Any] | None = None,
    offline: bool | None = None,
) -> Iterator[Run]:
    """A run that ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C. A server that cannot be
    reached does not stop it: the run is journalled and sent when the server answers, or by `labclient sync`."""
    run = create_run(team, tracking_uri=tracking_uri, tags=tags, offline=offline, allow_offline=True)
    if note:
        run.note(note)
    try:
        with run:
            yield run
    finally:
        if run.pending:
            logging.getLogger("labclient").warning(
                "%s is stored locally in %s and not yet on the tracking store; `labclient sync` sends it",
                run.name,
                run.journal_path,
            )


def standard_tags(team: str, source: str | None = None) -> dict[str, str]:
    """The fields MLflow's run page shows as "Created by" and "Source": the team, and the file that logged the run
    (the trainer's, or the script being run) with its git commit where it lies in a git work tree."""
    if source is None:
        script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
        source = str(Path(script).resolve()) if script and Path(script).is_file() else "<interactive>"
    tags = {USER_TAG: team, SOURCE_NAME_TAG: source, SOURCE_TYPE_TAG: "LOCAL"}
    commit = git_commit(Path(source).parent) if Path(source).is_file() else None
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags
