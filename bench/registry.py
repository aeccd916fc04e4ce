"""The benchmarks, in report order. Adding one is one module (NUMBER, NAME, TITLE, NEEDS_SERVER, run(ctx))
listed here in place of its Pending entry."""

from __future__ import annotations

from dataclasses import dataclass

from bench import cli_startup, latency, overhead, throughput
from bench.common import Context, Section


@dataclass(frozen=True)
class Pending:
    """A benchmark whose subject is still being built: the report says so instead of showing numbers."""

    NUMBER: int
    NAME: str
    TITLE: str
    waiting_for: str
    plan: str
    NEEDS_SERVER: bool = False

    def run(self, ctx: Context) -> Section:
        return Section(self.NUMBER, f"{self.TITLE} (pending)", body=f"**Pending on {self.waiting_for}.** No numbers yet.\n\n{self.plan}")


EXCHANGE = Pending(
    4, "exchange", "Exchange",
    "issue 3 (`labserver`) and issue 4 (`labclient fetch` / `compare`)",
    "Planned as `bench/exchange.py`: `fetch` of a 100 MB weights run through labserver with a local artifact store and "
    "with an S3 server, against a plain file copy of the same bytes and boto3 straight from the S3 server; the cache-hit "
    "`fetch` time; `compare` wall time on two MNIST models over 10,000 images.",
)
SERVER_LOAD = Pending(
    5, "server-load", "Server load",
    "issue 3 (`labserver`, its run numbering and `--workers`)",
    "Planned as `bench/server_load.py`: N simulated teams (N = 1, 10, 30) logging batches in a closed loop for a fixed "
    "time, on SQLite and PostgreSQL; points/s, p50/p99 request latency, errors, lost points (must be 0), and "
    "`--workers 2` scaling.",
)

BENCHMARKS = [overhead, throughput, latency, EXCHANGE, SERVER_LOAD, cli_startup]
