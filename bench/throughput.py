"""Benchmark 2: trainer throughput in samples/s, our trainer against three baselines, same data, same network."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Context, Figure, Section, Target, fmt_spread, paired_ratios, stats, table

NUMBER = 2
NAME = "throughput"
TITLE = "Trainer throughput (samples/s)"
NEEDS_SERVER = False


@dataclass(frozen=True)
class Sizes:
    reps: int
    epochs: dict[int, int]  # per batch size, so each timed run lasts long enough to measure
    numpy_samples: int  # the per-sample numpy network is slow; its throughput does not depend on N


SIZES = {
    "smoke": Sizes(reps=1, epochs={10: 1, 128: 1}, numpy_samples=200),
    "quick": Sizes(reps=3, epochs={10: 1, 128: 4}, numpy_samples=1000),
    "full": Sizes(reps=7, epochs={10: 3, 128: 10}, numpy_samples=4000),
}
BATCH_SIZES = (10, 128)
VARIANTS = (
    "numpy per-sample backprop",
    "PyTorch DataLoader loop",
    "PyTorch in-memory loop",
    "ours (labclient train's loop)",
)
NUMPY, LOADER, IN_MEMORY, OURS = VARIANTS


def run(ctx: Context) -> Section:
    sizes = ctx.sizes(SIZES)
    dataset = ctx.dataset()
    rates = {batch: _measure(ctx, dataset, batch, sizes) for batch in BATCH_SIZES}
    figures = []
    for batch in BATCH_SIZES:
        figures.append(
            Figure(
                f"ours / in-memory loop, batch {batch}",
                paired_ratios(rates[batch][OURS], rates[batch][IN_MEMORY]),
                target=Target(">=", 0.95),
            )
        )
    for batch in BATCH_SIZES:
        figures.append(
            Figure(
                f"ours / DataLoader loop, batch {batch}",
                paired_ratios(rates[batch][OURS], rates[batch][LOADER]),
                target=Target(">=", 1.5) if batch == 128 else None,
            )
        )
    figures.append(
        Figure("ours / numpy per-sample backprop, batch 10", paired_ratios(rates[10][OURS], rates[10][NUMPY]))
    )
    return Section(NUMBER, TITLE, body=_body(rates), figures=figures, notes=_notes(ctx, dataset, sizes))


def _measure(ctx: Context, dataset, batch: int, sizes: Sizes) -> dict[str, list[float]]:
    import torch

    from bench import baselines
    from bench.numpy_network import Network, as_training_data

    x, y = torch.from_numpy(dataset.train_x), torch.from_numpy(dataset.train_y)
    epochs, samples = sizes.epochs[batch], len(y) * sizes.epochs[batch]
    numpy_data = as_training_data(dataset.train_x[: sizes.numpy_samples], dataset.train_y[: sizes.numpy_samples])
    inputs = int(x[0].numel())

    def numpy_rate() -> float:
        return len(numpy_data) / Network([inputs, 30, 10]).sgd(numpy_data, 1, batch, 3.0)

    variants = {
        NUMPY: numpy_rate,
        LOADER: lambda: samples / baselines.dataloader_loop(x, y, batch, epochs),
        IN_MEMORY: lambda: samples / baselines.in_memory_loop(x, y, batch, epochs),
        OURS: lambda: our_trainer(dataset, batch, epochs),
    }
    return ctx.alternate(variants, sizes.reps)


def our_trainer(dataset, batch_size: int, epochs: int) -> float:
    """samples/s of exactly the epochs `labclient train` runs (its _Session), with nothing logged."""
    return untracked_training(dataset, batch_size, epochs).samples_per_s


def untracked_training(dataset, batch_size: int, epochs: int):
    """`labclient train`'s own training (its _Session) with no run: nothing journalled, nothing sent."""
    import torch

    from labclient.models import compute
    from labclient.training import loop as training
    from labclient.training.progress import Reporter

    options = training.TrainOptions(
        team="bench",
        trainer="mnist-mlp",
        dataset=dataset.name,
        device="cpu",
        overrides={"batch_size": batch_size, "epochs": epochs},
    )
    trainer = training.load_trainer(options.trainer)
    config = training.build_config(trainer, options.overrides)
    torch.manual_seed(config.seed)
    model = trainer.build_model(config, dataset.input_shape, dataset.num_classes)
    figures = compute.measure(model, dataset.input_shape)
    tensors = training._to_tensors(dataset, "cpu", None)
    session = training._Session(options, trainer, config, dataset, model, figures, "cpu", tensors, Reporter(quiet=True))
    return session.run(None)


def _body(rates: dict[int, dict[str, list[float]]]) -> str:
    rows = []
    for variant in VARIANTS:
        row = [variant]
        for batch in BATCH_SIZES:
            measured = stats(rates[batch][variant])
            versus = paired_ratios(rates[batch][variant], rates[batch][IN_MEMORY]).median
            row += [fmt_spread(measured, "samples/s"), f"{versus:.2f}×"]
        rows.append(row)
    headers = ["trainer"] + [cell for batch in BATCH_SIZES for cell in (f"batch {batch}: samples/s", "vs in-memory")]
    return table(headers, rows)


def _notes(ctx: Context, dataset, sizes: Sizes) -> list[str]:
    return [
        f"Data: {dataset.name}, {len(dataset.train_y):,} training images, read in place"
        + (f" from `{ctx.data_dir}`." if dataset.name == "mnist" else "."),
        "Network: inputs-30-10, sigmoid, quadratic cost, SGD eta 3.0 (mnist-mlp's defaults), on the CPU.",
        f"Each PyTorch measurement trains {sizes.epochs[10]} epoch(s) at batch 10 and {sizes.epochs[128]} at batch 128 "
        f"from a fresh model; samples/s counts only the epochs. {sizes.reps} repetitions after one warm-up, "
        "variants in rotating order; ratios are the median of per-repetition ratios.",
        f"The numpy network trains one epoch on the first {sizes.numpy_samples:,} images (float64, one sample at a "
        "time, "
        "as in the book); its speed does not depend on the size of the set.",
        "Ours is labclient.training.loop's _Session (the loop `labclient train` runs, reading step costs off the "
        "device in "
        "groups of 50), with no run, so nothing is logged; the time is its own `training_time_s`.",
    ]
