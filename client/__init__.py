"""labclient: train, exchange and compare models on a shared MLflow server.

Attributes are imported lazily so `labclient --help` never pays for torch or mlflow.
"""

from __future__ import annotations

__all__ = ["start_run", "create_run", "train", "TrainOptions", "fetch", "push", "load_model"]

_LAZY = {
    "start_run": "labclient.run",
    "create_run": "labclient.run",
    "train": "labclient.training",
    "TrainOptions": "labclient.training",
    "fetch": "labclient.exchange",
    "push": "labclient.exchange",
    "load_model": "labclient.exchange",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labclient' has no attribute {name!r}")
