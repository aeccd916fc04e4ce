"""The sender process reports a fatal error as a small dict; the recorder rebuilds it as the same type, so a
caller catches a JournalError or a PermissionDenied from the sender as it would one raised in its own process."""

from __future__ import annotations

import pytest

from labclient import errors
from labclient.tracking.recorder import _rebuild
from labclient.tracking.sender_process import _describe


@pytest.mark.parametrize(
    "error",
    [
        errors.JournalError("cannot write events.jsonl", "check the disk"),
        errors.JournalVanished("gone", None),
        errors.PermissionDenied("the server refused log-batch", "log in as the run's team"),
        errors.StoreFull("the disk is full", "free some space"),
        errors.TooManyRequests("throttled", "wait"),
    ],
)
def test_the_senders_errors_keep_their_type_across_the_process_boundary(error):
    rebuilt = _rebuild(_describe(error))
    assert type(rebuilt) is type(error)
    assert rebuilt.one_line() == error.one_line()


def test_an_unknown_or_hostile_type_name_becomes_a_tracking_error():
    for name in ("NoSuchError", "Exception", "SystemExit", "__class__"):
        rebuilt = _rebuild({"type": name, "message": "m", "remedy": None})
        assert type(rebuilt) is errors.TrackingError


def test_every_labclient_error_lives_in_errors_py():
    import ast
    from pathlib import Path

    client = Path(errors.__file__).parent
    elsewhere = []
    for path in client.rglob("*.py"):
        if path.name == "errors.py" and path.parent == client:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", "").endswith(("Error", "Refused", "Denied", "Unreachable")) for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(client)}:{node.name}")
    assert elsewhere == []
