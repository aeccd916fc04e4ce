"""The recorder: the one object every log call goes through (CLI, Python API and trainers alike).

A call writes its events to the run's journal on local disk (labclient/journal.py) and returns; it
never waits for the network. A background sender fsyncs the journal every SEND_INTERVAL_S and ships
it to the tracking store in batches (labclient/shipper.py): every SHIP_INTERVAL_S, as soon as
WAKE_AFTER_EVENTS wait, and at once while someone waits for it (flush, finish). Durability needs the
short cadence; shipping does not, and each round of it takes the GIL from the training loop. When the
store is unreachable it retries with capped exponential backoff while training goes on; whatever it
has not delivered when the run ends stays in the journal for `labclient sync`.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from labclient.errors import LabError, ServerUnreachable, TrackingError

SEND_INTERVAL_S = 0.2  # fsync this often: the most a crash of the machine can lose
SHIP_INTERVAL_S = 2.0  # send at least this often while nobody waits for the store
WAKE_AFTER_EVENTS = 1000  # or as soon as this many events wait (one full log_batch)
SHIP_BYTES_PER_ROUND = 1 << 17  # about 1,200 events: then fsync again, however long the backlog
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0


class Recorder:
    """Journals params, metrics, tags and artifacts of one run and sends them off the caller's thread."""

    def __init__(self, journal, shipper=None, *, drain_timeout: float = 30.0, keep_journal: bool = False):
        self.journal = journal
        self.shipper = shipper  # None: an offline run, sent by `labclient sync` only
        self.drain_timeout = drain_timeout
        self.keep_journal = keep_journal
        self.last_error: str | None = None  # the latest reason a send failed, while retrying
        self._fatal: LabError | None = None
        self._cond = threading.Condition()
        self._wake = self._urgent = self._stop = False
        self._unsent = 0
        self._waiters = 0  # threads in flush/finish: while any waits, every round ships
        self._sender = threading.Thread(target=self._send_loop, name=f"lab-sender-{journal.local_id[-8:]}", daemon=True)
        self._sender.start()

    # --- the logging API -------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        self._append([{"type": "param", "key": str(key), "value": _as_text(value)} for key, value in params.items()])

    def log_metric(self, key: str, value: float, step: int = 0, timestamp_ms: int | None = None) -> None:
        timestamp = int(timestamp_ms or time.time() * 1000)
        self._append([{"type": "metric", "key": str(key), "value": float(value), "timestamp": timestamp, "step": int(step)}])

    def log_metric_steps(self, key: str, values: list[float], first_step: int = 0, every: int = 1) -> None:
        """values[i] at step first_step + i * every, journalled with one write (a trainer's buffered step costs)."""
        now, key = int(time.time() * 1000), str(key)
        self._append([{"type": "metric", "key": key, "value": float(value), "timestamp": now, "step": first_step + index * every}
                      for index, value in enumerate(values)])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._append([{"type": "metric", "key": str(key), "value": float(value), "timestamp": now, "step": int(step)}
                      for key, value in metrics.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._append([{"type": "tag", "key": str(key), "value": _as_text(value)} for key, value in tags.items()])

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> tuple[str, int]:
        """Copies the file into the journal at once (the caller may delete it); returns its sha256 and size."""
        event = self.journal.add_file(Path(local_path), artifact_path)
        self._append([event])
        return event["sha256"], event["size"]

    def draft_diary(self, note: str | None, architecture: str | None, plots: list[str]) -> None:
        """Draft the run's dev-diary entry on the store, once everything logged before has arrived."""
        self._append([{"type": "draft", "note": note, "architecture": architecture, "plots": plots}])

    def _append(self, events: list[dict]) -> int:
        if not events:
            return self.journal.seq
        seq = self.journal.append(events)
        self._unsent += len(events)
        if self._unsent >= WAKE_AFTER_EVENTS and self.shipper is not None:
            self._unsent = 0
            self._nudge(urgent=False)
        return seq

    # --- waiting for the store ----------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        return self.shipper is None

    @property
    def acked_seq(self) -> int:
        return self.shipper.acked_seq if self.shipper else 0

    @property
    def warnings(self) -> list[str]:
        return self.shipper.warnings if self.shipper else []

    @property
    def problem(self) -> str | None:
        """Why sending stopped (a token refused) or is being retried (no answer), if it did or is."""
        return self._fatal.one_line() if self._fatal is not None else self.last_error

    @property
    def state(self) -> dict[str, Any]:
        return self.shipper.state if self.shipper else {}

    def flush(self, timeout: float | None = None) -> None:
        """Block until the store acknowledged everything logged so far (at most `timeout`, default the drain timeout)."""
        if self.offline:
            raise TrackingError("this run is offline: nothing is sent before `labclient sync`")
        timeout = self.drain_timeout if timeout is None else timeout
        if not self._wait_acked(self.journal.seq, timeout):
            raise TrackingError(f"the tracking store has not acknowledged everything within {timeout:.0f}s"
                                + (f" ({self.last_error})" if self.last_error else ""),
                                "nothing is lost: it stays in the journal, and `labclient sync` sends it")

    def _wait_acked(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
        self._nudge(urgent=True)
        try:
            with self._cond:
                while self.acked_seq < seq and self._fatal is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, SEND_INTERVAL_S))
        finally:
            with self._cond:
                self._waiters -= 1
        if self._fatal is not None:
            raise self._fatal
        return True

    def finish(self, status: str = "FINISHED") -> bool:
        """Journal the run's end, wait up to the drain timeout for the store; True when all of it arrived.

        False leaves the run pending in its journal: `labclient sync` sends the rest.
        """
        drained = False
        try:
            end = self._append([{"type": "end", "status": status, "end_time": int(time.time() * 1000)}])
            self.journal.persist()
            if not self.offline and self._fatal is None:
                try:
                    drained = self._wait_acked(end, self.drain_timeout)
                except LabError as err:
                    self.last_error = err.one_line()
        except LabError as err:  # no room for the end event: the run stays pending, sync marks it ended
            self.last_error = err.one_line()
        finally:
            self._stop_sender()
            if drained:
                self.journal.retire(keep=self.keep_journal)
            else:
                self.journal.close()
        return drained

    def abandon(self) -> None:
        """Stop without an end event (tests of crashes; a process that must exit now)."""
        self._stop_sender()
        self.journal.close()

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and status: events logged and acknowledged, requests, failures, latencies."""
        shipped = self.shipper.stats if self.shipper else None
        return {
            "logged": self.journal.seq,
            "acked": self.acked_seq,
            "pending": self.journal.seq - self.acked_seq,
            "bound": bool(self.state.get("run_id")),
            "requests": shipped.requests if shipped else 0,
            "failures": shipped.failures if shipped else 0,
            "refused": shipped.refused if shipped else 0,
            "request_seconds": list(shipped.request_seconds) if shipped else [],
            "ack_lag_seconds": list(shipped.ack_lag_seconds) if shipped else [],
            "last_error": self.last_error,
        }

    # --- the sender thread ---------------------------------------------------------------------
    def _nudge(self, urgent: bool) -> None:
        with self._cond:
            self._wake = True
            self._urgent = self._urgent or urgent
            self._cond.notify_all()

    def _stop_sender(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._sender.join(timeout=5)  # a request in flight ends by its own timeout; the thread is a daemon

    def _send_loop(self) -> None:
        delay, next_try, last_ship, backlog = 0.0, 0.0, time.monotonic(), False
        while True:
            with self._cond:
                if not (self._wake or self._stop or backlog):
                    self._cond.wait(SEND_INTERVAL_S)
                wake, urgent, stopping, waited_for = self._wake, self._urgent, self._stop, self._waiters > 0
                self._wake = self._urgent = False
            self._persist()
            if stopping:
                return
            now = time.monotonic()
            due = urgent or waited_for or backlog or wake or now - last_ship >= SHIP_INTERVAL_S
            if self.shipper is None or self._fatal is not None or not due or (now < next_try and not urgent):
                continue
            last_ship, backlog = now, False  # after a failure, wait for the retry time, never spin
            try:
                backlog = self._ship()
                delay, self.last_error = 0.0, None
            except ServerUnreachable as err:
                delay = min(max(delay * 2, RETRY_FIRST_S), RETRY_MAX_S)
                next_try = time.monotonic() + delay * random.uniform(0.8, 1.2)
                self.last_error = err.one_line()
            except LabError as err:
                self._fatal = err
            except Exception as err:  # a bug of ours must not be silent: the next flush raises it
                self._fatal = TrackingError(f"sending failed: {type(err).__name__}: {err}")
            with self._cond:
                self._cond.notify_all()

    def _ship(self) -> bool:
        """One round of sending; True when more may wait (the next round, after its fsync, goes on at once)."""
        if not self.shipper.bound:
            self.shipper.bind()
        return bool(self.shipper.ship_pending(SHIP_BYTES_PER_ROUND))

    def _persist(self) -> None:
        try:
            self.journal.persist()
        except (OSError, ValueError):  # fsync failed or the journal was closed under us: the next write tells
            pass


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
