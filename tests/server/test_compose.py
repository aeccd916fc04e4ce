"""docker-compose.yml, validated by a real Compose parser (no Docker engine runs here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: run scripts/test-prerequisites (Debian's docker-compose package)")
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    result = subprocess.run(
        [
            binary,
            "--project-directory",
            str(REPO),
            "-f",
            str(REPO / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services_volumes_and_order(resolved):
    services = resolved["services"]
    assert set(services) == {"postgres", "minio", "create-bucket", "migrate", "labserver"}
    assert {"pgdata", "miniodata"} <= set(resolved["volumes"])
    assert services["labserver"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["labserver"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["labserver", "db", "upgrade"]
    assert "healthcheck" in services["labserver"] and "healthcheck" in services["postgres"]


def test_credentials_come_from_the_env_file(resolved):
    server = resolved["services"]["labserver"]
    environment = server["environment"]
    assert environment["LAB_SERVER_BACKEND_STORE_URI"].startswith(
        "postgresql+psycopg://lab:change-me-postgres@postgres:5432/lab"
    )
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "--artifacts-destination=s3://lab-artifacts/artifacts" in server["command"]
    published = server["ports"][0]
    assert str(published.get("published", published)).startswith("5000") or "5000" in str(published)
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "LAB_SERVER_ADMIN_TOKEN"):
        assert name in (REPO / ".env.example").read_text()
    assert "change-me" not in (REPO / "docker-compose.yml").read_text()
