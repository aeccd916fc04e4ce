"""The adversarial suite's server: a real labserver on loopback with teams red, blue and mallory."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    from tests.servers import sqlite_lab_server

    server = sqlite_lab_server(tmp_path_factory.mktemp("hostile"), teams=("red", "blue", "mallory"))
    yield server
    server.stop()
