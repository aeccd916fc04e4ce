"""Every route of the server, in both of MLflow 3.17's layers and the lab's own, has an authorization
decision; a route without one fails this test (like MLflow's own test_authorization_coverage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labserver.permissions import Decision, decide
from labserver.registry import REGISTRY_READS_BY_POST, REGISTRY_WRITES

pytestmark = pytest.mark.slow  # real processes


@pytest.fixture(scope="module")
def routes():
    probe = Path(__file__).with_name("route_probe.py")
    result = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _decision(routes, layer, method, route):
    matches = [r["decision"] for r in routes if (r["layer"], r["method"], r["route"]) == (layer, method, route)]
    assert matches, f"{layer} {method} {route} is not served"
    return matches[0]


def test_every_route_has_an_authorization_decision(routes):
    layers = {r["layer"] for r in routes}
    assert layers == {"flask", "fastapi"}
    assert len(routes) > 300  # both layers were really enumerated
    undecided = [f"{r['layer']} {r['method']} {r['route']}" for r in routes if r["decision"] is None]
    assert not undecided, "routes without an authorization decision:\n" + "\n".join(undecided)


def test_key_routes_get_the_intended_decision(routes):
    assert _decision(routes, "flask", "POST", "/api/2.0/lab/runs/register") == "team-owner"
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/traces/link-to-run") == "admin-only"  # traces: read-only
    assert _decision(routes, "flask", "POST", "/api/3.0/mlflow/traces/search") == "mlflow"  # reading stays open
    assert _decision(routes, "flask", "GET", "/api/2.0/lab/whoami") == "authenticated"
    # the web leaderboard and its JSON twin: any team's token reads them
    assert _decision(routes, "flask", "GET", "/lab/leaderboard") == "authenticated"
    assert _decision(routes, "flask", "GET", "/api/2.0/lab/leaderboard") == "authenticated"
    assert _decision(routes, "flask", "GET", "/get-artifact") == "mlflow"  # the diary's images: basic-auth's read rule
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/experiments/create") == "admin-only"
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/experiments/update") == "admin-only"
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/runs/create") == "mlflow"
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/runs/log-batch") == "mlflow"
    assert _decision(routes, "flask", "GET", "/health") == "public"
    # chunked uploads: the team that may update the run (the views ask basic-auth), or the admin
    for method, route in (
        ("POST", "/api/2.0/lab/uploads/create"),
        ("PUT", "/api/2.0/lab/uploads/chunk"),
        ("POST", "/api/2.0/lab/uploads/complete"),
    ):
        assert _decision(routes, "flask", method, route) == "team-owner"
    # MLflow 3 logged models: basic-auth decides (the owner team writes, every team reads), and the lab's rules add
    # that a logged model's source run is a run of its own experiment (labserver/identity.py)
    for method, route in (
        ("POST", "/api/2.0/mlflow/logged-models"),
        ("GET", "/api/2.0/mlflow/logged-models/<model_id>"),
        ("PATCH", "/api/2.0/mlflow/logged-models/<model_id>"),  # finalize
        ("POST", "/api/2.0/mlflow/logged-models/<model_id>/params"),
        ("PATCH", "/api/2.0/mlflow/logged-models/<model_id>/tags"),
        ("DELETE", "/api/2.0/mlflow/logged-models/<model_id>"),
    ):
        assert _decision(routes, "flask", method, route) == "mlflow"
    assert _decision(routes, "flask", "POST", "/api/2.0/mlflow/logged-models/search") == "self-authorizing"
    # the Model Registry: every team reads it; its writes are basic-auth's and then the lab's registry rules
    for method, route in (
        ("GET", "/api/2.0/mlflow/registered-models/get"),
        ("GET", "/api/2.0/mlflow/registered-models/alias"),
        ("GET", "/api/2.0/mlflow/model-versions/get"),
        ("GET", "/api/2.0/mlflow/model-versions/get-download-uri"),
        ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions"),
        ("GET", "/model-versions/get-artifact"),
    ):
        assert _decision(routes, "flask", method, route) == "mlflow"
    assert _decision(routes, "flask", "GET", "/api/2.0/mlflow/registered-models/search") == "self-authorizing"
    assert _decision(routes, "flask", "GET", "/api/2.0/mlflow/model-versions/search") == "self-authorizing"
    for suffix, method in REGISTRY_WRITES:  # the table names only routes MLflow really serves
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            assert _decision(routes, "flask", method, prefix + suffix) == "team-registry"
    registry_writes = {
        (r["method"], r["route"].split("2.0", 1)[1])
        for r in routes
        if "/mlflow/registered-models/" in r["route"] or "/mlflow/model-versions/" in r["route"]
        if r["method"] != "GET" and r["route"].startswith(("/api/", "/ajax-api/"))
    }
    assert {(m, s) for s, m in REGISTRY_WRITES} | {(m, s) for s, m in REGISTRY_READS_BY_POST} == registry_writes
    # the artifact streaming routes are native FastAPI routes that never pass Flask's hooks
    artifact_routes = [r for r in routes if r["layer"] == "fastapi" and "mlflow-artifacts/artifacts" in r["route"]]
    assert artifact_routes and {r["decision"] for r in artifact_routes} == {"mlflow"}


def test_unknown_routes_are_undecided_and_therefore_refused():
    assert decide("/api/2.0/mlflow/some-future-route", "POST", has_mlflow_validator=False) is None
    assert decide("/api/2.0/mlflow/some-future-route", "POST", has_mlflow_validator=True) is Decision.MLFLOW
    assert decide("/ajax-api/2.0/mlflow/experiments/delete", "POST", has_mlflow_validator=True) is Decision.ADMIN_ONLY
    assert decide("/api/2.0/mlflow/users/current", "GET", has_mlflow_validator=True) is Decision.MLFLOW
    assert decide("/api/2.0/mlflow/users/create", "POST", has_mlflow_validator=True) is Decision.ADMIN_ONLY
