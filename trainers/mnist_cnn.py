"""mnist-cnn: a LeNet-style convolutional network.

Two 5x5 convolutions with max pooling, then three fully connected layers, ReLU throughout and a
softmax cross-entropy cost. The size of the flattened features is measured, so 8x8 digits work too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from pydantic import Field

from labtrainers.defaults import TrainConfig, evaluate, make_optimizer, train_one_epoch  # noqa: F401  (trainer API)


class Config(TrainConfig):
    channels: list[int] = Field(default_factory=lambda: [6, 16], min_length=2, max_length=2)
    hidden: list[int] = Field(default_factory=lambda: [120, 84])
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)


def build_model(config: Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    first, second = config.channels
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], first, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(first, second, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
    )
    with torch.no_grad():
        inputs = features(torch.zeros(1, *input_shape)).shape[1]
    layers = list(features)
    for width in config.hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    layers.append(nn.Linear(inputs, num_classes))
    return nn.Sequential(*layers)
