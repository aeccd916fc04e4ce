"""The front door: the outermost ASGI layer, which every request passes before it may cost the server anything.

In this order:
1. `/health` is answered here, so a health check never waits behind other requests.
2. The caller is authenticated (HTTP basic auth: the team and its token) before its body is read and before it
   takes a slot. The hash is checked on a worker thread, a few at a time, never on the event loop. Failed logins
   are counted per real peer address (labserver/throttle.py); `X-Forwarded-For` counts only when uvicorn was
   told to trust the proxy that sent it (`--trusted-proxies`). A store that cannot answer is a 503, never a 401.
3. A request bound for MLflow's store reads its whole body first, under time limits, and only then waits for
   one of the store's slots, so a slow client never holds one; each team may hold at most a fair share of them.
4. Artifact transfers stream: they take no store slot, but a team may run only a few at once, and their bodies
   must keep arriving.
The inner layers (basic-auth's hooks, the lab's rules) find the verified team in a header that only this
process can write (labserver/auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter, deque

from labserver import auth
from labserver.throttle import LoginThrottle

HEALTH_PATHS = ("/health",)
TRANSFER_PREFIXES = ("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")
MAX_BUFFERED_BODY = 16 * 1024 * 1024  # far above any MLflow REST body; artifacts stream instead
BODIES_READ_PER_TEAM = 8  # bodies being read into memory at once: at most 64 x 16 MiB in all
BODIES_READ_TOTAL = 64
BODY_IDLE_S = 15.0  # the longest pause between two pieces of a body
BODY_GRACE_S = 10.0  # a body may take this long, plus ...
BODY_MIN_BYTES_PER_S = 8 * 1024  # ... one second for every 8 KiB it carries (a 1 MB body: 2 minutes)
SLOT_WAIT_S = 30.0  # a request that found no slot within this long gets 503, which clients retry
HASH_CHECKS_AT_ONCE = 4  # scrypt checks in flight; cached tokens need none
TRANSFERS_PER_TEAM = 4
TRANSFERS_TOTAL = 32
PUBLIC_PER_ADDRESS = 16  # unauthenticated requests (the UI's static files) in flight per address


class SlowBody(Exception):
    """The client stopped sending its body, or sent it too slowly."""


class FairGate:
    """`slots` requests at once, at most `per_team` of them for one team; waiters are served first come,
    first served among the teams under their share."""

    def __init__(self, slots: int, per_team: int):
        self.slots, self.per_team = slots, per_team
        self.held: Counter[str] = Counter()
        self._waiting: deque[tuple[str, asyncio.Future]] = deque()

    def _free_for(self, team: str) -> bool:
        return sum(self.held.values()) < self.slots and self.held[team] < self.per_team

    async def acquire(self, team: str, timeout: float) -> bool:
        # a waiter is only ever queued while its own team is at its share or every slot is taken (release() serves
        # it the moment that changes), so a request that finds room for its team takes it at once
        if self._free_for(team):
            self.held[team] += 1
            return True
        future = asyncio.get_running_loop().create_future()
        entry = (team, future)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except asyncio.TimeoutError:
            return future.done() and not future.cancelled()  # granted just as the wait ran out: keep it
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)
            if not future.done():
                future.cancel()

    def release(self, team: str) -> None:
        self.held[team] -= 1
        if self.held[team] <= 0:
            del self.held[team]
        for entry in list(self._waiting):
            waiter_team, future = entry
            if future.done() or not self._free_for(waiter_team):
                continue
            self._waiting.remove(entry)
            self.held[waiter_team] += 1
            future.set_result(True)


class FrontDoor:
    def __init__(self, app, *, store_slots: int, throttle: LoginThrottle | None = None):
        self.app = app
        self.throttle = throttle or LoginThrottle()
        self.store_gate = FairGate(store_slots, max(1, store_slots // 3))
        self.reading_gate = FairGate(BODIES_READ_TOTAL, BODIES_READ_PER_TEAM)
        self.transfer_gate = FairGate(TRANSFERS_TOTAL, TRANSFERS_PER_TEAM)
        self.public_gate = FairGate(10_000, PUBLIC_PER_ADDRESS)
        self._hashing = asyncio.Semaphore(HASH_CHECKS_AT_ONCE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["headers"] = [(name, value) for name, value in scope["headers"] if name != auth.VERIFIED_HEADER.encode()]
        path = scope["path"]
        if path in HEALTH_PATHS:
            return await _respond(send, 200, "OK", "text/plain")
        address = (scope.get("client") or ("unknown", 0))[0]
        if _is_public(path):
            return await self._admit(self.public_gate, address, scope, receive, send, buffered=False)
        if self.throttle.blocked(address):
            return await _refuse(send, 429, "too many failed logins from this address; wait a minute and try again")
        credentials = _basic_credentials(scope)
        if credentials is None:
            return await _refuse(send, 401, "log in with your team name and token (HTTP basic auth)")
        try:
            async with self._hashing:
                accepted = await asyncio.to_thread(auth.verify_token, *credentials)
        except auth.StoreUnavailable as err:  # an outage is not a failed login: nothing is counted
            body, headers = auth.unavailable_answer(err)
            return await _respond(
                send,
                503,
                body,
                "application/json",
                [(name.lower().encode(), value.encode()) for name, value in headers.items()],
            )
        if not accepted:
            self.throttle.record_failure(address)
            return await _refuse(send, 401, "unknown team or wrong token")
        team = credentials[0]
        scope["headers"].append((auth.VERIFIED_HEADER.encode(), auth.verified_header_value(team).encode()))
        scope.setdefault("state", {})["lab_team"] = team
        if path.startswith(TRANSFER_PREFIXES):
            return await self._admit(self.transfer_gate, team, scope, receive, send, buffered=False)
        return await self._admit(self.store_gate, team, scope, receive, send, buffered=True)

    async def _admit(self, gate: FairGate, holder: str, scope, receive, send, *, buffered: bool):
        limits = BodyLimits(receive)
        if buffered and _has_body(scope):
            declared = _content_length(scope)
            if declared is not None and declared > MAX_BUFFERED_BODY:
                return await _respond(
                    send, 413, _error("request body too large", "send at most 16 MiB"), "application/json"
                )
            if not await self.reading_gate.acquire(holder, SLOT_WAIT_S):
                return await _busy(send)
            try:
                body = await limits.read_all(MAX_BUFFERED_BODY)
            except SlowBody as err:
                return await _respond(send, 408, _error(str(err), "send the body at a steady pace"), "application/json")
            finally:
                self.reading_gate.release(holder)
            receive = _replay(body, receive)
        elif _has_body(scope):
            receive = limits.receive
        if not await gate.acquire(holder, SLOT_WAIT_S):
            return await _busy(send)
        started = _ResponseWatch(send, limits)
        try:
            await self.app(scope, receive, started.send)
        except Exception:
            if not limits.too_slow:
                raise
        finally:
            gate.release(holder)
        if limits.too_slow and not started.started:
            await _respond(send, 408, _error(limits.too_slow, "send the body at a steady pace"), "application/json")


class BodyLimits:
    """Wraps `receive`: a body must keep arriving (BODY_IDLE_S between pieces) and at a minimum average pace.

    Only the time spent waiting for the client counts, not the time the application takes between reads. A client
    that is too slow is told the request ended (`http.disconnect`), so the application stops and cleans up."""

    def __init__(self, receive):
        self._receive = receive
        self.received = 0
        self.waited = 0.0
        self.too_slow: str | None = None

    async def receive(self):
        if self.too_slow:
            return {"type": "http.disconnect"}
        allowed = BODY_GRACE_S + self.received / BODY_MIN_BYTES_PER_S - self.waited
        timeout = max(0.0, min(BODY_IDLE_S, allowed))
        started = time.monotonic()
        try:
            message = await asyncio.wait_for(self._receive(), timeout)
        except asyncio.TimeoutError:
            self.waited += time.monotonic() - started
            self.too_slow = (
                f"the request body stopped arriving ({self.received:,} bytes in {self.waited:.0f} s)"
                if timeout >= BODY_IDLE_S
                else f"the request body arrived too slowly ({self.received:,} bytes in {self.waited:.0f} s)"
            )
            return {"type": "http.disconnect"}
        self.waited += time.monotonic() - started
        self.received += len(message.get("body", b""))
        return message

    async def read_all(self, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise SlowBody(self.too_slow or "the client went away before its body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise SlowBody(f"the request body is larger than {limit:,} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ResponseWatch:
    """Passes the application's response on, unless its client was cut off for a slow body before it began: then
    the application's own answer to the disconnect (often a 500) is dropped, and the front door answers 408."""

    def __init__(self, send, limits: BodyLimits):
        self._send, self._limits = send, limits
        self.started = False

    async def send(self, message):
        if not self.started and self._limits.too_slow:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client to go away, as the server would tell

    return replayed


