"""`labclient push`: weights trained elsewhere become a run of the team, converted to safetensors with a spec.

Every check (format, allow-listed unpickling, the spec against the tensors) happens before a run exists, so a
refused file leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labclient.config import Settings, get_settings


@dataclass
class PushResult:
    name: str
    run_id: str
    url: str
    params: dict[str, Any]
    weights_bytes: int


def push(
    path: str | Path,
    team: str | None = None,
    *,
    arch: str | None = None,
    note: str | None = None,
    dataset: str | None = None,
    tracking_uri: str | None = None,
    settings: Settings | None = None,
) -> PushResult:
    """Upload weights trained elsewhere as a new run of `team`, converted to safetensors with a labspec/1 spec."""
    from labclient.models.convert import prepare
    from labclient.store.target import validate_team
    from labclient.tracking.run import create_run

    settings = settings or get_settings()
    team = validate_team(team or settings.team)
    prepared = prepare(Path(path), arch, dataset)  # all checks happen before a run exists
    with create_run(team, settings=settings, tracking_uri=tracking_uri, tags=prepared.tags) as run:
        run.log_params(prepared.params)
        run.log_metrics(prepared.metrics)
        weights = run.log_weights(prepared.state, spec=prepared.spec, config=prepared.config)
        weights_bytes = weights.stat().st_size
        run.log_metrics({"weights_file_bytes": weights_bytes})
        run.note(prepared.note(run.name, note))
        run.recorder.flush()
    return PushResult(run.name, run.id, run.url, prepared.params, weights_bytes)
