"""The Python API for a run: `with labclient.start_run(team="blue") as run: ...`.

`labclient train` uses exactly this object, so a team's hand-written loop logs the same way.
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labclient import tracking
from labclient.config import Settings, get_settings
from labclient.recorder import Recorder
from labclient.weights import save_safetensors, sha256_file

DESCRIPTION_TAG = "mlflow.note.content"  # MLflow renders this tag as the run's description


class Run:
    def __init__(self, client, target: tracking.Target, team: str, number: int, run_id: str, experiment_id: str):
        self.client = client
        self.target = target
        self.team = team
        self.number = number
        self.id = run_id
        self.experiment_id = experiment_id
        self.name = tracking.run_name(team, number)
        self.recorder = Recorder(client, run_id)
        self._workdir = tempfile.TemporaryDirectory(prefix="labrun-")
        self._manifest: dict[str, dict[str, Any]] = {}
        self._notes: list[str] = []

    @property
    def url(self) -> str:
        return self.target.run_url(self.experiment_id, self.id)

    @property
    def workdir(self) -> Path:
        return Path(self._workdir.name)

    def log_params(self, params: dict[str, Any]) -> None:
        self.recorder.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.recorder.log_metrics(metrics, step)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.recorder.log_metric(key, value, step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.recorder.set_tags(tags)

    def note(self, text: str) -> None:
        """Add a paragraph to the run's description (its dev-diary entry in the MLflow UI)."""
        self._notes.append(text.strip())
        self.recorder.set_tags({DESCRIPTION_TAG: "\n\n".join(self._notes)})

    def log_artifact(self, local_path: Path | str, artifact_path: str | None = None) -> None:
        local_path = Path(local_path)
        key = f"{artifact_path}/{local_path.name}" if artifact_path else local_path.name
        self._manifest[key] = {"sha256": sha256_file(local_path), "size": local_path.stat().st_size}
        self.recorder.log_artifact(local_path, artifact_path)

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
        self.set_tags({"lab.weights.sha256": entry["sha256"], "lab.weights.bytes": entry["size"], "lab.weights.format": "safetensors"})
        return path

    def finish(self, status: str = "FINISHED") -> None:
        try:
            if self._manifest:
                self.log_json({"run": self.name, "files": self._manifest}, "manifest.json")
            self.recorder.finish(status)
        finally:
            self._workdir.cleanup()


def create_run(
    team: str, *, settings: Settings | None = None, tracking_uri: str | None = None, tags: dict[str, Any] | None = None
) -> Run:
    settings = settings or get_settings()
    team = tracking.validate_team(team or settings.team)
    target = tracking.resolve_target(settings, tracking_uri)
    client = tracking.open_client(target)
    experiment_id = tracking.ensure_team_experiment(client, target, team)
    number = tracking.allocate_run_number(target, team)
    name = tracking.run_name(team, number)
    all_tags = {"lab.team": team, "lab.run_number": str(number), **(tags or {})}
    mlflow_run = client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()}, start_time=int(time.time() * 1000))
    return Run(client, target, team, number, mlflow_run.info.run_id, experiment_id)


@contextmanager
def start_run(
    team: str | None = None, *, note: str | None = None, tracking_uri: str | None = None, tags: dict[str, Any] | None = None
) -> Iterator[Run]:
    """A run that ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C."""
    run = create_run(team, tracking_uri=tracking_uri, tags=tags)
    if note:
        run.note(note)
    status = "FINISHED"
    try:
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        run.finish(status)
