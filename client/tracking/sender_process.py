"""The sender process: sends one run's journal to its tracking store while the run trains.

It runs beside the training process (`python -m labclient.tracking.sender_process`, started by the recorder), so
encoding, HTTP and the store's client code never take the training thread's GIL: in one process each
sending round cost the training loop 3-4x its own CPU time (bench/FINDINGS.md).

Its stdin carries the target as a JSON line (it connects at once), then a run's journal folder as a
JSON line, `send` lines (someone waits: send everything now, even during a retry backoff) and `done`
(the run ended: it answers `detached` and waits for the next run of the same process and target).
End of file, which is also what the death of the training process looks like, means exit now. Its
stdout carries one JSON line per change: the acknowledged sequence number, the run on the store, new
warnings, the latest transient error, a fatal error, request timings. Anything else it prints goes to
stderr, whose last lines the training process quotes if this process dies.
"""

from __future__ import annotations

import os

if hasattr(os, "nice"):
    os.nice(10)  # background work: where it has to share a core with the training loop, the loop goes first

import json
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from labclient.errors import LabError, ServerUnreachable, TrackingError

FSYNC_INTERVAL_S = 0.2  # also how often it looks at the journal's size
SEND_INTERVAL_S = 2.0  # send at least this often while nobody waits
SEND_AFTER_BYTES = 100_000  # or as soon as about 1,000 events wait (one full log_batch)
SEND_BYTES_PER_ROUND = 1 << 17  # about 1,200 events a round, then report and look at the commands again
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0


class Orders:
    """What the training process asked of one run: its journal, `send` now, `done`."""

    def __init__(self, journal: str):
        self.journal = journal
        self.urgent = self.done = False


