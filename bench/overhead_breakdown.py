"""Where the tracking overhead goes: `python -m bench.overhead_breakdown [--batch-size N] [--epochs N] [--reps N]`.

A diagnostic, not one of the benchmarks in RESULTS.md: the tracked training of benchmark 1 (labserver on
SQLite), with one part of the client's logging switched off at a time, against the plain loop. It patches
client internals (labclient.tracking.recorder), so it names the parts it found when written;
if they move, it says which one is missing. Ratios cover the epochs after the first, so the run's setup
(params, tags, environment.json) is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

VARIANTS = {
    "tracked": "as `labclient train` runs it",
    "journal only": "offline: journalled and fsync'd, no sender process, nothing sent",
    "sender at nice 0": "the sender process at the training loop's priority (it lowers its own by 10; needs root)",
    "server at nice 19": "the server's processes at the lowest CPU priority",
    "no step points": "no per-step point logged at all (params, tags, epoch metrics still sent)",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead_breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # as the benchmarks run, before torch is imported
    with tempfile.TemporaryDirectory(prefix="labbench-") as workdir:
        from bench.__main__ import _isolate
        from bench.common import find_data_dir, paired_ratios
        from bench.servers import start_server

        _isolate(Path(workdir))
        with start_server("sqlite", Path(workdir) / "sqlite", None) as server:
            times = _measure(server, find_data_dir(args.data_dir), args)
    print(
        f"batch {args.batch_size}, {args.epochs} epochs, {args.reps} repetitions; training time / plain loop, epochs "
        "after the first:"
    )
    for name, description in VARIANTS.items():
        ratio = paired_ratios(times[name], times["plain"])
        print(f"  {name:<22} {ratio.median:.3f} ({ratio.minimum:.3f} - {ratio.maximum:.3f})  {description}")


def _measure(server, data_dir: Path, args) -> dict[str, list[float]]:
    import torch

    from bench import baselines
    from bench.common import alternate
    from labclient.training.data import load_dataset
    from labclient.training.loop import TrainOptions, train
    from labclient.training.progress import Reporter

    dataset = load_dataset("mnist", data_dir, Path(tempfile.gettempdir()))
    x, y = torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y)
    options = TrainOptions(
        team=server.team,
        data_dir=data_dir,
        device="cpu",
        tracking_uri=server.url,
        overrides={"batch_size": args.batch_size, "epochs": args.epochs},
    )

    def tracked(name: str):
        def run() -> float:
            with server.as_team(), _switched_off(name, server):
                history = train(
                    dataclasses.replace(options, offline=name == "journal only"), reporter=Reporter(quiet=True)
                ).history
            return sum(row["epoch_time_s"] for row in history[1:])

        return run

    variants = {"plain": lambda: sum(baselines.train_in_memory(x, y, args.batch_size, args.epochs)[0][1:])}
    variants.update({name: tracked(name) for name in VARIANTS})
    return alternate(variants, args.reps)


@contextmanager
def _switched_off(name: str, server):
    from labclient.tracking import recorder

    with ExitStack() as stack:
        if name == "server at nice 19":
            stack.enter_context(_niced(server))
        elif name == "sender at nice 0":
            undo_its_nice = (
                "import os, runpy; os.nice(-10); "
                "runpy.run_module('labclient.tracking.sender_process', run_name='__main__', alter_sys=True)"
            )
            stack.enter_context(mock.patch.object(recorder, "SENDER_COMMAND", [sys.executable, "-c", undo_its_nice]))
        elif name == "no step points":
            log_metric_steps = recorder.Recorder.log_metric_steps

            def without_steps(self, key, values, first_step=0, every=1):
                if key != "step_train_cost":
                    log_metric_steps(self, key, values, first_step, every)

            stack.enter_context(mock.patch.object(recorder.Recorder, "log_metric_steps", without_steps))
        yield


@contextmanager
def _niced(server):
    pids = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _group(stat) == server.process.pid]
    for pid in pids:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, 0)
            except (ProcessLookupError, PermissionError):
                pass


def _group(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


if __name__ == "__main__":
    try:
        main()
    except AttributeError as err:  # the client's internals moved: say which, not a traceback
        sys.exit(
            f"error: the client no longer has what this diagnostic patches ({err}); update bench/overhead_breakdown.py"
        )
