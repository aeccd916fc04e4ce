"""What a refused pickle must not change: every class and function of the safe loader, as plain values.
Imported by child processes (the fuzzer, the loaders of test_loading.py), never by pytest itself."""

from __future__ import annotations

import inspect
import pickle


def snapshot() -> dict:
    from labclient.models import pickle_numpy, safe_pickle

    state = {"pickle._Unpickler.dispatch": dict(pickle._Unpickler.dispatch)}
    for module in (safe_pickle, pickle_numpy):
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__:
                state[f"{module.__name__}.{name}"] = dict(vars(value))
            elif inspect.isfunction(value):
                state[f"{module.__name__}.{name}"] = (
                    value.__code__,
                    value.__defaults__,
                    value.__kwdefaults__,
                    dict(value.__dict__),
                )
    return state


def changed(before: dict) -> list[str]:
    after = snapshot()
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
