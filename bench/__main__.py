"""`python -m bench [NAME ...] [--quick | --smoke]`: run the benchmarks and write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, Context, Section, find_data_dir

DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None):
    from bench.registry import BENCHMARKS

    names = [b.NAME for b in BENCHMARKS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(names)}"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_const", dest="profile", const="quick", help="every benchmark in under 2 minutes"
    )
    size.add_argument(
        "--smoke", action="store_const", dest="profile", const="smoke", help="tiny sizes, to check the runner works"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the report (default: bench/RESULTS.md)")
    parser.add_argument("--data-dir", type=Path, help="mnist-10k (default: LAB_TEST_DATASETS or ../shared/datasets)")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help="admin URL of a PostgreSQL server, or 'none' to skip it"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        metavar="N",
        help="torch intra-op threads for every trainer, baseline and ours alike (default 1; 0: torch's default)",
    )
    args = parser.parse_args(argv)
    args.profile = args.profile or "full"
    unknown = [name for name in args.names if name not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.registry import BENCHMARKS

    args = parse_args(argv)
    selected = [b for b in BENCHMARKS if not args.names or b.NAME in args.names]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers we started are stopped on the way out
    if args.torch_threads:
        # read by torch at import, here and in the training processes the benchmarks start
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="labbench-") as workdir:
        _isolate(Path(workdir))
        ctx = Context(args.profile, find_data_dir(args.data_dir), Path(workdir), _postgres(args.postgres))
        started, load_before = time.monotonic(), os.getloadavg()[0]
        with ctx.stack:
            sections = {b.NAME: _run_one(b, ctx) for b in sorted(selected, key=lambda b: b.NEEDS_SERVER)}
        elapsed, load_after = time.monotonic() - started, os.getloadavg()[0]
    _write(args, BENCHMARKS, sections, elapsed, (load_before, load_after))
    failed = [name for name, (_, ok) in sections.items() if not ok]
    print(f"wrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _isolate(workdir: Path) -> None:
    """No user's config, token or tracking URI may leak into the measurements."""
    for name in list(os.environ):
        if name.startswith(("LAB_", "MLFLOW_TRACKING_")) and name not in ("LAB_TEST_DATASETS", "LAB_DEBUG"):
            del os.environ[name]
    os.environ.update(
        LAB_HOME=str(workdir / "lab"), LAB_CACHE_DIR=str(workdir / "cache"), LAB_CONFIG=str(workdir / "config.toml")
    )
    from labclient.config import reset_settings

    reset_settings()


def _postgres(url: str) -> str | None:
    if url.lower() == "none":
        return None
    from bench.servers import postgres_reachable

    problem = postgres_reachable(url)
    if problem:
        print(f"PostgreSQL skipped: {problem}", file=sys.stderr)
        return None
    return url


def _run_one(benchmark, ctx: Context) -> tuple[Section, bool]:
    print(f"[bench] {benchmark.NUMBER}. {benchmark.TITLE} ({ctx.profile}) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        section, ok = benchmark.run(ctx), True
    except Exception as err:  # one broken benchmark must not cost the others' results
        traceback.print_exc()
        section = Section(
            benchmark.NUMBER, benchmark.TITLE, body=f"**FAILED** in this run: `{type(err).__name__}: {err}`"
        )
        ok = False
    seconds = time.monotonic() - started
    print(f"[bench] {benchmark.NAME}: {seconds:.0f} s", file=sys.stderr, flush=True)
    for figure in section.figures:
        print(f"    {' | '.join(figure.row())}", file=sys.stderr)
    if section.figures:
        section.notes.append(f"This benchmark took {seconds:.0f} s.")
    return section, ok


def _write(args, benchmarks, sections: dict, elapsed: float, load: tuple[float, float]) -> None:
    from bench import report
    from bench.servers import describe_server

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flag = {"full": "", "quick": " --quick", "smoke": " --smoke"}[args.profile]
    stamp = f"Measured {now} by `python -m bench{flag}`."
    old = report.previous_blocks(args.output)
    blocks = []
    for benchmark in benchmarks:
        if benchmark.NAME in sections:
            blocks.append(report.block(benchmark.NAME, stamp, sections[benchmark.NAME][0].markdown()))
        elif benchmark.NAME in old:
            blocks.append(old[benchmark.NAME])
        else:
            blocks.append(
                report.block(benchmark.NAME, "not run yet", f"## {benchmark.NUMBER}. {benchmark.TITLE}\n\nNot run yet.")
            )
    ran = ", ".join(str(number) for number in sorted(section.number for section, _ in sections.values()))
    header = (
        f"Last written {now} by `python -m bench{flag}{' ' + ' '.join(args.names) if args.names else ''}` "
        f"(sections {ran}; {elapsed:.0f} s; load average {load[0]:.2f} before, {load[1]:.2f} after). "
        "Sections not run then keep their earlier results and say when they were measured."
    )
    machine = report.machine() + [("tracking server", describe_server())]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.render(header, machine, blocks, report.findings()), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