class Commands:
    """Read off stdin by a thread of its own. Lines come in order, so a `send` or `done` is for the run
    whose journal came last."""

    def __init__(self, stream: TextIO):
        self.cond = threading.Condition()
        self.gone = False
        self._waiting: list[Orders] = []
        self._latest: Orders | None = None
        threading.Thread(target=self._read, args=(stream,), name="lab-commands", daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            with self.cond:
                if line.startswith("{"):
                    self._latest = Orders(json.loads(line)["journal"])
                    self._waiting.append(self._latest)
                elif self._latest is not None and line.strip() == "done":
                    self._latest.done = True
                elif self._latest is not None:
                    self._latest.urgent = True
                self.cond.notify_all()
        with self.cond:  # end of file: the training process closed the pipe, or died
            self.gone = True
            self.cond.notify_all()

    def next_run(self) -> Orders | None:
        """Block until the next run is handed over; None when the training process is gone."""
        with self.cond:
            while not (self._waiting or self.gone):
                self.cond.wait()
            return None if self.gone else self._waiting.pop(0)

    def wait(self, orders: Orders, seconds: float) -> tuple[bool, bool]:
        """Sleep until a command or the timeout; returns (urgent, over) and clears urgent. Over: the run
        is done, or the training process is gone."""
        with self.cond:
            if not (orders.urgent or orders.done or self.gone):
                self.cond.wait(seconds)
            urgent, orders.urgent = orders.urgent, False
            return urgent, orders.done or self.gone


class SenderLoop:
    def __init__(self, sender, channel: TextIO, commands: Commands, orders: Orders):
        self.sender = sender
        self.channel = channel
        self.commands = commands
        self.orders = orders
        self.events_fd = os.open(sender.journal.events_path, os.O_RDONLY)
        self._reported_state: dict[str, Any] | None = None
        self._warned = self._timed = 0  # warnings and request timings already reported

    def run(self) -> None:
        delay, next_try, last_send, backlog, caught_up, failed = 0.0, 0.0, time.monotonic(), False, True, False
        while True:
            urgent, over = self.commands.wait(self.orders, 0 if backlog else FSYNC_INTERVAL_S)
            if over:
                os.close(self.events_fd)
                return
            if failed:  # nothing more for this run: wait to be detached
                continue
            caught_up = caught_up and not urgent
            now = time.monotonic()
            due = (
                not caught_up
                or backlog
                or now - last_send >= SEND_INTERVAL_S
                or self._unsent_bytes() >= SEND_AFTER_BYTES
            )
            if not due or (now < next_try and not urgent):
                continue
            last_send = now  # after a failure, wait for the retry time, never spin
            try:
                backlog = self._send()
                caught_up = caught_up or not backlog
                delay, error = 0.0, None
            except ServerUnreachable as err:
                backlog = False
                delay = min(max(delay * 2, RETRY_FIRST_S), RETRY_MAX_S)
                next_try = time.monotonic() + delay * random.uniform(0.8, 1.2)
                error = err.one_line()
            except LabError as err:
                self.report(error=None, fatal=_describe(err))
                backlog, failed = False, True
                continue
            except Exception as err:  # a bug of ours must not be silent: the next flush raises it
                self.report(error=None, fatal=_describe(TrackingError(f"sending failed: {type(err).__name__}: {err}")))
                backlog, failed = False, True
                continue
            self.report(error=error)

    def _unsent_bytes(self) -> int:
        try:
            return os.fstat(self.events_fd).st_size - self.sender.acked_offset
        except OSError:
            return 0

    def _send(self) -> bool:
        """One round: fsync what will be sent (a sent event must never be missing from the journal
        afterwards), then send about SEND_BYTES_PER_ROUND; True when more may wait."""
        os.fsync(self.events_fd)
        if not self.sender.bound:
            self.sender.bind()
        return bool(self.sender.send_pending(SEND_BYTES_PER_ROUND))

    def report(self, error: str | None, fatal: dict | None = None) -> None:
        stats = self.sender.stats
        message = {
            "acked": self.sender.acked_seq,
            "error": error,
            "requests": stats.requests,
            "failures": stats.failures,
            "refused": stats.refused,
        }
        if self.sender.state != self._reported_state:
            message["state"] = self._reported_state = dict(self.sender.state)
        if len(self.sender.warnings) > self._warned:
            message["warnings"] = self.sender.warnings[self._warned :]
            self._warned = len(self.sender.warnings)
        new = min(stats.requests - self._timed, len(stats.request_seconds))
        if new > 0:
            message["request_seconds"] = [stats.request_seconds[-index] for index in range(new, 0, -1)]
        self._timed = stats.requests
        if fatal:
            message["fatal"] = fatal
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()


def _describe(err: LabError) -> dict[str, str | None]:
    return {"type": type(err).__name__, "message": str(err), "remedy": err.remedy}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the training process: it ends the run, then stops us
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints must not corrupt the channel
    from labclient.store.target import Target
    from labclient.store.transport import LazyTransport
    from labclient.tracking.journal import Journal
    from labclient.tracking.sender import Sender

    ordered = _next_order("target")
    if ordered is None:
        return 0
    transport = LazyTransport(Target(**{**ordered, "artifact_root": Path(ordered["artifact_root"])}))
    try:  # connect (imports, a local store's schema check) while the run is still being set up
        transport.experiment_id  # noqa: B018  (the attribute opens the transport)
    except ServerUnreachable:
        pass  # a store that is down: every round tries to open it again, as it retries any outage
    except LabError as err:
        channel.write(json.dumps({"fatal": _describe(err)}) + "\n")
        channel.flush()
        return 0
    commands = Commands(sys.stdin)
    while (orders := commands.next_run()) is not None:  # one run after another, on the same connection
        SenderLoop(Sender(Journal.open(Path(orders.journal)), transport), channel, commands, orders).run()
        channel.write(json.dumps({"detached": True}) + "\n")
        channel.flush()
    return 0


def _next_order(key: str):
    line = sys.stdin.readline()
    return json.loads(line)[key] if line.strip() else None


if __name__ == "__main__":
    sys.exit(main())
