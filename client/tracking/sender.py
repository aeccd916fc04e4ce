"""Sends a journal to its tracking store, in order, and marks what the store acknowledged.

The sender process (labclient/tracking/sender_process.py) runs it while a run trains, and `labclient sync`
afterwards: the same code, so a run that was offline is published exactly as a live one would have been.

A damaged line in the journal (a checksum that fails, anywhere but a torn last line) leaves a gap in
the sequence numbers: the sender says which numbers are missing and tags the run `lab.journal.gaps`.

Exactly once as the store sees it: a point is sent again only when its acknowledgement was lost, and
then it is the same point (same key, step, value and original timestamp), which MLflow's SQL store
drops as a duplicate of its primary key; params are re-sent with the same value (allowed), tags
overwrite with the same value, artifacts overwrite the same path. Creating the run is idempotent too:
it carries the journal's local id as a tag and is looked up by it before it is created again.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labclient.errors import ServerUnreachable
from labclient.store.transport import Refused
from labclient.tracking.description import ENTRY_ARTIFACT, RUN_LIMIT, store_run_entry
from labclient.tracking.draft import draft_entry
from labclient.tracking.journal import READ_CHUNK
from labserver.names import run_name
from labserver.tags import GAPS_TAG, LOCAL_ID_TAG, LOCAL_NAME_TAG

MAX_ENTITIES_PER_BATCH = 1000  # MLflow's limits for one log_batch
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
BATCHED = ("metric", "param", "tag")
DIARY_DRAFT_FAILED = "the dev-diary draft was not saved"
REQUEST_TIMES_KEPT = 100_000  # the latest requests' durations, for benchmarks and status


@dataclass
class SendStats:
    """What the sending cost and how it went; the benchmarks read it (latencies in seconds)."""

    requests: int = 0
    failures: int = 0  # transient failures (retried)
    refused: int = 0  # events the store refused for good (skipped, with a warning)
    request_seconds: collections.deque = field(default_factory=lambda: collections.deque(maxlen=REQUEST_TIMES_KEPT))


class Sender:
    def __init__(self, journal, transport):
        self.journal = journal
        self.transport = transport
        self.state: dict[str, Any] = journal.state()
        self.acked_seq, self._offset = journal.acked()
        self.warnings: list[str] = []
        self.stats = SendStats()
        self.ended_with: str | None = None  # the status the end event set on the store
        self._lock = threading.Lock()  # one round at a time, whoever calls

    @property
    def acked_offset(self) -> int:
        """Where in the events file the acknowledged events end."""
        return self._offset

    @property
    def bound(self) -> bool:
        """The run exists on the store and has its number."""
        return bool(self.state.get("run_id")) and bool(self.state.get("number"))

    @property
    def run_name(self) -> str | None:
        number = self.state.get("number")
        return run_name(self.journal.meta["team"], number) if number else None

    # --- the run on the store ---------------------------------------------------------------------
    def bind(self) -> dict[str, Any]:
        """Find or create the run on the store, then have it numbered. Both steps can be repeated safely: the run
        is found again by its local id, and the store gives a run the same number every time it is asked."""
        if self.bound:
            return self.state
        meta, state = self.journal.meta, dict(self.state)
        state.setdefault("experiment_id", self.transport.experiment_id(meta["team"]))
        found = None
        if not state.get("run_id"):
            found = self.transport.find_run(state["experiment_id"], meta["local_id"])
            if found is None:
                tags = {**meta["tags"], LOCAL_ID_TAG: meta["local_id"], LOCAL_NAME_TAG: meta["local_name"]}
                found = self.transport.create_run(state["experiment_id"], meta["local_name"], tags, meta["created_ms"])
            state.update(run_id=found.run_id, artifact_uri=found.artifact_uri)
            self._save(state)
        state["number"] = (found.number if found else None) or self.transport.register(state["run_id"])
        self._save(state)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.journal.save_state(state)
        self.state = state

    # --- the events ---------------------------------------------------------------------------------
    def send_pending(self, max_bytes: int | None = None) -> int:
        """Send the journalled events after the acknowledged one (all of them, or about `max_bytes` of
        them); returns how many were sent."""
        with self._lock:
            sent, read_from = 0, self._offset
            while True:
                chunk, end = self.journal.scan(read_from, max_bytes or READ_CHUNK)
                items = [item for item in chunk if item[0]["seq"] > self.acked_seq]
                if not items:
                    if end == read_from:
                        return sent
                    read_from = end  # only damaged or already acknowledged lines: look further
                    continue
                self._check_gaps(items)
                for group in _groups(items):
                    self._send(group)
                    last, offset = group[-1]
                    self.journal.mark_acked(last["seq"], offset)
                    self.acked_seq, self._offset = last["seq"], offset
                    sent += len(group)
                read_from = self._offset
                if max_bytes:
                    return sent

    def _check_gaps(self, items: list) -> None:
        """Numbers run on by one; a number skipped is a line that could not be read."""
        missing, expected = [], self.acked_seq + 1
        for event, _ in items:
            if event["seq"] > expected:
                missing.append((expected, event["seq"] - 1))
            expected = event["seq"] + 1
        if not missing:
            return
        known = {tuple(gap) for gap in self.state.get("gaps", [])}
        gaps = sorted(known | set(missing))
        text = ",".join(str(first) if first == last else f"{first}-{last}" for first, last in gaps)
        try:
            self._timed(self.transport.log_batch, self.state["run_id"], [], [], [(GAPS_TAG, text[:5000])])
        except Refused as err:
            self.warnings.append(f"the tag {GAPS_TAG} was not set: {err}")
        self._save({**self.state, "gaps": [list(gap) for gap in gaps]})
        for first, last in sorted(set(missing) - known):
            which = f"event {first} is" if first == last else f"events {first} to {last} are"
            self.warnings.append(
                f"{which} damaged in {self.journal.events_path} (unreadable, or its checksum "
                f"fails) and not sent; the run is tagged {GAPS_TAG}={text}"
            )

    def _send(self, group: list) -> None:
        kind = group[0][0]["type"]
        if kind in BATCHED:
            self._send_batch([event for event, _ in group])
        elif kind == "artifact":
            self._send_artifact(group[0][0])
        elif kind == "draft":
            self._draft(group[0][0])
        elif kind == "inputs":
            self._timed(self.transport.log_inputs, self.state["run_id"], group[0][0]["datasets"])
        elif kind == "end":
            self._timed(
                self.transport.set_terminated, self.state["run_id"], group[0][0]["status"], group[0][0]["end_time"]
            )
            self.ended_with = group[0][0]["status"]
        # "start" (the copy of meta.json) and kinds of a later journal format: nothing to send

    def _timed(self, call, *args) -> None:
        started = time.perf_counter()
        self.stats.requests += 1
        try:
            call(*args)
        except ServerUnreachable:
            self.stats.failures += 1
            raise
        finally:
            self.stats.request_seconds.append(time.perf_counter() - started)

    def _send_batch(self, events: list[dict]) -> None:
        try:
            self._timed(self.transport.log_batch, self.state["run_id"], *_batch(events))
        except Refused as err:
            if len(events) == 1:
                self._refused(events[0], err)
                return
            for event in events:  # find the one the store will not take, and send the others
                self._send_batch([event])

    def _send_artifact(self, event: dict) -> None:
        path = self.journal.root / event["file"]
        if not path.is_file() or path.stat().st_size != event["size"]:
            self._refused(event, Refused(f"its copy in the journal ({path}) is missing or damaged"))
            return
        try:
            self._timed(
                self.transport.log_artifact,
                self.state["run_id"],
                self.state.get("artifact_uri", ""),
                path,
                event.get("artifact_path"),
                event.get("sha256"),
            )
        except Refused as err:
            self._refused(event, err)

    def _refused(self, event: dict, err: Exception) -> None:
        self.stats.refused += 1
        what = event.get("key") or "/".join(
            filter(None, [event.get("artifact_path"), Path(event.get("file", "")).name])
        )
        self.warnings.append(f"not sent: {event['type']} {what!r}: {err}")

    def _draft(self, event: dict) -> None:
        """The run's dev-diary entry, drafted from what the store holds once everything before it arrived."""
        run_id, name = self.state["run_id"], self.run_name
        try:
            logged = self.transport.get_run(run_id)
            text = draft_entry(
                logged, note=event.get("note"), architecture=event.get("architecture"), plots=event.get("plots")
            )
            if store_run_entry(_DiaryClient(self.transport, self.state.get("artifact_uri", "")), run_id, name, text):
                self.warnings.append(
                    f"the diary draft has {len(text):,} characters, more than the {RUN_LIMIT:,} MLflow keeps in a "
                    f"description: its start is shown, the whole text is {ENTRY_ARTIFACT}"
                )
        except ServerUnreachable:
            raise
        except Exception as err:  # a logged model is worth more than its draft: warn, let the team write it
            message = " ".join(str(getattr(err, "message", err)).split())[:300]
            self.warnings.append(f"{DIARY_DRAFT_FAILED} ({message}); write it with `labclient diary {name} --edit`")


