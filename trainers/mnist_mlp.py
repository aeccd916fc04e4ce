"""mnist-mlp: the classic textbook network, 784-30-10 with sigmoid neurons.

Trained as in chapter 1 of "Neural Networks and Deep Learning": quadratic cost, plain SGD,
eta = 3.0, mini-batches of 10. Choose `cost=cross_entropy` to get a softmax output layer instead.
"""

from __future__ import annotations

from typing import Literal

import torch.nn as nn
from pydantic import Field

from labtrainers.defaults import TrainConfig, evaluate, make_optimizer, train_one_epoch  # noqa: F401  (trainer API)


class Config(TrainConfig):
    hidden: list[int] = Field(default_factory=lambda: [30], description="sizes of the hidden layers")
    activation: Literal["sigmoid", "relu", "tanh"] = "sigmoid"
    cost: Literal["cross_entropy", "quadratic"] = "quadratic"
    lr: float = Field(3.0, gt=0)
    batch_size: int = Field(10, ge=1)


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def build_model(config: Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    inputs = 1
    for size in input_shape:
        inputs *= size
    layers: list[nn.Module] = [nn.Flatten()]
    for width in config.hidden:
        layers += [nn.Linear(inputs, width), ACTIVATIONS[config.activation]()]
        inputs = width
    layers.append(nn.Linear(inputs, num_classes))
    if config.cost == "quadratic":
        layers.append(nn.Sigmoid())  # the quadratic cost compares sigmoid outputs with one-hot targets
    return nn.Sequential(*layers)
