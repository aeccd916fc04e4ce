"""The recorder: the one object every log call goes through (CLI, Python API and trainers alike).

A call writes its events to the run's journal on local disk (labclient/journal.py) and returns; it
never waits for the network. A thread fsyncs the journal every PERSIST_INTERVAL_S (the most a crash of
the machine can lose). A sender process (labclient/tracking/sender_process.py) reads the journal and sends it to
the tracking store in batches, retrying with capped exponential backoff while the store is away; it
is a process, not a thread, so its encoding and HTTP never take the training loop's GIL. Whatever it
has not delivered when the run ends stays in the journal for `labclient sync`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labclient import errors
from labclient.errors import ConfigError, LabError, TrackingError
from labclient.tracking.sender import REQUEST_TIMES_KEPT
from labserver.names import is_server_owned_tag
from labserver.tags import RUN_NAME_TAG

PERSIST_INTERVAL_S = 0.2
SENDER_COMMAND = [sys.executable, "-m", "labclient.tracking.sender_process"]
SENDER_EXIT_S = 5.0  # after the drain: a request still in flight ends by its own timeout, or is cut


class Recorder:
    """Journals params, metrics, tags and artifacts of one run; its sender process sends them."""

    def __init__(
        self,
        journal,
        target=None,
        *,
        drain_timeout: float = 30.0,
        keep_journal: bool = False,
        sender: SenderProcess | None = None,
        on_notice: Callable[[str], None] | None = None,
    ):
        self.journal = journal
        self.on_notice = on_notice  # told at once, on the sender's reader thread: refusals, and why sending stopped
        self.drain_timeout = drain_timeout
        self.keep_journal = keep_journal
        self.state: dict[str, Any] = journal.state()  # the run on the store: experiment id, number, run id
        self.acked_seq = journal.acked()[0]
        self.warnings: list[str] = []
        self.last_error: str | None = None  # the latest reason a send failed, while retrying
        self._fatal: LabError | None = None
        self._counts = {"requests": 0, "failures": 0, "refused": 0}
        self._request_seconds: collections.deque[float] = collections.deque(maxlen=REQUEST_TIMES_KEPT)
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._persister = threading.Thread(
            target=self._persist_loop, name=f"lab-fsync-{journal.local_id[-8:]}", daemon=True
        )
        self._persister.start()
        self._sender = None  # an offline run: sent by `labclient sync` only
        if target is not None:
            sender = sender or SenderProcess.get(target)
            self._sender = sender.attach(journal, self._on_message, self._on_sender_exit)
        elif sender is not None:
            sender.release()

    # --- the logging API -------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        self._append([{"type": "param", "key": str(key), "value": _as_text(value)} for key, value in params.items()])

    def log_metric(self, key: str, value: float, step: int = 0, timestamp_ms: int | None = None) -> None:
        timestamp = int(timestamp_ms or time.time() * 1000)
        self._append(
            [{"type": "metric", "key": str(key), "value": float(value), "timestamp": timestamp, "step": int(step)}]
        )

    def log_metric_steps(self, key: str, values: list[float], first_step: int = 0, every: int = 1) -> None:
        """values[i] at step first_step + i * every, journalled with one write (a trainer's buffered step costs)."""
        now, key = int(time.time() * 1000), str(key)
        self._append(
            [
                {
                    "type": "metric",
                    "key": key,
                    "value": float(value),
                    "timestamp": now,
                    "step": first_step + index * every,
                }
                for index, value in enumerate(values)
            ]
        )

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._append(
            [
                {"type": "metric", "key": str(key), "value": float(value), "timestamp": now, "step": int(step)}
                for key, value in metrics.items()
            ]
        )

    def set_tags(self, tags: dict[str, Any]) -> None:
        check_tags(tags)
        self._append([{"type": "tag", "key": str(key), "value": _as_text(value)} for key, value in tags.items()])

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> tuple[str, int]:
        """Copies the file into the journal at once (the caller may delete it); returns its sha256 and size."""
        event = self.journal.add_file(Path(local_path), artifact_path)
        self._append([event])
        return event["sha256"], event["size"]

    def log_inputs(self, datasets: list[dict]) -> None:
        """Datasets the run used (name, digest, source_type, source, context, optional profile)."""
        self._append([{"type": "inputs", "datasets": datasets}])

    def draft_diary(self, note: str | None, architecture: str | None, plots: list[str]) -> None:
        """Draft the run's dev-diary entry on the store, once everything logged before has arrived."""
        self._append([{"type": "draft", "note": note, "architecture": architecture, "plots": plots}])

    def _append(self, events: list[dict]) -> int:
        return self.journal.append(events) if events else self.journal.seq

    # --- waiting for the store ----------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        return self._sender is None

    @property
    def sender_pid(self) -> int | None:
        """The process that sends this run (None offline)."""
        return self._sender.process.pid if self._sender else None

    @property
    def problem(self) -> str | None:
        """Why sending stopped (a token refused) or is being retried (no answer), if it did or is."""
        return self._fatal.one_line() if self._fatal is not None else self.last_error

    def flush(self, timeout: float | None = None) -> None:
        """Block until the store acknowledged everything logged so far (at most `timeout`, default: drain timeout)."""
        if self.offline:
            raise TrackingError("this run is offline: nothing is sent before `labclient sync`")
        timeout = self.drain_timeout if timeout is None else timeout
        if not self._wait_acked(self.journal.seq, timeout):
            raise TrackingError(
                f"the tracking store has not acknowledged everything within {timeout:.0f}s"
                + (f" ({self.last_error})" if self.last_error else ""),
                "nothing is lost: it stays in the journal, and `labclient sync` sends it",
            )

    def _wait_acked(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._sender.command("send")
        with self._cond:
            while self.acked_seq < seq and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, PERSIST_INTERVAL_S))
        if self.acked_seq < seq:
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
            self._shut_down(SENDER_EXIT_S)
            if drained:
                self.journal.retire(keep=self.keep_journal)
            else:
                self.journal.close()
        return drained

    def abandon(self) -> None:
        """Stop at once without an end event, as a crash would (tests of crashes; a process that must exit now)."""
        self._shut_down(0)
        self.journal.close()

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and status: events logged and acknowledged, requests, failures, latencies."""
        with self._cond:
            return {
                "logged": self.journal.seq,
                "acked": self.acked_seq,
                "pending": self.journal.seq - self.acked_seq,
                "bound": bool(self.state.get("run_id")),
                **self._counts,
                "request_seconds": list(self._request_seconds),
                "last_error": self.last_error,
            }

    # --- the fsync thread and the sender's reports --------------------------------------------------
    def _persist_loop(self) -> None:
        while not self._stopped.wait(PERSIST_INTERVAL_S):
            try:
                self.journal.persist()
            except (OSError, ValueError):  # fsync failed or the journal was closed under us: the next write tells
                pass

    def _shut_down(self, grace: float) -> None:
        self._stopped.set()
        self._persister.join(timeout=5)
        if self._sender is not None and grace > 0:
            self._sender.release(grace)
        elif self._sender is not None:
            self._sender.stop()  # as if this process had died

    def _on_message(self, message: dict[str, Any]) -> None:
        notices = list(message.get("warnings", []))
        with self._cond:
            self.acked_seq = max(self.acked_seq, int(message.get("acked", 0)))
            self.state = message.get("state", self.state)
            self.warnings.extend(message.get("warnings", []))
            self.last_error = message.get("error", self.last_error)
            self._counts.update({key: message[key] for key in self._counts if key in message})
            self._request_seconds.extend(message.get("request_seconds", []))
            if message.get("fatal"):
                self._fatal = _rebuild(message["fatal"])
                notices.append(
                    f"sending stopped: {self._fatal.one_line()}; training goes on, and the journal keeps "
                    "everything for `labclient sync`"
                )
            self._cond.notify_all()
        self._notice(notices)

    def _on_sender_exit(self, why: str) -> None:
        with self._cond:
            stopped = self._fatal is None
            if stopped:
                self._fatal = TrackingError(
                    why, "nothing is lost: it stays in the journal, and `labclient sync` sends it"
                )
            self._cond.notify_all()
        if stopped:
            self._notice([self._fatal.one_line()])

    def _notice(self, lines: list[str]) -> None:
        for line in lines:
            if self.on_notice is not None:
                try:
                    self.on_notice(line)
                except Exception:  # a broken terminal must not stop the reports that keep the run's state
                    pass


class SenderProcess:
    """The training process's end of the sender process (tracking/sender_process.py): starts it, sends it commands,
    reads its reports.

    Made for a target, which it connects to at once; `attach` hands it a run's journal and `release` takes
    it back when the run ends. Released senders wait, connected, for the next run of this process to the
    same target (`get`), so a notebook or a test making many runs pays the start-up (for a local store,
    MLflow's imports and schema check: about 2 s) once; `labclient train` starts one before loading the
    data, so that it overlaps work the run does anyway.
    """

    _idle: dict[tuple, list[SenderProcess]] = {}
    _idle_lock = threading.Lock()

    def __init__(self, target):
        self.key = _pool_key(target)
        self._pooled = self._stopping = False
        self._callbacks: tuple[Callable, Callable] | None = None
        self._lock = threading.Lock()
        self._detached = threading.Event()
        self._errors: collections.deque[str] = collections.deque(maxlen=20)
        debug = bool(os.environ.get("LAB_DEBUG"))
        self.process = subprocess.Popen(
            SENDER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            close_fds=True,
            start_new_session=True,
        )  # Ctrl-C in a terminal is for the training process, which then stops this one
        if not debug:
            threading.Thread(
                target=self._errors.extend, args=(self.process.stderr,), name="lab-sender-stderr", daemon=True
            ).start()
        threading.Thread(target=self._read, name="lab-sender-reports", daemon=True).start()
        self.command(json.dumps({"target": {**dataclasses.asdict(target), "artifact_root": str(target.artifact_root)}}))

    @classmethod
    def get(cls, target) -> SenderProcess:
        """An idle sender already connected to this target, or a new one."""
        with cls._idle_lock:
            idle = cls._idle.get(_pool_key(target), [])
            while idle:
                sender = idle.pop()
                sender._pooled = False
                if sender.process.poll() is None:
                    return sender
        return cls(target)

    @classmethod
    def stop_idle(cls, grace: float = 1.0) -> None:
        """End every idle sender of this process (they end by themselves when it exits); one that has not ended
        `grace` seconds after its stdin closed is killed. Idle senders hold no run, so nothing is lost."""
        with cls._idle_lock:
            idle = [sender for senders in cls._idle.values() for sender in senders]
            cls._idle.clear()
        for sender in idle:
            sender.stop(grace=grace)

    def attach(self, journal, on_message: Callable[[dict], None], on_exit: Callable[[str], None]) -> SenderProcess:
        with self._lock:
            self._callbacks = (on_message, on_exit)
            self._detached.clear()
        self.command(json.dumps({"journal": str(journal.root)}))
        return self

    def release(self, grace: float = SENDER_EXIT_S) -> None:
        """Detach it from its run (after the request in flight) and keep it for the next; cut it off if that
        takes longer than `grace` seconds."""
        if self._callbacks is not None:
            self.command("done")
            if not self._detached.wait(grace):
                self.stop()
                return
            with self._lock:
                self._callbacks = None
        with self._idle_lock:
            if self.process.poll() is None and not (self._stopping or self._pooled):
                self._idle.setdefault(self.key, []).append(self)
                self._pooled = True

    def stop(self, grace: float = 0) -> None:
        """Close its stdin, which ends it; kill it if it has not ended after `grace` seconds."""
        self._stopping = True
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            if grace <= 0:
                raise subprocess.TimeoutExpired(self.process.args, 0)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def command(self, line: str) -> None:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # it exited: the reader tells the recorder why
            pass

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("detached"):
                self._detached.set()
                continue
            with self._lock:
                callbacks = self._callbacks
            if callbacks:
                callbacks[0](message)
        code = self.process.wait()
        self._detached.set()
        with self._lock:
            callbacks = self._callbacks
        if callbacks and not self._stopping:
            last = next((line.strip() for line in reversed(self._errors) if line.strip()), "no message")
            callbacks[1](f"the sender process stopped (exit code {code}): {last[:300]}")


def _pool_key(target) -> tuple:
    return (tuple(SENDER_COMMAND), target.uri, target.kind, str(target.artifact_root), target.team, target.token)


def _rebuild(fatal: dict[str, Any]) -> LabError:
    """The sender's fatal error as the same type in this process, so callers can catch it as usual."""
    kind = getattr(errors, str(fatal.get("type")), None)
    kind = kind if isinstance(kind, type) and issubclass(kind, LabError) else TrackingError
    try:
        return kind(fatal.get("message", ""), fatal.get("remedy"))
    except TypeError:
        return TrackingError(fatal.get("message", ""), fatal.get("remedy"))


def check_tags(tags: dict[str, Any]) -> None:
    """A run's team, number and name are the server's to write: refused here, before anything is journalled."""
    for key in tags:
        if is_server_owned_tag(str(key)) or str(key) == RUN_NAME_TAG:
            raise ConfigError(
                f"the tag {key} is written by the server only",
                "the server records each run's team, number and name; use a tag of your own",
            )


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
