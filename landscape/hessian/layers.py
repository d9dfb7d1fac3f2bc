"""Per-layer curvature: the top eigenvalue and trace of each parameter tensor's diagonal
block ``H_bb = E_b^T H E_b`` (``E_b`` the columns of the identity for that tensor's entries).

A block's top eigenvalue says how sharp the loss is along that tensor alone; the block traces
sum to ``tr H``. Units: loss / parameter^2. Each block product costs one full HVP.
"""

from __future__ import annotations

import time

import numpy as np

from landscape.core.errors import Cancelled
from landscape.hessian.lanczos import is_cancelled, top_eigenpairs
from landscape.hessian.operator import HessianOperator
from landscape.hessian.results import LayerResult, result_meta
from landscape.hessian.trace import hutchinson_trace

__all__ = ["layer_spectra"]


def layer_spectra(op: HessianOperator, probes: int = 30, tol: float | None = None,
                  seed: int = 0, progress=None, cancel=None) -> LayerResult:
    """Top eigenvalue and trace of each parameter tensor's diagonal block ``H_bb``.

    The top eigenvalue uses :func:`top_eigenpairs` with k=1 on :meth:`HessianOperator.block`;
    the trace is exact (unit vectors, stderr 0) when the block has at most ``probes`` entries,
    else Hutchinson with ``probes`` probes.
    """
    t0, h0 = time.perf_counter(), op.hvps
    top, res, tr, se = [], [], [], []
    for name in op.names:
        if is_cancelled(cancel):
            raise Cancelled("per-layer spectra cancelled")
        b = op.block(name)
        e = top_eigenpairs(b, k=1, tol=tol, seed=seed, cancel=cancel)
        top.append(e.eigenvalues[0])
        res.append(e.residuals[0])
        if b.n_params <= probes:
            tr.append(float(b.diagonal().sum()))
            se.append(0.0)
        else:
            t = hutchinson_trace(b, probes=probes, seed=seed, cancel=cancel)
            tr.append(t.trace)
            se.append(t.stderr)
        if progress is not None:
            progress(len(top), len(op.names))
    meta = result_meta(op, op.hvps - h0, time.perf_counter() - t0, probes=probes)
    return LayerResult(list(op.names), list(op.shapes), np.asarray(op.sizes), np.asarray(top),
                       np.asarray(res), np.asarray(tr), np.asarray(se), meta)
