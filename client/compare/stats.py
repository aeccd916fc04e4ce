"""The statistics of a comparison, in plain numpy: agreement tables, McNemar's exact test, linear CKA
and weight differences (confusion matrices are labclient.models.evaluation's). No torch here, so each
can be checked against a hand computation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Agreement:
    both_correct: int
    only_a_correct: int  # McNemar's b
    only_b_correct: int  # McNemar's c
    both_wrong: int
    agreement: float  # fraction of samples where the two models predict the same class
    disagreements: int

    @property
    def mcnemar_p(self) -> float:
        return mcnemar_exact(self.only_a_correct, self.only_b_correct)


def agreement(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> Agreement:
    right_a, right_b = pred_a == labels, pred_b == labels
    return Agreement(
        both_correct=int(np.sum(right_a & right_b)),
        only_a_correct=int(np.sum(right_a & ~right_b)),
        only_b_correct=int(np.sum(~right_a & right_b)),
        both_wrong=int(np.sum(~right_a & ~right_b)),
        agreement=float(np.mean(pred_a == pred_b)) if len(labels) else 1.0,
        disagreements=int(np.sum(pred_a != pred_b)),
    )


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: under H0 the b + c discordant pairs split as Binomial(b + c, 1/2).

    p = min(1, 2 * P(X <= min(b, c))), computed with exact integers.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n samples.

    Computed from centred Gram matrices, <K, L> / (||K|| ||L||), so the feature counts may differ and
    large convolutional features cost n^2 memory, not features^2. Invariant to orthogonal transforms and
    isotropic scaling of either side.
    """
    return cka_matrix([x], [y])[0][0]


def cka_matrix(reps_a: list[np.ndarray], reps_b: list[np.ndarray]) -> list[list[float]]:
    """Linear CKA of every representation in reps_a with every one in reps_b; each Gram matrix once."""
    grams_a, grams_b = [_unit_gram(x) for x in reps_a], [_unit_gram(y) for y in reps_b]
    return [[float(np.sum(ka * kb)) if ka is not None and kb is not None else 0.0 for kb in grams_b] for ka in grams_a]


def _unit_gram(features: np.ndarray) -> np.ndarray | None:
    centred = _centred(features)
    gram = centred @ centred.T
    norm = np.linalg.norm(gram)
    return gram / norm if norm else None


def _centred(features: np.ndarray) -> np.ndarray:
    flat = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return flat - flat.mean(axis=0, keepdims=True)


def tensor_diff(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    distance = float(np.linalg.norm(a - b))
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return {
        "l2_distance": distance,
        "relative_difference": distance / norm_a if norm_a else None,
        "cosine_similarity": float(a @ b / (norm_a * norm_b)) if norm_a and norm_b else None,
    }


def norm_stats(tensor: np.ndarray) -> dict[str, float]:
    values = np.asarray(tensor, dtype=np.float64).ravel()
    if not values.size:
        return {"l2": 0.0, "mean": 0.0, "std": 0.0, "max_abs": 0.0}
    return {
        "l2": float(np.linalg.norm(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "max_abs": float(np.abs(values).max()),
    }
