"""Trainers: one readable file each. A trainer module defines

    Config                      a pydantic model (subclass of labtrainers.defaults.TrainConfig) of every hyperparameter
    build_model(config, input_shape, num_classes) -> torch.nn.Module

and may define `make_optimizer(model, config)`, `train_one_epoch(...)` and `evaluate(...)` with the signatures
in labtrainers.defaults, which supplies them otherwise. `--trainer path/to/file.py` loads a team's own file.
"""

from __future__ import annotations

BUILTIN = {
    "mnist-mlp": "labtrainers.mnist_mlp",
    "mnist-cnn": "labtrainers.mnist_cnn",
    "logreg": "labtrainers.logreg",
}
