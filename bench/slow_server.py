"""Benchmark 7: a slow server (issue 6 fault test 4). The same `labclient train` of mnist-mlp, logging every step,
to labserver directly and through a loopback proxy that holds every response back by a fixed delay."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from bench.common import Context, Figure, Section, Target, fmt_overhead, fmt_spread, paired_ratios, stats, table

NUMBER = 7
NAME = "slow-server"
TITLE = "Slow server (issue 6, fault test 4)"
NEEDS_SERVER = True
DELAY_S = 0.2
BOUND = 1.05  # training time through the slow proxy / training time against the server directly
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

SIZES = {"smoke": (1, 1, 128), "quick": (3, 2, 10), "full": (5, 3, 10)}  # repetitions, epochs, batch size


class _DelayingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    delay: float

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
        connection = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            time.sleep(self.delay)  # the slowness: every answer arrives `delay` late
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    def log_message(self, *args) -> None:  # quiet: the benchmark's output is its report
        pass


@contextmanager
def delaying_proxy(upstream_url: str, delay: float = DELAY_S) -> Iterator[str]:
    """The proxy in its own process (like a real slow network, it takes no CPU or GIL from the trainer).

    Yields its URL."""
    import subprocess
    import sys

    from bench.servers import free_port, stop_group

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_server", upstream_url, str(port), str(delay)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the delaying proxy did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


def serve_proxy(upstream_url: str, port: int, delay: float) -> None:
    parts = urlsplit(upstream_url)
    handler = type("Handler", (_DelayingHandler,), {"upstream": (parts.hostname, parts.port), "delay": delay})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.serve_forever()


def run(ctx: Context) -> Section:
    reps, epochs, batch = ctx.sizes(SIZES)
    server = ctx.server("sqlite")
    results = {"direct": [], "slow": []}
    with delaying_proxy(server.url) as proxy_url:
        variants = {
            "direct": lambda: _train(ctx, server, server.url, epochs, batch),
            "slow": lambda: _train(ctx, server, proxy_url, epochs, batch),
        }
        for name, rows in ctx.alternate(variants, reps).items():
            results[name] = rows
    seconds = {name: [row[0] for row in rows] for name, rows in results.items()}
    ratio = paired_ratios(seconds["slow"], seconds["direct"])
    lost = sum(row[1] for rows in results.values() for row in rows)
    figures = [
        Figure(
            f"training time, through a {DELAY_S * 1000:.0f} ms proxy / direct, batch {batch}",
            ratio,
            target=Target("<=", BOUND),
        ),
        Figure("points lost after the final drain", stats([lost]), unit="points", target=Target("<=", 0, "points")),
    ]
    rows = [
        [name, fmt_spread(stats(values)), fmt_spread(stats([r[2] for r in results[name]]))]
        for name, values in seconds.items()
    ]
    body = table(["server", "training epochs", "whole `train()` call (incl. final drain)"], rows)
    body += (
        f"\n\nOverhead of the slow server on training: {fmt_overhead(ratio.median)} "
        f"(bound: at most {fmt_overhead(BOUND)})."
    )
    return Section(NUMBER, TITLE, body=body, figures=figures, notes=_notes(ctx, reps, epochs, batch))


def _train(ctx: Context, server, url: str, epochs: int, batch: int) -> tuple[float, int, float]:
    """(seconds in the training epochs, points missing on the server, seconds of the whole call)."""
    from labclient.training.loop import TrainOptions, train
    from labclient.training.progress import Reporter

    options = TrainOptions(
        team=server.team,
        trainer="mnist-mlp",
        dataset=ctx.dataset_name,
        data_dir=ctx.data_dir,
        device="cpu",
        overrides={"batch_size": batch, "epochs": epochs},
        tracking_uri=url,
    )
    began = time.perf_counter()
    with server.as_team():
        result = train(options, reporter=Reporter(quiet=True))
    whole = time.perf_counter() - began
    steps = epochs * -(-len(ctx.dataset().train_y) // batch)
    return sum(row["epoch_time_s"] for row in result.history), steps - _points(server, result.run_id), whole


def _points(server, run_id: str | None) -> int:
    if run_id is None:  # never bound to the server: everything is missing
        return 0
    from bench.server_load import _metric_count

    return _metric_count(server, [run_id], "step_train_cost")


def _notes(ctx: Context, reps: int, epochs: int, batch: int) -> list[str]:
    return [
        f"mnist-mlp on {ctx.dataset_name}, {epochs} epoch(s) at batch {batch}, one `step_train_cost` point per step, "
        "via `labclient.training.loop.train` against labserver on SQLite: directly, and through "
        "bench/slow_server.py's "
        f"threaded proxy (its own process) on loopback that delays every response by {DELAY_S * 1000:.0f} ms. {reps} "
        "repetitions in "
        "rotating order after a warm-up of each.",
        f"Bound (stated here, issue 6 fault test 4): training through the slow server takes at most {BOUND:.2f}× the "
        "training time against the server directly; logging goes to the journal and a sender process, so a slow "
        "server may delay the final drain (shown in the table) but not the training steps.",
        "Points lost: `step_train_cost` points expected (epochs × steps) minus those in the run's metric history on "
        "the "
        "server after `train()` returned (its final drain done).",
    ]


if __name__ == "__main__":  # python -m bench.slow_server UPSTREAM_URL PORT DELAY_S
    import sys

    serve_proxy(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
