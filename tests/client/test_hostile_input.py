"""Hostile and broken input not covered elsewhere: fuzzed run references and config files (no traceback
ever reaches the user), a full disk while caching, and how tokens are compared.

Malicious pickles, hostile weight files and escaping artifact paths have their own tests
(models/test_loading.py, exchange/test_cache.py, exchange/test_push.py, tests/server/test_server_access.py).
"""

from __future__ import annotations

import errno
import json
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labclient.config import reset_settings
from labclient.errors import InvalidReference
from labclient.store import refs

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# what a shell can pass as an argument: any text but NUL and lone surrogates
ARGUMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80)
TEAMS = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)


def _clean_failure(result) -> None:
    """Either success, or exactly one `error:` line from a typed error: never a traceback, never our bug path."""
    assert "Traceback" not in result.output
    assert "set LAB_DEBUG=1 for the traceback" not in result.output, result.output
    if result.exit_code != 0:
        assert [line for line in result.output.splitlines() if line.startswith("error:")], result.output


# --- the run-reference parser -------------------------------------------------------------------------
@FUZZ
@given(ARGUMENT)
def test_parse_either_returns_a_reference_or_refuses_it(text):
    try:
        parsed = refs.parse(text)
    except InvalidReference as err:
        assert "is not a run reference" in str(err) and err.remedy
        return
    stripped = text.strip()
    if parsed.selector == "run_id":
        assert parsed.run_id == stripped and re.fullmatch(r"[0-9a-f]{32}", stripped)
    elif parsed.selector == "number":
        assert re.fullmatch(rf"{re.escape(parsed.team)}/run-0*{parsed.number}", stripped)
    else:
        assert parsed.selector in ("latest", "best") and stripped == f"{parsed.team}/{parsed.selector}"


@FUZZ
@given(TEAMS, st.integers(min_value=0, max_value=999_999_999), st.sampled_from(["", " ", "\t"]))
def test_parse_reads_back_every_well_formed_reference(team, number, padding):
    from labserver.names import RESERVED

    if team in RESERVED:
        return
    parsed = refs.parse(f"{padding}{team}/run-{number}{padding}")
    assert (parsed.team, parsed.number, parsed.selector) == (team, number, "number")


# slow: it fetches from the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
@pytest.mark.slow
@pytest.mark.usefixtures("lab")
@FUZZ
@given(st.one_of(ARGUMENT, st.builds(lambda team, tail: f"{team}/{tail}", TEAMS, ARGUMENT)))
def test_fetch_of_any_reference_never_shows_a_traceback(cli, text):
    if text.startswith("-"):
        text = f"x{text}"  # an option, not a reference: click's own usage error
    result = cli("fetch", text)
    _clean_failure(result)


# --- the config file ----------------------------------------------------------------------------------
SETTINGS_KEYS = [
    "home",
    "cache_dir",
    "tracking_uri",
    "team",
    "token",
    "data_dir",
    "mnist_mirrors",
    "debug",
    "offline",
    "drain_timeout",
    "journal_keep",
]
VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


def _toml(data: dict) -> str:
    # JSON's scalars, strings and arrays of them are valid TOML values
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in data.items())


def _status_with_config(cli, isolated_lab, text: bytes):
    path = isolated_lab / "config.toml"  # LAB_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    reset_settings()
    try:
        return cli("status")
    finally:
        reset_settings()


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_config_file(cli, isolated_lab, data):
    _clean_failure(_status_with_config(cli, isolated_lab, data))


@FUZZ
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(SETTINGS_KEYS), st.text(string.ascii_lowercase, min_size=1, max_size=8)),
        VALUES,
        max_size=6,
    )
)
def test_any_values_in_the_config_file(cli, isolated_lab, data):
    result = _status_with_config(cli, isolated_lab, _toml(data).encode())
    _clean_failure(result)
    if result.exit_code != 0:
        assert "config" in result.output or "LAB_" in result.output


@pytest.mark.parametrize(
    "line, setting",
    [
        (b'drain_timeout = "soon"', "LAB_DRAIN_TIMEOUT"),
        (b'data_dir = "a\\u0000b"', "LAB_DATA_DIR"),
        (b"team = 7", "LAB_TEAM"),
        (b"offline = [1]", "LAB_OFFLINE"),
    ],
)
def test_a_config_error_names_the_setting_and_the_remedy(cli, isolated_lab, line, setting):
    result = _status_with_config(cli, isolated_lab, line + b"\n")
    assert result.exit_code == 2
    assert f"invalid {setting}" in result.output and "fix the environment variable or config file" in result.output


# --- a full disk while caching --------------------------------------------------------------------------
# slow: it fetches from the store of trained runs (exchange_lab)
@pytest.mark.slow
def test_disk_full_while_caching_is_one_line_and_leaves_no_entry(cli, lab, isolated_lab, monkeypatch):
    from labclient.exchange import cache

    real = cache.atomic_write

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cache, "atomic_write", full)
    result = cli("fetch", "red/run-1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        "error: no space left on the device while writing" in result.output and "free some disk space" in result.output
    )
    assert cache.ModelCache.from_settings(_settings()).entries() == []  # no entry half made

    monkeypatch.setattr(cache, "atomic_write", real)
    assert cli("fetch", "red/run-1").exit_code == 0
    assert [entry.name for entry in cache.ModelCache.from_settings(_settings()).entries()] == ["red/run-1"]


def _settings():
    from labclient.config import get_settings

    return get_settings()


# --- tokens are checked in constant time --------------------------------------------------------------
def test_every_token_check_does_the_same_constant_time_work(monkeypatch):
    """A wrong token for a known team and any token for an unknown team cost one scrypt check each, and
    the comparison inside is hmac.compare_digest: neither timing nor answers tell which teams exist."""
    import inspect

    import mlflow.server.auth as basic_auth
    from werkzeug.security import check_password_hash, generate_password_hash

    from labserver import auth

    assert "compare_digest" in inspect.getsource(check_password_hash)

    class User:
        password_hash = generate_password_hash("lab_right_token_0123456789")

    class Store:
        def get_user(self, name):
            if name != "blue":
                raise LookupError(name)
            return User()

    checks = []

    def counting(stored, token):
        checks.append(stored)
        return check_password_hash(stored, token)

    monkeypatch.setattr(basic_auth, "store", Store())
    monkeypatch.setattr(auth, "check_password_hash", counting)
    assert auth.verify_token("blue", "lab_wrong_token_000000000") is False
    assert auth.verify_token("nobody", "lab_wrong_token_000000000") is False
    assert len(checks) == 2 and checks[1] == auth._DUMMY_HASH
    assert auth.verify_token("blue", "lab_right_token_0123456789") is True
