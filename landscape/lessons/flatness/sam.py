"""One update of SGD or of sharpness-aware minimization (SAM, Foret et al. 2021).

SAM minimizes ``max_{||e|| <= rho} L(w + e)``; to first order the worst ``e`` is
``rho g / ||g||`` with ``g = grad L(w)`` on the batch, so one SAM update is

    g = grad L_B(w);   e = rho g / ||g||;   w <- w - lr * grad L_B(w + e)

(two forward/backward passes on the same batch ``B``; ``||.||`` the Euclidean norm over all
parameters, so ``rho`` is a parameter-space distance). With ``rho = 0`` it is plain SGD.
"""

from __future__ import annotations

import torch

from landscape.core import losses


def update(model: torch.nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor,
           loss_kind: str = "cross_entropy", rho: float = 0.0) -> float:
    """One SGD (``rho == 0``) or SAM (``rho > 0``) step of ``opt`` on the batch ``(X, y)``;
    returns the batch loss at ``w`` (before the update)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = losses.loss(model(X), y, loss_kind)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if rho > 0:
        with torch.no_grad():
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
            eps = [rho * p.grad / (norm + 1e-12) for p in params]
            for p, e in zip(params, eps):
                p.add_(e)
        opt.zero_grad(set_to_none=True)
        losses.loss(model(X), y, loss_kind).backward()
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.sub_(e)
    opt.step()
    return float(loss.item())
