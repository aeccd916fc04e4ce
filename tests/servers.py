"""Real server processes for tests: labserver, a moto S3 server and throwaway PostgreSQL databases.

Every process starts in its own session on a free loopback port and is stopped (its whole process
group) when the test or session that made it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import servers as bench_servers
from bench.servers import BIN, free_port, stop_group, wait_for

PG_ADMIN_URI = os.environ.get("LAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class LabServer:
    home: Path
    db_uri: str
    artifacts: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "MLFLOW_"))}
        env.update(LAB_SERVER_HOME=str(self.home), PYTHONUNBUFFERED="1", **self.env)
        return env

    def start(self, timeout: float = 120) -> LabServer:
        self.home.mkdir(parents=True, exist_ok=True)
        command = [
            str(BIN / "labserver"),
            "serve",
            "--backend-store-uri",
            self.db_uri,
            "--artifacts-destination",
            self.artifacts,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.process_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(f"{self.url}/health", timeout, self.process, self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        code = stop_group(self.process, sig)
        self.process = None
        return code

    def add_team(self, name: str) -> str:
        import re

        self.tokens[name] = re.search(r"token: (lab_[\w-]+)", run_labserver(self, "team", "add", name)).group(1)
        return self.tokens[name]

    def client_env(self, team: str) -> dict[str, str]:
        return {"LAB_TRACKING_URI": self.url, "LAB_TEAM": team, "LAB_TOKEN": self.tokens[team]}

    def auth(self, team: str) -> tuple[str, str]:
        return team, self.tokens[team]


ADMIN_TOKEN = "lab_admin_test_token_0123"


def sqlite_lab_server(home: Path, teams: tuple[str, ...] = ("red", "blue")) -> LabServer:
    """A started labserver on SQLite and local artifacts in `home`, with the given teams."""
    server = LabServer(
        home=home,
        db_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifacts=str(home / "artifacts"),
        env={"LAB_SERVER_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    server.start()
    for team in teams:
        server.add_team(team)
    server.tokens["admin"] = ADMIN_TOKEN
    return server


def run_labserver(server: LabServer, *args: str, check: bool = True) -> str:
    """`labserver ...` against the server's database, in-process with click's CliRunner (the CLI is the
    same code; a process per call would cost seconds of imports). Returns its output."""
    from click.testing import CliRunner

    from labserver.cli import main
    from labserver.config import get_server_settings

    env = {"LAB_SERVER_HOME": str(server.home), "LAB_SERVER_BACKEND_STORE_URI": server.db_uri, **server.env}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_server_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_server_settings.cache_clear()
    if check and result.exit_code != 0:
        raise AssertionError(f"labserver {' '.join(args)} failed: {result.output}")
    return result.output


def create_database() -> str:
    return bench_servers.create_database(PG_ADMIN_URI, "lab_test")


def drop_database(uri: str) -> None:
    from labserver.store import engine_for

    engine_for.cache_clear()  # this process's pooled connections to it go first
    bench_servers.drop_database(PG_ADMIN_URI, uri)


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL if it is down (it is a system service, not ours to stop)."""
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URI.replace("+psycopg", ""), connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    for _ in range(30):
        try:
            psycopg.connect(PG_ADMIN_URI.replace("+psycopg", ""), connect_timeout=3).close()
            return
        except psycopg.OperationalError:
            time.sleep(1)
    raise RuntimeError("PostgreSQL on 127.0.0.1:5432 did not start")