class _DiaryClient:
    """The two MlflowClient calls `store_run_entry` makes, over the sender's transport."""

    def __init__(self, transport, artifact_uri: str):
        self.transport, self.artifact_uri = transport, artifact_uri

    def set_tag(self, run_id: str, key: str, value) -> None:
        self.transport.log_batch(run_id, [], [], [(key, str(value))])

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self.transport.log_artifact(run_id, self.artifact_uri, Path(local_path), artifact_path)


def _groups(items: list):
    """Consecutive metrics, params and tags in log_batch-sized groups; anything else alone, in order."""
    batch: list = []
    params: dict[str, str] = {}
    tags = 0
    for item in items:
        event = item[0]
        kind = event["type"]
        if kind not in BATCHED:
            if batch:
                yield batch
            batch, params, tags = [], {}, 0
            yield [item]
            continue
        conflict = kind == "param" and params.get(event["key"], event["value"]) != event["value"]
        full = (
            len(batch) >= MAX_ENTITIES_PER_BATCH
            or (kind == "param" and len(params) >= MAX_PARAMS_PER_BATCH)
            or (kind == "tag" and tags >= MAX_TAGS_PER_BATCH)
        )
        if batch and (conflict or full):  # a changed param goes alone, so the store refuses only it
            yield batch
            batch, params, tags = [], {}, 0
        batch.append(item)
        if kind == "param":
            params[event["key"]] = event["value"]
        elif kind == "tag":
            tags += 1
    if batch:
        yield batch


def _batch(events: list[dict]) -> tuple[list, list, list]:
    metrics, params, tags = [], {}, {}
    for event in events:
        if event["type"] == "metric":
            metrics.append((event["key"], event["value"], event["timestamp"], event["step"]))
        elif event["type"] == "param":
            params[event["key"]] = event["value"]  # MLflow refuses a key twice in one batch
        else:
            tags[event["key"]] = event["value"]  # the last value of a tag is the one that counts
    return metrics, list(params.items()), list(tags.items())
