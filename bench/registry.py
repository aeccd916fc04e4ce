"""The benchmarks, in report order. Adding one is one module (NUMBER, NAME, TITLE, NEEDS_SERVER, run(ctx))
listed here in place of its Pending entry."""

from __future__ import annotations

from dataclasses import dataclass

from bench import cli_startup, exchange, latency, overhead, server_load, slow_server, throughput
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
        return Section(
            self.NUMBER,
            f"{self.TITLE} (pending)",
            body=f"**Pending on {self.waiting_for}.** No numbers yet.\n\n{self.plan}",
        )


BENCHMARKS = [overhead, throughput, latency, exchange, server_load, cli_startup, slow_server]
