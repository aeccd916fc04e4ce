"""`labclient compare`: two models on the same held-out data, side by side.

    core.py       orchestration: pick the runs, evaluate, assemble the JSON, write the report, log it
    models.py     which runs, loaded from the verified cache, and the data they share
    evaluate.py   torch: each model's own cost, hidden representations, latency
                  (held-out evaluation itself: labclient.models.evaluation, shared with training)
    stats.py      numpy: McNemar's exact test, linear CKA, weight differences
    figures.py    matplotlib PNGs;  document.py  Markdown/HTML;  terminal.py  rich
Imports stay lazy so `labclient compare --help` loads neither torch nor mlflow.
"""

from __future__ import annotations

__all__ = ["CompareOptions", "Comparison", "run_comparison"]


def __getattr__(name: str):
    if name in __all__:
        from labclient.compare import core

        return getattr(core, name)
    raise AttributeError(f"module 'labclient.compare' has no attribute {name!r}")
