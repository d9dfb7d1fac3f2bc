r"""Gauss-Newton and empirical-Fisher operators: the same interface as the Hessian's.

With network outputs ``f_i = f_theta(x_i)`` [C] and the mean loss
``L = (1/N) sum_i l(f_i, y_i)``, the Hessian splits as ``H = G + R`` (Schraudolph 2002;
Sagun et al. 2017; Papyan 2019):

.. math::  G = \frac1N \sum_i J_i^\top H_{f,i} J_i, \qquad
           R = \frac1N \sum_i \sum_c \frac{\partial \ell_i}{\partial f_{ic}} \nabla^2_\theta f_{ic},

``J_i = d f_i / d theta`` [C, P], ``H_{f,i} = d^2 l_i / d f_i^2`` [C, C]. For cross-entropy
``H_f = diag(p) - p p^T`` (``p`` the softmax), for the squared loss ``0.5 ||f - t||^2`` it is
the identity; for both losses the true Fisher information of the model's predictive
distribution equals ``G`` (Martens 2020). The **empirical Fisher**
``F = (1/N) sum_i g_i g_i^T`` uses the per-example gradients ``g_i = d l_i / d theta`` [P] at
the observed labels; it is not a curvature matrix and its spectrum can differ badly from G's
(Kunstner, Balles & Hennig 2019). Units of all three: loss / parameter^2.

Products, matrix-free (never ``J`` nor the per-example gradients as matrices). Per chunk the
outputs ``z`` are kept with their graph (``z = f`` [n, C] for G; ``z = (l_i)_i`` [n] for F)
together with ``g(u) = J_z^T u`` built with ``create_graph=True`` for a dummy ``u`` shaped
like ``z``. Then ``J_z v = d (g(u) . v) / du`` (the double-VJP form of a JVP: it needs only
reverse mode, so it runs on every model the Hessian runs on, torch.export modules included),
``m = M (J_z v)`` with ``M`` the loss's Hessian in ``z`` (an exact second backward through
the chunk's mean loss for G; ``1/n`` for F), and ``J_z^T m`` is one more backward. Each
product costs about two HVPs' worth of backward passes and counts as one in ``hvps``.

:class:`GaussNewtonOperator` inherits everything else from
:class:`~landscape.hessian.operator.HessianOperator` (``set_point``, ``matmat``, ``block``,
``class_mean_gradients``, ``loss_at``), so top-k, trace, density, per-layer and outliers
work unchanged. :func:`curvature_operator` builds any of the three by name.
"""

from __future__ import annotations

import torch

from landscape.core.errors import LandscapeError
from landscape.core.losses import loss as loss_fn
from landscape.core.losses import per_example_loss
from landscape.hessian.operator import HessianOperator

__all__ = ["OPERATORS", "OPERATOR_NAMES", "GaussNewtonOperator", "curvature_operator"]

#: The curvature operators by name (the CLI's ``--operator`` choices).
OPERATORS = ("hessian", "ggn", "empirical-fisher")
#: Display names (pages, figure titles).
OPERATOR_NAMES = {"hessian": "Hessian H", "ggn": "Gauss-Newton G",
                  "empirical-fisher": "empirical Fisher F"}


class GaussNewtonOperator(HessianOperator):
    """The generalized Gauss-Newton matrix (``kind="ggn"``) or the empirical Fisher
    (``kind="empirical-fisher"``) of the full-batch mean loss, as an operator [P, P].

    Arguments as :class:`~landscape.hessian.operator.HessianOperator`, plus ``kind``. Both
    matrices are symmetric positive semi-definite. ``batch_size`` chunks are weighted
    ``n_chunk / N`` like the Hessian's, so for F the sum over all examples is exact.
    """

    def __init__(self, model, X, y, loss_kind: str = "cross_entropy", kind: str = "ggn",
                 **kwargs):
        if kind not in ("ggn", "empirical-fisher"):
            raise LandscapeError(f"kind must be 'ggn' or 'empirical-fisher', got {kind!r}")
        self.kind = kind
        super().__init__(model, X, y, loss_kind, **kwargs)

    def _build(self) -> None:
        """Per chunk: outputs ``z`` with their graph, ``g(u) = J_z^T u`` with
        ``create_graph``, and the product with the loss's Hessian in ``z``."""
        self._graphs = []
        total = 0.0
        grad = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for Xc, yc, w in self._chunks():
                try:
                    out = self._model(Xc)
                    if self.kind == "ggn":
                        z = out
                        zd = out.detach().requires_grad_(True)
                        val = loss_fn(zd, yc, self.loss_kind)
                        gz = torch.autograd.grad(val, zd, create_graph=True)[0]
                    else:
                        z = per_example_loss(out, yc, self.loss_kind)
                        val = z.mean()
                        zd, gz = None, torch.full_like(z, 1.0 / z.numel())
                except LandscapeError:
                    raise
                except Exception as e:
                    raise LandscapeError(
                        f"the model cannot compute the {self.loss_kind} loss on this data: "
                        f"{str(e).splitlines()[0][:200]}") from None
                if not torch.isfinite(val):
                    raise LandscapeError(f"the loss is not finite at this point ({val.item()})")
                u = torch.zeros_like(z, requires_grad=True)
                g = torch.autograd.grad(z, self._params, grad_outputs=u, create_graph=True,
                                        allow_unused=True, materialize_grads=True)
                live = [i for i, gi in enumerate(g) if gi.requires_grad]
                self._graphs.append((w, (z, zd, gz, u, g), live))
                gp = torch.autograd.grad(z, self._params, grad_outputs=gz.detach(),
                                         retain_graph=True, allow_unused=True,
                                         materialize_grads=True)
                grad.add_(torch.cat([t.reshape(-1) for t in gp]), alpha=w)
                total += w * float(val.detach())
        self._grad = grad
        self.loss_value = total
        self.graph_builds += 1

    def gradient(self):
        """The full-batch gradient ``dL/dtheta`` [P] at the current point (float64)."""
        return self._grad.double().cpu().numpy()

    def _hvp(self, v: torch.Tensor, batched: bool = False) -> torch.Tensor:
        if batched:
            raise NotImplementedError("no batched products for the Gauss-Newton operator")
        parts = self._split(v)
        total = torch.zeros_like(v)
        for w, (z, zd, gz, u, g), live in self._graphs:
            if not live:
                continue
            jv = torch.autograd.grad([g[i] for i in live], u,
                                     grad_outputs=[parts[i] for i in live],
                                     retain_graph=True)[0]          # J_z v, shaped like z
            if zd is not None:                                       # H_f (J v), exact
                m = torch.autograd.grad(gz, zd, grad_outputs=jv, retain_graph=True)[0]
            else:                                                    # (1/n) (J v)
                m = jv * gz
            jtm = torch.autograd.grad(z, self._params, grad_outputs=m, retain_graph=True,
                                      allow_unused=True, materialize_grads=True)
            total.add_(torch.cat([t.reshape(-1) for t in jtm]), alpha=w)
        return total


def curvature_operator(kind: str, model, X, y, loss_kind: str = "cross_entropy", **kwargs):
    """The operator named ``kind`` (one of :data:`OPERATORS`) of ``model`` on ``(X, y)``;
    ``kwargs`` as for :class:`~landscape.hessian.operator.HessianOperator`."""
    if kind == "hessian":
        return HessianOperator(model, X, y, loss_kind, **kwargs)
    if kind in OPERATORS:
        return GaussNewtonOperator(model, X, y, loss_kind, kind=kind, **kwargs)
    raise LandscapeError(f"unknown operator {kind!r}; choose one of {OPERATORS}")
