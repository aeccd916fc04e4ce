"""One line of a run journal's events.jsonl, how it is told apart from a damaged one, and the run's start
(meta.json), whose copy is the first line.

    {"seq":12,"type":"metric","key":"cost","value":0.25,"timestamp":1700000000000,"step":3,"crc":2415312345}

A line is one JSON object ending in a "crc" field: the CRC-32 (zlib's) of the line's bytes before
`,"crc":`. The field is last, and `,"crc":` cannot occur inside a JSON string (a quote there is always
escaped), so the last occurrence is the field. A bit flipped anywhere, a line spliced from two writes,
or zeros left by a crash of the machine fail the check and the line is treated as unreadable. Journals
of format labjournal/1, written before the checksum, are read with JSON's own check only.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
import zlib
from pathlib import Path
from typing import Any

FORMAT = "labjournal/2"
LEGACY_FORMATS = ("labjournal/1",)
_CRC = b',"crc":'
_META_KEYS = ("local_id", "local_name", "team", "uri", "created_ms")

_METRIC_KEYS: dict[str, str] = {}  # JSON-escaped metric names, so the hot path formats a line without json.dumps


def _body(seq: int, event: dict[str, Any]) -> str:
    """The line up to its checksum field: the JSON object without its closing brace. Metrics, by far the
    most frequent, are formatted directly (5x faster than json.dumps)."""
    if event["type"] == "metric":
        key = _METRIC_KEYS.get(event["key"])
        if key is None:
            key = json.dumps(event["key"])
            if len(_METRIC_KEYS) < 10_000:
                _METRIC_KEYS[event["key"]] = key
        value = event["value"]
        text = repr(value) if math.isfinite(value) else json.dumps(value)  # repr of a finite float is valid JSON
        return (
            f'{{"seq":{seq},"type":"metric","key":{key},"value":{text},'
            f'"timestamp":{event["timestamp"]},"step":{event["step"]}'
        )
    return json.dumps({"seq": seq, **event}, separators=(",", ":"))[:-1]


def encode_line(seq: int, event: dict[str, Any]) -> bytes:
    """One journal line with its checksum and newline, as written to disk."""
    body = _body(seq, event)
    return f'{body},"crc":{zlib.crc32(body.encode("utf-8"))}}}\n'.encode()  # one more encode beats joining bytes


def _encode(seq: int, event: dict[str, Any]) -> str:
    """The line as text, without its newline (tests read it back)."""
    return encode_line(seq, event)[:-1].decode("utf-8")


def decode_line(line: bytes, checked: bool = True) -> dict[str, Any] | None:
    """The event of one line (without its newline), or None when the line is damaged. `checked`: the
    journal's format has checksums, so a line without a valid one is damaged too."""
    line = line.rstrip(b"\r")
    at = line.rfind(_CRC)
    if at >= 0:
        try:
            crc = int(line[at + len(_CRC) : -1])
        except ValueError:
            return None
        if not line.endswith(b"}") or zlib.crc32(line[:at]) != crc:
            return None
    elif checked:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int) or not isinstance(event.get("type"), str):
        return None
    event.pop("crc", None)
    return event


# --- the run's start ---------------------------------------------------------------------------------
def new_meta(team: str, uri: str, kind: str, tags: dict[str, Any], offline: bool) -> dict[str, Any]:
    suffix = secrets.token_hex(4)
    started_ns = time.time_ns()
    return {
        "format": FORMAT,
        "local_id": f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(started_ns / 1e9))}-{suffix}",
        "local_name": f"{team}/local-{suffix}",
        "team": team,
        "uri": uri,
        "kind": kind,
        "offline": offline,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "created_ms": started_ns // 1_000_000,
        "started_ns": started_ns,  # orders runs started within one millisecond too (the run numbers follow it)
        "tags": {str(key): str(value) for key, value in (tags or {}).items()},
    }


def start_order(meta: dict[str, Any]) -> int:
    """When the run started, in ns; journals written before `started_ns` existed have milliseconds."""
    started = meta.get("started_ns")
    return started if isinstance(started, int) else int(meta.get("created_ms") or 0) * 1_000_000


def valid_meta(meta: Any) -> bool:
    return isinstance(meta, dict) and all(key in meta for key in _META_KEYS) and isinstance(meta.get("tags", {}), dict)


def meta_from_start_event(events_path: Path) -> dict[str, Any] | None:
    """meta.json as the start event (event 0) recorded it, if that line is whole."""
    try:
        with open(events_path, "rb") as handle:
            first = handle.readline(1 << 20)
    except OSError:
        return None
    event = decode_line(first.rstrip(b"\n"), checked=False)  # its own checksum, when it has one, is checked
    if event is None or event["type"] != "start" or event["seq"] != 0 or not valid_meta(event.get("meta")):
        return None
    return event["meta"]
