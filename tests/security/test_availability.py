"""Availability: no team, and no stranger, can stop the others from working.

Replayed against a real labserver on loopback: clients that hold connections open (slow headers, slow bodies, with
and without a token), password guessing (with forged X-Forwarded-For, against the admin, from addresses that share
nothing with the victims), and a server started with the placeholder secrets of .env.example.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from bench.servers import BIN
from labserver.throttle import LoginThrottle

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connect from another loopback address (127.0.0.0/8 is all ours), as a different machine would."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _session(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def _basic(team: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{team}:{token}".encode()).decode()


class SlowClient(threading.Thread):
    """One socket that sends `head` and then one byte of `trickle` every `every` seconds until the server closes
    it or `stop` is set. `closed_after` is how long the server took to close it (None: it never did)."""

    def __init__(self, port: int, head: bytes, stop: threading.Event, every: float = 3.0, source: str = "127.0.0.1"):
        super().__init__(daemon=True)
        self.port, self.head, self.stop, self.every, self.source = port, head, stop, every, source
        self.closed_after: float | None = None
        self.answer = b""

    def run(self):
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(self.source, 0)) as sock:
                sock.sendall(self.head)
                sock.settimeout(self.every)
                while not self.stop.is_set():
                    try:
                        data = sock.recv(4096)
                        if not data:
                            break
                        self.answer += data
                    except TimeoutError:
                        pass
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        break
        except OSError:
            pass
        self.closed_after = time.monotonic() - started if not self.stop.is_set() else None

    @property
    def status(self) -> int | None:
        line = self.answer.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None


def _health_times(url: str, stop: threading.Event, into: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            status = requests.get(url + "/health", timeout=10).status_code
        except requests.RequestException:
            status = None
        into.append(time.monotonic() - started if status == 200 else float("inf"))
        time.sleep(0.3)


def _mallory_run(server) -> tuple[str, str]:
    auth = server.auth("mallory")
    experiment = requests.get(
        server.url + "/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "mallory"},
        auth=auth,
        timeout=30,
    ).json()["experiment"]["experiment_id"]
    run = requests.post(
        server.url + "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=auth, timeout=30
    )
    return experiment, run.json()["run"]["info"]["run_id"]


def test_slow_clients_cannot_stop_another_team_from_training(hostile_server, mnist_dir, tmp_path, monkeypatch):
    """50 slow unauthenticated bodies, 20 slow uploads and 20 slow log-batch bodies from one team, and 30 clients that
    trickle their headers, while red trains: red's run completes in full, and /health answers within a second."""
    server = hostile_server
    experiment, run_id = _mallory_run(server)
    mallory = _basic("mallory", server.tokens["mallory"])
    upload = (
        f"PUT /api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/slow.bin HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: {mallory}\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    batch = (
        f"POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {mallory}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    anonymous = b"PUT /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
    slow_headers = b"GET /api/2.0/lab/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    stop = threading.Event()
    attackers = (
        [SlowClient(server.port, anonymous, stop, source="127.0.0.3") for _ in range(50)]
        + [SlowClient(server.port, upload, stop) for _ in range(20)]
        + [SlowClient(server.port, batch, stop) for _ in range(20)]
        + [SlowClient(server.port, slow_headers, stop, every=2.0, source="127.0.0.4") for _ in range(30)]
    )
    health: list[float] = []
    watcher = threading.Thread(target=_health_times, args=(server.url, stop, health), daemon=True)
    for thread in attackers + [watcher]:
        thread.start()
    attack_started = time.monotonic()
    time.sleep(2)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_"))}
    env.update(
        server.client_env("red"),
        LAB_HOME=str(tmp_path / "home"),
        LAB_CACHE_DIR=str(tmp_path / "cache"),
        LAB_CONFIG=str(tmp_path / "config.toml"),
        OMP_NUM_THREADS="1",
        LAB_DRAIN_TIMEOUT="120",
    )
    try:
        trained = subprocess.run(
            [
                str(BIN / "labclient"),
                "train",
                "--trainer",
                "mnist-mlp",
                "--dataset",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--epochs",
                "2",
                "--device",
                "cpu",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for attacker in attackers[50:]:  # slow bodies queue for their team's few slots: the last get 503 after 30 s
            attacker.join(timeout=max(1.0, 60 - (time.monotonic() - attack_started)))
    finally:
        stop.set()
    for thread in attackers:
        thread.join(timeout=10)
    watcher.join(timeout=15)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "pending" not in trained.stdout and "red/run-" in trained.stdout
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "red")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.tokens["red"])
    client = MlflowClient(server.url)
    red = client.search_runs(
        [client.get_experiment_by_name("red").experiment_id],
        "tags.`lab.kind` = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert red.info.status == "FINISHED"
    assert len(client.get_metric_history(red.info.run_id, "step_train_cost")) == 2 * 800  # every step arrived
    assert health and max(health) < 1.0, f"/health took up to {max(health):.2f} s under attack"
    anonymous_statuses = {attacker.status for attacker in attackers[:50]}
    assert anonymous_statuses == {401}, anonymous_statuses  # refused before their bodies were read
    timed_out = [a.status for a in attackers[50:90]]
    assert set(timed_out) <= {408, 503} and 408 in timed_out, timed_out  # slow bodies are cut off, never left open
    assert all(a.closed_after is not None and 9 < a.closed_after < 20 for a in attackers[90:]), [
        a.closed_after for a in attackers[90:]
    ]  # trickled headers: the connection is closed after 10 s
    assert all(a.closed_after is not None for a in attackers[:50])  # refused and closed, not left trickling
    listing = requests.get(
        server.url + "/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id},
        auth=server.auth("mallory"),
        timeout=30,
    ).json()
    assert "files" not in listing  # no half upload was kept


def test_failed_logins_are_throttled_per_real_address_on_every_route(hostile_server):
    """Guessing from 127.0.0.5, with forged X-Forwarded-For headers and against the admin on a native route,
    locks out 127.0.0.5 only: other addresses keep uploading and downloading artifacts."""
    server = hostile_server
    experiment, run_id = _mallory_run(server)
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/notes.txt"
    assert (
        requests.put(
            server.url + artifact, data=b"mallory's notes", auth=server.auth("mallory"), timeout=30
        ).status_code
        == 200
    )

    attacker = _session("127.0.0.5")
    codes = []
    for index in range(10):
        forged = {"X-Forwarded-For": f"10.0.0.{index}", "X-Real-IP": f"10.0.1.{index}"}
        path = artifact if index % 2 else "/api/2.0/mlflow/gateway/endpoints/list"  # native routes and the admin's
        codes.append(
            attacker.get(
                server.url + path,
                auth=("admin" if index % 3 else "blue", f"lab_guess_{index}"),
                headers=forged,
                timeout=30,
            ).status_code
        )
    assert codes == [401] * 10
    for path in (artifact, "/api/2.0/lab/whoami", "/api/2.0/mlflow/gateway/endpoints/list"):
        assert attacker.get(server.url + path, auth=("admin", server.tokens["admin"]), timeout=30).status_code == 429
    assert attacker.get(server.url + "/health", timeout=30).status_code == 200  # the health check never waits

    bystander = _session("127.0.0.6")
    assert bystander.get(server.url + artifact, auth=server.auth("blue"), timeout=30).content == b"mallory's notes"
    assert (
        bystander.put(server.url + artifact, data=b"new notes", auth=server.auth("mallory"), timeout=30).status_code
        == 200
    )
    assert requests.get(server.url + artifact, auth=server.auth("red"), timeout=30).content == b"new notes"


def test_guessing_does_not_slow_the_server_for_others(hostile_server):
    """Three clients guessing tokens as fast as they can, each from its own address: hashing runs off the event
    loop, a few at a time, so /health and a team's requests stay fast."""
    server, stop, times = hostile_server, threading.Event(), []

    def guess(address: str):
        session = _session(address)
        while not stop.is_set():
            session.get(server.url + "/api/2.0/lab/whoami", auth=("admin", f"lab_{time.monotonic_ns()}"), timeout=30)

    guessers = [threading.Thread(target=guess, args=(f"127.0.1.{index}",), daemon=True) for index in range(1, 4)]
    for thread in guessers:
        thread.start()
    try:
        time.sleep(1)
        for _ in range(20):
            started = time.monotonic()
            assert requests.get(server.url + "/health", timeout=10).status_code == 200
            assert (
                requests.get(server.url + "/api/2.0/lab/whoami", auth=server.auth("red"), timeout=10).status_code == 200
            )
            times.append(time.monotonic() - started)
    finally:
        stop.set()
        for thread in guessers:
            thread.join(timeout=30)
    assert max(times) < 1.0, times


def test_the_throttle_forgets_addresses_beyond_its_bound():
    now = [0.0]
    throttle = LoginThrottle(allowed=3, window_s=60, max_addresses=1000, clock=lambda: now[0])
    for index in range(20_000):
        throttle.record_failure(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert throttle.remembered() == 1000
    for _ in range(3):
        throttle.record_failure("192.0.2.1")
    assert throttle.blocked("192.0.2.1")
    now[0] = 61.0
    assert not throttle.blocked("192.0.2.1") and throttle.remembered() <= 1000


@pytest.mark.parametrize(
    "variable", ["LAB_SERVER_ADMIN_TOKEN", "MLFLOW_FLASK_SERVER_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"]
)
def test_placeholder_secrets_are_refused(tmp_path, variable):
    placeholders = dict(
        line.split("=", 1)
        for line in open(os.path.join(REPO, ".env.example")).read().splitlines()
        if "=" in line and not line.startswith("#")
    )
    secret = placeholders.get(variable) or placeholders["MINIO_ROOT_PASSWORD"]  # the S3 secret is MinIO's password
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_", "AWS_"))}
    env.update(LAB_SERVER_HOME=str(tmp_path), **{variable: secret})
    result = subprocess.run(
        [str(BIN / "labserver"), "serve", "--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {variable} still holds a placeholder secret from .env.example (put a secret of your own in .env "
        "(for example `openssl rand -hex 32`), then start again)"
    ]
    assert not (tmp_path / "db.sqlite").exists()  # refused before anything was created


def test_every_secret_of_the_example_environment_is_recognised_as_a_placeholder():
    from labserver.config import PLACEHOLDER_MARK

    secrets = [
        line.split("=", 1)[1]
        for line in open(os.path.join(REPO, ".env.example")).read().splitlines()
        if "=" in line and any(word in line.split("=", 1)[0] for word in ("PASSWORD", "TOKEN", "SECRET"))
    ]
    assert len(secrets) == 4 and all(PLACEHOLDER_MARK in secret for secret in secrets)
