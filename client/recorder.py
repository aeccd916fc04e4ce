"""The recorder: the one object every log call goes through (CLI, Python API and trainers alike).

Calls return at once; a background sender ships them to MLflow in batches, so logging never waits
on the tracking store inside the training loop. Durability (a journal on disk) belongs here too.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labclient.errors import TrackingError

MAX_ENTITIES_PER_BATCH = 1000  # MLflow's limit for metrics + params + tags in one log_batch
MAX_PARAMS_TAGS_PER_BATCH = 100
FLUSH_INTERVAL_S = 0.5
_STOP = object()


@dataclass
class _Batch:
    metrics: list = field(default_factory=list)
    params: list = field(default_factory=list)
    tags: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def full(self) -> bool:
        return len(self) >= MAX_ENTITIES_PER_BATCH or len(self.params) + len(self.tags) >= MAX_PARAMS_TAGS_PER_BATCH


@dataclass
class _Artifact:
    local_path: Path
    artifact_path: str | None


class Recorder:
    """Queues params, metrics, tags and artifacts of one MLflow run and sends them off the caller's thread."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._sender = threading.Thread(target=self._send_loop, name=f"lab-sender-{run_id[:8]}", daemon=True)
        self._sender.start()

    # --- the logging API -------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        for key, value in params.items():
            self._queue.put(Param(str(key), _as_text(value)))

    def log_metric(self, key: str, value: float, step: int = 0, timestamp_ms: int | None = None) -> None:
        from mlflow.entities import Metric

        self._queue.put(Metric(key, float(value), timestamp_ms or int(time.time() * 1000), int(step)))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self.log_metric(key, value, step, now)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        for key, value in tags.items():
            self._queue.put(RunTag(str(key), _as_text(value)))

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """The file must stay in place until `flush()` returns."""
        self._queue.put(_Artifact(Path(local_path), artifact_path))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far has been sent; re-raise a send failure."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TrackingError(f"logging did not finish within {timeout:.0f}s", "check the tracking server")
        if self._error is not None:
            error, self._error = self._error, None
            raise TrackingError(f"sending to the tracking store failed: {error}", "check the tracking server") from error

    def finish(self, status: str = "FINISHED") -> None:
        try:
            self.flush()
        finally:
            self._queue.put(_STOP)
            self._sender.join(timeout=60)
            self.client.set_terminated(self.run_id, status=status)

    # --- the sender thread ---------------------------------------------------------------------
    def _send_loop(self) -> None:
        batch, deadline = _Batch(), None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                batch, deadline = self._send_batch(batch), None
                continue
            if item is _STOP:
                self._send_batch(batch)
                return
            if isinstance(item, (threading.Event, _Artifact)):
                batch, deadline = self._send_batch(batch), None
                if isinstance(item, _Artifact):
                    self._guard(self.client.log_artifact, self.run_id, str(item.local_path), item.artifact_path)
                else:
                    item.set()
                continue
            _add(batch, item)
            if batch.full():
                batch, deadline = self._send_batch(batch), None
            elif deadline is None:
                deadline = time.monotonic() + FLUSH_INTERVAL_S

    def _send_batch(self, batch: _Batch) -> _Batch:
        if len(batch):
            self._guard(self.client.log_batch, self.run_id, metrics=batch.metrics, params=batch.params, tags=batch.tags)
        return _Batch()

    def _guard(self, call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except Exception as err:  # kept and re-raised on the caller's thread at the next flush
            self._error = self._error or err


def _add(batch: _Batch, item) -> None:
    from mlflow.entities import Metric, Param

    if isinstance(item, Metric):
        batch.metrics.append(item)
    elif isinstance(item, Param):
        batch.params.append(item)
    else:
        batch.tags.append(item)


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
