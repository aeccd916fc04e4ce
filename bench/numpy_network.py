"""The textbook numpy network of "Neural Networks and Deep Learning", chapter 1 (network.py).

Stochastic gradient descent where each mini-batch's gradient is the sum of per-sample backprop
passes on column vectors, sigmoid neurons, quadratic cost: the baseline students type in first.
Written out here the way the book does it (float64, lists of (x, y) column-vector pairs).
"""

from __future__ import annotations

import time

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    return sigmoid(z) * (1 - sigmoid(z))


class Network:
    def __init__(self, sizes: list[int], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.biases = [self.rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [self.rng.standard_normal((y, x)) for x, y in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(w @ a + b)
        return a

    def sgd(self, training_data: list, epochs: int, mini_batch_size: int, eta: float) -> float:
        """Train; returns the seconds spent in the epochs."""
        seconds = 0.0
        for _ in range(epochs):
            started = time.perf_counter()
            self.rng.shuffle(training_data)
            for k in range(0, len(training_data), mini_batch_size):
                self.update_mini_batch(training_data[k : k + mini_batch_size], eta)
            seconds += time.perf_counter() - started
        return seconds

    def update_mini_batch(self, mini_batch: list, eta: float) -> None:
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list, list]:
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            z = w @ activation + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])  # dC/da of the quadratic cost, times sigma'
        nabla_b[-1] = delta
        nabla_w[-1] = delta @ activations[-2].T
        for layer in range(2, len(self.sizes)):
            delta = (self.weights[-layer + 1].T @ delta) * sigmoid_prime(zs[-layer])
            nabla_b[-layer] = delta
            nabla_w[-layer] = delta @ activations[-layer - 1].T
        return nabla_b, nabla_w

    def accuracy(self, test_data: list) -> float:
        return sum(int(np.argmax(self.feedforward(x)) == y) for x, y in test_data) / len(test_data)


def as_training_data(images: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The book's format: float64 column vectors and one-hot column targets ("vectorized_result")."""
    pixels = images.reshape(len(images), -1, 1).astype(np.float64)
    targets = np.zeros((len(labels), 10, 1))
    targets[np.arange(len(labels)), labels, 0] = 1.0
    return list(zip(pixels, targets))


def as_test_data(images: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, int]]:
    return list(zip(images.reshape(len(images), -1, 1).astype(np.float64), labels.tolist()))
