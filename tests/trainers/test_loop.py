"""The shared training loop's cost functions: the fused quadratic cost is the textbook one, value and gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labtrainers.defaults import cost_function


@pytest.mark.parametrize("batch, dtype", [(1, torch.float32), (10, torch.float32), (128, torch.float64)])
def test_quadratic_cost_is_half_the_squared_distance_to_the_one_hot_target_averaged(batch, dtype):
    generator = torch.Generator().manual_seed(batch)
    activations = torch.rand(batch, 10, generator=generator, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 10, (batch,), generator=generator)

    cost = cost_function("quadratic")(activations, labels)
    cost.backward()

    a = activations.detach().numpy()
    y = np.eye(10)[labels.numpy()]
    assert cost.item() == pytest.approx(0.5 * ((a - y) ** 2).sum(axis=1).mean(), rel=1e-6)
    # dC/da = (a - y) / batch: what backpropagation starts from (Nielsen, chapter 2)
    np.testing.assert_allclose(activations.grad.numpy(), (a - y) / batch, rtol=1e-6, atol=1e-9)
    assert cost.dtype == dtype


def test_unknown_cost_is_refused():
    with pytest.raises(ValueError, match="unknown cost 'hinge'"):
        cost_function("hinge")
