"""Failed logins per client address, with bounded memory.

One throttle serves both route layers (MLflow's Flask routes and its native FastAPI routes): the front door
(labserver/frontdoor.py) counts every failed login by the real peer address before anything else runs. An
address that failed FAILURES_ALLOWED times within FAILURE_WINDOW_S gets 429 until its oldest failure ages out.
At most MAX_ADDRESSES addresses are remembered; the least recently seen is forgotten first, so a flood of
addresses costs bounded memory (and forgetting only ever lets an address try again sooner).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

FAILURES_ALLOWED = 10
FAILURE_WINDOW_S = 60.0
MAX_ADDRESSES = 10_000


class LoginThrottle:
    def __init__(
        self,
        allowed: int = FAILURES_ALLOWED,
        window_s: float = FAILURE_WINDOW_S,
        max_addresses: int = MAX_ADDRESSES,
        clock=time.monotonic,
    ):
        self.allowed = allowed
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        """True while `address` has used up its failed logins for the window."""
        with self._lock:
            window = self._recent(address)
            return window is not None and len(window) >= self.allowed

    def record_failure(self, address: str) -> None:
        with self._lock:
            window = self._recent(address)
            if window is None:
                window = self._failures[address] = deque(maxlen=self.allowed)
            window.append(self._clock())
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def remembered(self) -> int:
        with self._lock:
            return len(self._failures)

    def _recent(self, address: str) -> deque[float] | None:
        window = self._failures.get(address)
        if window is None:
            return None
        now = self._clock()
        while window and now - window[0] > self.window_s:
            window.popleft()
        if not window:
            del self._failures[address]
            return None
        return window
