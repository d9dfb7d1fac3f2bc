"""Loss functions on model outputs, mean over examples.

- ``cross_entropy``: ``mean_i [logsumexp(z_i) - z_i[y_i]]`` for logits ``z`` of shape
  ``[N, C]`` and integer labels ``y`` of shape ``[N]``.
- ``mse``: the squared loss of Cohen et al., ``mean_i 0.5 * ||f(x_i) - t_i||^2`` where ``t_i``
  is ``onehot(y_i)`` for classification (integer ``y``) or ``y_i`` itself for regression
  (float ``y`` of shape ``[N]`` or ``[N, K]``).

``per_example`` variants return shape ``[N]``; ``accuracy`` returns the fraction of
correct argmax predictions (NaN for regression).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("cross_entropy", "mse")


def _targets_like(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        return F.one_hot(y.long(), out.shape[-1]).to(out.dtype)
    return y.to(out.dtype).reshape(out.shape)


def per_example_loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of each example, shape ``[N]``."""
    if kind == "cross_entropy":
        return F.cross_entropy(out, y.long(), reduction="none")
    if kind == "mse":
        return 0.5 * (out - _targets_like(out, y)).pow(2).reshape(out.shape[0], -1).sum(1)
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the batch, a scalar tensor."""
    if kind == "cross_entropy":
        return F.cross_entropy(out, y.long())
    return per_example_loss(out, y, kind).mean()


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of examples whose argmax equals the integer label; NaN for regression."""
    if y.is_floating_point():
        return float("nan")
    return (out.argmax(-1) == y).to(torch.float64).mean().item()
