"""logreg: multinomial logistic regression, one linear layer and a softmax cross-entropy cost.

The baseline every other model should beat (about 92% on MNIST).
"""

from __future__ import annotations

import torch.nn as nn
from pydantic import Field

from labtrainers.defaults import TrainConfig, evaluate, make_optimizer, train_one_epoch  # noqa: F401  (trainer API)


class Config(TrainConfig):
    lr: float = Field(0.5, gt=0)
    batch_size: int = Field(64, ge=1)


def build_model(config: Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    inputs = 1
    for size in input_shape:
        inputs *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, num_classes))
