"""Saving weights as safetensors, with the trainer config and model spec travelling in its metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def to_state_dict(weights: Any) -> dict:
    """Accepts an nn.Module, a state dict of tensors, or a dict of numpy arrays."""
    import numpy as np
    import torch

    if isinstance(weights, torch.nn.Module):
        weights = weights.state_dict()
    if not isinstance(weights, dict):
        raise TypeError(f"cannot save weights of type {type(weights).__name__}; pass a module or a dict of tensors")
    state = {}
    for name, value in weights.items():
        tensor = torch.from_numpy(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
        state[str(name)] = tensor.detach().cpu().contiguous()
    return state


def save_safetensors(weights: Any, path: Path, metadata: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    text_metadata = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in (metadata or {}).items()
    }
    save_file(to_state_dict(weights), str(path), metadata=text_metadata)
    return path
