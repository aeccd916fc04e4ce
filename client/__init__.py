"""labclient: train, exchange and compare models on a shared MLflow server.

Attributes are imported lazily so `labclient --help` never pays for torch or mlflow.
"""

from __future__ import annotations

__all__ = [
    "start_run",
    "create_run",
    "train",
    "TrainOptions",
    "fetch",
    "push",
    "load_model",
    "uncache",
    "login",
    "leaderboard",
]

_LAZY = {
    "start_run": "labclient.tracking.run",
    "create_run": "labclient.tracking.run",
    "train": "labclient.training.loop",
    "TrainOptions": "labclient.training.loop",
    "fetch": "labclient.exchange.fetch",
    "push": "labclient.exchange.push",
    "load_model": "labclient.exchange.fetch",
    "uncache": "labclient.exchange.fetch",
    "login": "labclient.store.login",
    "leaderboard": "labclient.diary.leaderboard",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labclient' has no attribute {name!r}")
