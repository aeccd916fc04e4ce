"""config.py: where settings come from, and the config file `labclient login` writes."""

from __future__ import annotations

import os
import stat

import pytest

from labclient.config import config_file_path, get_settings, reset_settings, write_config_file
from labclient.errors import ConfigError


def test_the_config_file_is_private_and_merged(isolated_lab):
    path = write_config_file({"tracking_uri": "http://lab:5000", "team": "blue", "token": "t0ken"})
    assert path == config_file_path() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_config_file({"team": "red"})  # merged: the server and token stay
    settings = get_settings()
    assert (settings.tracking_uri, settings.team, settings.token.get_secret_value()) == (
        "http://lab:5000",
        "red",
        "t0ken",
    )


def test_the_environment_overrides_the_file(isolated_lab, monkeypatch):
    write_config_file({"team": "blue"})
    monkeypatch.setenv("LAB_TEAM", "green")
    reset_settings()
    assert get_settings().team == "green"


def test_a_broken_config_file_is_one_line_with_a_remedy(isolated_lab):
    config_file_path().parent.mkdir(parents=True, exist_ok=True)
    config_file_path().write_text("team = [unclosed\n")
    reset_settings()
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert "\n" not in caught.value.one_line() and "labclient login" in caught.value.one_line()


def test_values_that_would_need_escaping_survive_the_round_trip(isolated_lab):
    write_config_file({"token": 'a"b\\c'})
    reset_settings()
    assert get_settings().token.get_secret_value() == 'a"b\\c'
