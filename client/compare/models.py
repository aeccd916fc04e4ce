"""Which two models a comparison is about, loaded from the verified cache, and the held-out data they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labclient.errors import IncompatibleModels, NotCached


@dataclass
class Side:
    """One model of the comparison: its cached run, rebuilt module and what its run recorded."""

    key: str  # "a" or "b"
    fetched: Any  # labclient.exchange.fetch.FetchResult
    model: Any  # labclient.exchange.fetch.LoadedModel

    @property
    def name(self) -> str:
        return self.fetched.name

    @property
    def meta(self) -> dict:
        return self.fetched.entry.meta

    @property
    def params(self) -> dict:
        return self.meta.get("params", {})

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics", {})

    @property
    def tags(self) -> dict:
        return self.meta.get("tags", {})

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.model.spec.get("input_shape") or _shape(self.params.get("dataset_input_shape"))
        return tuple(int(dim) for dim in shape or ())

    @property
    def num_classes(self) -> int | None:
        value = self.model.spec.get("num_classes") or self.params.get("dataset_num_classes")
        return int(value) if value not in (None, "") else None

    @property
    def dataset(self) -> str | None:
        dataset = self.params.get("dataset") or (self.model.config.get("dataset") or {}).get("dataset")
        return None if dataset in (None, "", "unknown") else str(dataset)


def pick_references(references: tuple[str, ...], team: str | None, settings) -> tuple[str, str]:
    """No reference: last fetched vs your latest. One: that run vs your latest. Two: those two."""
    from labclient.exchange.cache import ModelCache
    from labclient.store.target import validate_team

    if len(references) == 2:
        return references[0], references[1]
    mine = f"{validate_team(team or settings.team)}/latest"
    if len(references) == 1:
        return references[0], mine
    last = ModelCache.from_settings(settings).last_fetched()
    if last is None:
        raise NotCached(
            "nothing has been fetched yet, so there is no model to compare with yours",
            "run `labclient fetch TEAM/run-N` first, or name two runs",
        )
    return last, mine


def load_side(key: str, reference: str, tracking_uri: str | None, settings) -> Side:
    from labclient.exchange.fetch import fetch

    fetched = fetch(reference, tracking_uri=tracking_uri, settings=settings)
    return Side(key, fetched, fetched.load_model())


def check_compatible(a: Side, b: Side) -> str:
    """The dataset both models are evaluated on; refuses models that cannot share held-out data."""
    if a.input_shape != b.input_shape:
        raise IncompatibleModels(
            f"{a.name} takes inputs of shape {_text(a.input_shape)} but {b.name} takes {_text(b.input_shape)}",
            "compare models trained on the same dataset",
        )
    if a.num_classes != b.num_classes:
        raise IncompatibleModels(
            f"{a.name} predicts {a.num_classes} classes but {b.name} predicts {b.num_classes}: their label sets differ",
            "compare models trained on the same dataset",
        )
    if a.dataset and b.dataset and a.dataset != b.dataset:
        raise IncompatibleModels(
            f"{a.name} was trained on {a.dataset} but {b.name} on {b.dataset}",
            "compare models trained on the same dataset",
        )
    dataset = a.dataset or b.dataset
    if dataset is None:
        raise IncompatibleModels(
            f"neither {a.name} nor {b.name} records its dataset",
            "push the weights again with --dataset mnist (or digits)",
        )
    return dataset


def load_data(name: str, shape: tuple[int, ...], num_classes: int | None, data_dir: Path | None, settings):
    from labclient.training.data import load_dataset

    dataset = load_dataset(name, data_dir or settings.data_dir, settings.cache_dir, settings.mnist_mirrors)
    if tuple(dataset.input_shape) != tuple(shape) or (num_classes and dataset.num_classes != num_classes):
        raise IncompatibleModels(
            f"the {name} data has inputs {_text(dataset.input_shape)} and {dataset.num_classes} classes, the models "
            f"expect {_text(shape)} and {num_classes}",
            "pass the data directory the models were trained on with --data-dir",
        )
    return dataset


def _shape(text) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in str(text).split("x")]
    except ValueError:
        return None


def _text(shape) -> str:
    return "x".join(map(str, shape)) or "?"