def _is_public(path: str) -> bool:
    from mlflow.server.auth import is_unprotected_route

    return is_unprotected_route(path)


def _basic_credentials(scope) -> tuple[str, str] | None:
    header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        username, separator, token = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (username, token) if separator and username and token else None


def _has_body(scope) -> bool:
    headers = dict(scope["headers"])
    return bool(headers.get(b"transfer-encoding")) or (_content_length(scope) or 0) > 0


def _content_length(scope) -> int | None:
    value = dict(scope["headers"]).get(b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _busy(send):
    await _respond(
        send,
        503,
        json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "the server is busy; try again shortly"}),
        "application/json",
    )


def _error(message: str, remedy: str) -> str:
    return json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": f"{message} ({remedy})"})


async def _refuse(send, status: int, message: str):
    headers = [(b"www-authenticate", b'Basic realm="lab"')] if status == 401 else []
    await _respond(send, status, message, "text/plain", headers)


async def _respond(send, status: int, body: str, content_type: str, headers: list | None = None):
    """An answer of the front door's own. A refusal also closes the connection: the client may still be sending a
    body nobody will read, and must not keep the socket by trickling it."""
    payload = body.encode()
    closing = [(b"connection", b"close")] if status >= 400 else []
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(payload)).encode()),
                *closing,
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
