"""Real server processes on loopback for the benchmarks and the tests: labserver, moto's S3 server, PostgreSQL
databases. Every process runs in its own session and is stopped, its whole process group, at the end.

The benchmarks' servers: one real `labserver` process on loopback, always stopped at the end.

`server_command` is the one place that says which server runs and how; `TrackingServer` adds teams
and the client environment of a team. PostgreSQL stores are temporary databases `bench_<random>`,
dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
TEAM = "bench"  # the team every benchmark logs as
HEALTH_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10


def server_command(backend_uri: str, artifacts_dir: Path | str, port: int, workers: int = 1) -> list[str]:
    """The lean class setup labserver defaults to: 1 uvicorn worker, MLflow's job runner off."""
    return [
        str(BIN / "labserver"),
        "serve",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def describe_server() -> str:
    from importlib.metadata import version

    return f"`labserver serve --workers 1` (MLflow {version('mlflow')} with the lab plugin and basic-auth) on 127.0.0.1"


@dataclass
class TrackingServer:
    backend: str  # "sqlite" or "postgresql"
    url: str
    backend_uri: str
    home: Path
    process: subprocess.Popen | None = None
    token: str = ""
    team: str = TEAM
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. an S3 endpoint and its keys
    tokens: dict[str, str] = field(default_factory=dict)  # further teams (add_teams): name -> token

    @property
    def database(self) -> str | None:
        """The PostgreSQL database name, whose backend processes also work for this server."""
        return self.backend_uri.rsplit("/", 1)[1] if self.backend == "postgresql" else None

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.extra_env,
            "LAB_SERVER_HOME": str(self.home),
            "LAB_SERVER_BACKEND_STORE_URI": self.backend_uri,
        }

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the server's processes (its process group) and, on PostgreSQL, by the
        database's backend processes (titled `postgres: USER DATABASE ...`); None without /proc."""
        total, found = 0, False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                ours = int(fields[2]) == self.process.pid or self._is_database_backend(stat.parent)
            except OSError:
                continue
            if ours:  # fields from the 3rd on: state, ppid, pgrp, ...; utime and stime are the 14th and 15th
                total, found = total + int(fields[11]) + int(fields[12]), True
        return total / os.sysconf("SC_CLK_TCK") if found else None

    def _is_database_backend(self, proc: Path) -> bool:
        if self.database is None:
            return False
        title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return title.startswith("postgres: ") and f" {self.database} " in title

    def admin(self, *args: str) -> str:
        """`labserver ARGS` against this server's database; returns its output."""
        result = subprocess.run(
            [str(BIN / "labserver"), *args], env=self.env(), capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"labserver {' '.join(args)} failed: {(result.stdout + result.stderr).strip()[-800:]}")
        return result.stdout

    def add_team(self) -> None:
        self.token = self.admin("team", "add", self.team).split("token: ", 1)[1].split()[0]

    def add_teams(self, names: list[str]) -> None:
        """Many teams in one admin process: `labserver team add` once per team would start MLflow each time."""
        script = (
            "import sys\nfrom labserver.cli import _admin\nadmin = _admin(None)\n"
            "for name in sys.argv[1:]:\n    print(name, admin.add(name)[1])\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, *names], env=self.env(), capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"adding {len(names)} teams failed: {(result.stdout + result.stderr).strip()[-800:]}")
        self.tokens.update(line.split() for line in result.stdout.splitlines() if line.count(" ") == 1)

    def client_env(self) -> dict[str, str]:
        """What `labclient login` would store, as environment variables."""
        return {"LAB_TRACKING_URI": self.url, "LAB_TEAM": self.team, "LAB_TOKEN": self.token}

    @contextmanager
    def as_team(self) -> Iterator[None]:
        """This process logs in as the team (LAB_* variables, read again by labclient's settings)."""
        from labclient.config import reset_settings

        saved = {name: os.environ.get(name) for name in ("LAB_TRACKING_URI", "LAB_TEAM", "LAB_TOKEN")}
        os.environ.update(self.client_env())
        reset_settings()
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            reset_settings()


@contextmanager
def start_server(
    backend: str,
    home: Path,
    postgres_admin: str | None,
    *,
    artifacts: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    teams: tuple[str, ...] = (),
) -> Iterator[TrackingServer]:
    """`artifacts`: the artifact destination (default home/artifacts); `teams`: more teams, added before it starts."""
    home.mkdir(parents=True, exist_ok=True)
    with _backend_uri(backend, home, postgres_admin) as backend_uri:
        server = TrackingServer(backend, "", backend_uri, home, extra_env=dict(extra_env or {}))
        if backend != "sqlite":  # `team add` creates a new SQLite store itself; other stores need the migrations first
            server.admin("db", "upgrade")
        server.add_team()
        if teams:
            server.add_teams(list(teams))
        port = free_port()
        server.url = f"http://127.0.0.1:{port}"
        with open(server.log_path, "wb") as log:
            # its own session, so stopping it reaches the uvicorn worker it spawns
            server.process = subprocess.Popen(
                server_command(backend_uri, artifacts or home / "artifacts", port, workers),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=home,
                env=server.env(),
                start_new_session=True,
            )
        try:
            wait_for_health(server)
            yield server
        finally:
            stop_group(server.process, timeout=STOP_TIMEOUT_S)


def wait_for_health(server: TrackingServer, timeout: float = HEALTH_TIMEOUT_S) -> None:
    wait_for(server.url + "/health", timeout, server.process, server.log_path)


def wait_for(url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:] if log else ''}")


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
    """Signal the process; kill its whole group if it is still there after `timeout`."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stragglers: uvicorn workers of a killed launcher
        except (ProcessLookupError, PermissionError):
            pass


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def _backend_uri(backend: str, home: Path, postgres_admin: str | None) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{home / 'mlflow.db'}"
    elif backend == "postgresql":
        if not postgres_admin:
            raise RuntimeError("PostgreSQL was not configured (--postgres)")
        with postgres_database(postgres_admin) as uri:
            yield uri
    else:
        raise ValueError(f"unknown backend {backend!r}")


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A temporary database `bench_<random>`, dropped at the end even while connections linger."""
    uri = create_database(admin_url, "bench")
    try:
        yield uri
    finally:
        drop_database(admin_url, uri)


def create_database(admin_url: str, prefix: str) -> str:
    """A new empty database `<prefix>_<random>` beside the admin URL's; its URI for SQLAlchemy (psycopg 3)."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(_libpq(admin_url), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return _libpq(admin_url).rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


def drop_database(admin_url: str, uri: str) -> None:
    """Drop it even while connections linger (a killed server's)."""
    import psycopg

    name = uri.rsplit("/", 1)[1]
    with psycopg.connect(_libpq(admin_url), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_reachable(admin_url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3):
            return None
    except Exception as err:  # any failure means: skip PostgreSQL, and say why
        return " ".join(str(err).split())[:200]


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen
    bucket: str = "lab-test"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )


def start_s3(log_dir: Path, bucket: str = "lab-test") -> S3Server:
    """moto's S3 server on a free loopback port, with one bucket."""
    port = free_port()
    log = log_dir / "moto.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(port, process, bucket)
    wait_for(server.endpoint, 60, process, log)
    server.client().create_bucket(Bucket=server.bucket)
    return server
