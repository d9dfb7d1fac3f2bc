"""Dense, slow, obvious ground truth that the fast code is compared against.

Every function here is the textbook definition computed the plainest way, on tiny models, in
whatever dtype the caller's model has (use float64 for tight tolerances):

- ``exact_hessian``: ``torch.func.hessian`` of the mean loss as a function of the flat
  parameter vector ``theta`` [P] (parameters in ``named_parameters()`` order); [P, P].
- ``surface_point``: the loss and accuracy at ``w + a dx + b dy`` by copying the model,
  writing the parameters and running one plain forward pass over all the data.
- ``exact_ggn``: the generalized Gauss-Newton matrix ``(1/N) sum_i J_i^T H_i J_i`` from the
  per-example logit Jacobians ``J_i`` [C, P] (``torch.func.jacrev``) and the Hessian ``H_i``
  [C, C] of the loss with respect to the logits; [P, P].
- ``exact_empirical_fisher``: ``(1/N) sum_i g_i g_i^T`` from the per-example loss gradients
  ``g_i`` (``torch.func.jacrev`` of the per-example losses); [P, P].
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call

from landscape.core.losses import loss


def _named(model):
    return [(n, p.detach()) for n, p in model.named_parameters() if p.requires_grad]


def flat_params(model) -> torch.Tensor:
    """The trainable parameters as one vector [P], in ``named_parameters()`` order."""
    return torch.cat([p.reshape(-1) for _, p in _named(model)])


def _unflatten(named, t):
    params, s = {}, 0
    for n, p in named:
        params[n] = t[s:s + p.numel()].reshape(p.shape)
        s += p.numel()
    return params


def exact_hessian(model, X, y, kind) -> np.ndarray:
    """The Hessian of the mean loss at the model's parameters; [P, P]."""
    named = _named(model)

    def f(t):
        return loss(functional_call(model, _unflatten(named, t), (X,)), y, kind)

    return torch.func.hessian(f)(flat_params(model)).numpy()


def exact_ggn(model, X, y, kind) -> np.ndarray:
    """``(1/N) sum_i J_i^T H_i J_i`` with ``J_i = d f(x_i) / d theta`` [C, P] and
    ``H_i = d^2 loss_i / d f^2`` [C, C] (one example at a time); [P, P]."""
    named = _named(model)
    theta = flat_params(model)
    G = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype)
    for i in range(X.shape[0]):
        xi, yi = X[i:i + 1], y[i:i + 1]
        J = torch.func.jacrev(lambda t, xi=xi: functional_call(model, _unflatten(named, t), (xi,))[0])(theta)
        out = functional_call(model, _unflatten(named, theta), (xi,))[0].detach()
        Hf = torch.func.hessian(lambda f, yi=yi: loss(f[None], yi, kind))(out)
        G += J.T @ Hf @ J
    return (G / X.shape[0]).numpy()


def surface_point(model, X, y, kind, w, dx, dy, a: float, b: float = 0.0) -> tuple[float, float]:
    """Loss and accuracy (fraction) at ``w + a dx + b dy`` (flat vectors [P] in
    ``named_parameters()`` order; ``dy`` may be None): a private copy, parameters written,
    one forward pass in eval mode."""
    m = copy.deepcopy(model).eval()
    theta = w + a * dx + (0 if dy is None else b * dy)
    with torch.no_grad():
        for (_, p), (_, v) in zip(_named(m), _unflatten(_named(m), theta).items()):
            p.copy_(v)
        out = m(X)
        val = float(loss(out, y, kind))
        acc = float((out.argmax(1) == y).float().mean()) if out.ndim == 2 and out.shape[1] > 1 else float("nan")
    return val, acc


def exact_empirical_fisher(model, X, y, kind) -> np.ndarray:
    """``(1/N) sum_i g_i g_i^T`` with ``g_i = d loss_i / d theta`` [P] at the observed labels
    (``torch.func.jacrev`` of the per-example losses [N]); [P, P]."""
    from landscape.core.losses import per_example_loss

    named = _named(model)
    theta = flat_params(model)
    Jl = torch.func.jacrev(lambda t: per_example_loss(
        functional_call(model, _unflatten(named, t), (X,)), y, kind))(theta)
    return (Jl.T @ Jl / X.shape[0]).numpy()
