"""The warm-started Davidson tracker (landscape.hessian.tracking) against dense eigh on small
symmetric matrices: accuracy, residuals, the gain of a warm start, the probe curvatures and
the preconditioned (scaled) operator."""

import numpy as np
import torch

from landscape.hessian.tracking import ScaledOperator, pad_nan, track_top


class Dense:
    """A dense symmetric matrix as an operator (numpy products, counted)."""

    def __init__(self, A):
        self.A = np.asarray(A, np.float64)
        self.n_params = len(self.A)
        self.dtype_name = "float64"
        self.hvps = 0

    def matvec(self, v):
        self.hvps += 1
        return self.A @ np.asarray(v, np.float64).reshape(-1)


class DenseTorch(Dense):
    """The same with the tensor fast path (``hvp``, ``dtype``, ``device``)."""

    dtype = torch.float64
    device = torch.device("cpu")

    def hvp(self, v):
        self.hvps += 1
        return torch.from_numpy(self.A) @ v.to(torch.float64)


def _sym(P=80, seed=0, top=(10.0, 8.5, 7.0)):
    """A symmetric [P, P] matrix with a separated top of the spectrum and a bulk in [-1, 4]."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    w = np.concatenate([top, rng.uniform(-1.0, 4.0, P - len(top))])
    A = (Q * w) @ Q.T
    return 0.5 * (A + A.T)


def _top(A, k):
    w, U = np.linalg.eigh(A)
    return w[::-1][:k], U[:, ::-1][:, :k].T


def test_top2_matches_dense_eigh():
    A = _sym()
    for op in (Dense(A), DenseTorch(A)):
        tr = track_top(op, 2, tol=1e-10, maxdim=80, seed=0)
        w, U = _top(A, 2)
        assert tr["method"] == "davidson"
        np.testing.assert_allclose(tr["values"], w, rtol=1e-10)
        X = tr["vectors"][:2]
        np.testing.assert_allclose(np.linalg.norm(tr["vectors"], axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(np.abs(np.sum(X * U, axis=1)), 1.0, atol=1e-9)
        res = np.linalg.norm(X @ A - w[:, None] * X, axis=1)
        assert np.all(res <= 1e-9 * w), res
        assert np.all(tr["residuals"] <= 1e-10 * w) and np.allclose(tr["residuals"], res, atol=1e-9)
        assert tr["hvps"] == op.hvps == tr["dim"]


def test_warm_start_after_a_small_change_takes_fewer_products():
    A = _sym(P=120, seed=1)
    first = track_top(Dense(A), 2, tol=1e-4, maxdim=60, seed=0)
    rng = np.random.default_rng(2)
    E = rng.standard_normal(A.shape)
    B = A + 1e-4 * (E + E.T)  # the next measurement along a run: nearly the same operator
    w, _ = _top(B, 2)
    cold = track_top(Dense(B), 2, tol=1e-4, maxdim=60, seed=0)
    warm = track_top(Dense(B), 2, start=first["vectors"], tol=1e-4, maxdim=60, seed=0)
    for tr in (cold, warm):
        assert tr["method"] == "davidson"
        assert np.all(np.abs(tr["values"] - w) <= tr["residuals"] + 1e-12)
        assert np.all(tr["residuals"] <= 1e-4 * w)
    assert warm["hvps"] < cold["hvps"], (warm["hvps"], cold["hvps"])
    assert warm["hvps"] <= 0.6 * cold["hvps"], (warm["hvps"], cold["hvps"])


def test_probe_curvature_at_no_extra_product():
    A = _sym(seed=3)
    g = np.random.default_rng(4).standard_normal(len(A))
    op = Dense(A)
    tr = track_top(op, 2, probes=[g], tol=1e-8, maxdim=80, seed=0)
    assert tr["probe_curvature"][0] == np.float64(tr["probe_curvature"][0])
    np.testing.assert_allclose(tr["probe_curvature"][0], g @ A @ g / (g @ g), rtol=1e-10)
    assert op.hvps == tr["hvps"] == tr["dim"]  # every product went into the search space


def test_scaled_operator_gives_the_spectrum_of_P_inverse_H():
    A = _sym(P=60, seed=5)
    p = np.random.default_rng(6).uniform(0.2, 3.0, len(A))  # Adam's diag(P) > 0
    d = 1.0 / np.sqrt(p)
    sop = ScaledOperator(Dense(A), d)
    tr = track_top(sop, 2, tol=1e-10, maxdim=60, seed=0)
    w_ns = np.sort(np.linalg.eigvals(np.diag(1.0 / p) @ A).real)[::-1][:2]
    np.testing.assert_allclose(tr["values"], w_ns, rtol=1e-9)
    np.testing.assert_allclose(tr["values"], _top(d[:, None] * A * d[None, :], 2)[0], rtol=1e-10)
    # an eigenvector x of D A D gives D x for P^-1 A
    for lam, x in zip(tr["values"], tr["vectors"][:2]):
        y = d * x
        r = (A @ y) / p - lam * y
        assert np.linalg.norm(r) <= 1e-8 * lam * np.linalg.norm(y)
    assert sop.hvps == sop.op.hvps == tr["hvps"]


def test_pad_nan():
    np.testing.assert_array_equal(pad_nan([1.0, 2.0, 3.0], 2), [1.0, 2.0])
    out = pad_nan([1.0], 3)
    assert out[0] == 1.0 and np.isnan(out[1:]).all()
