"""Hessian trace and spectral density with the probes spread over Ray tasks.

The driver draws the Rademacher probes ``z`` [P] (entries +-1) from the caller's seed
exactly as the local functions draw them, ships them as int8, and combines the results as
the local functions do; each worker builds its own
:class:`~landscape.hessian.HessianOperator` once from a picklable :class:`HessianSpec`
(put once in the object store, cached per worker by a content hash) and computes:

- Hutchinson: the quadratic forms ``z^T H z`` of a group of probes (one HVP each); the
  trace estimate is their mean, its standard error ``std(ddof=1) / sqrt(m)``;
- SLQ: one Lanczos quadrature per probe (``lanczos_steps`` HVPs): nodes ``theta`` and
  weights ``tau``, smoothed into a density exactly as locally (``slq_smooth``).

So the same seed gives the local samples, trace, nodes and density (to float rounding).
The session, retries and cancel are :mod:`landscape.core.ray`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time

import numpy as np
import torch
from torch import nn

from landscape.core import ray as cluster
from landscape.core.errors import LandscapeError
from landscape.hessian import (
    DensityResult,
    HessianOperator,
    TraceResult,
    Watch,
    lanczos_quadrature,
    rademacher,
    slq_smooth,
)


@dataclasses.dataclass
class HessianSpec:
    """A picklable description of a :class:`~landscape.hessian.HessianOperator`: the
    arguments of its constructor. Each Ray worker builds its own operator from it."""

    model: nn.Module
    X: object
    y: object
    loss_kind: str = "cross_entropy"
    dtype: torch.dtype = torch.float64
    batch_size: int | None = None
    mode: str | None = None
    seed: int = 0

    @classmethod
    def from_operator(cls, op) -> HessianSpec:
        """The description of an existing operator at its current parameter point."""
        return cls(copy.deepcopy(op.model).cpu(), op.X.detach().cpu(), op.y.detach().cpu(),
                   op.loss_kind, op.dtype, op.batch_size, op.mode, op.seed)

    def build(self, device: str = "cpu") -> HessianOperator:
        model = self.model if torch.device(device).type == "cpu" else \
            copy.deepcopy(self.model).to(device)
        X = torch.as_tensor(np.asarray(self.X)) if not isinstance(self.X, torch.Tensor) else self.X
        y = torch.as_tensor(np.asarray(self.y)) if not isinstance(self.y, torch.Tensor) else self.y
        return HessianOperator(model, X.to(device), y.to(device), self.loss_kind, self.dtype,
                               self.batch_size, self.mode, self.seed)

    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def key(self) -> str:
        h = hashlib.sha256(b"landscape-hessian-v1")
        cluster.hash_model(h, self.model)
        for t in (self.X, self.y):
            cluster.hash_tensor(h, t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)))
        h.update(f"{self.loss_kind}|{self.dtype}|{self.batch_size}|{self.mode}|{self.seed}".encode())
        return h.hexdigest()[:24]


def as_spec(op_or_spec) -> HessianSpec:
    """A :class:`HessianSpec` from a spec or an operator."""
    if isinstance(op_or_spec, HessianSpec):
        return op_or_spec
    if isinstance(op_or_spec, HessianOperator):
        return HessianSpec.from_operator(op_or_spec)
    raise LandscapeError(f"need a HessianSpec or a HessianOperator, got {type(op_or_spec).__name__}")


# --------------------------------------------------------------------------- worker side


def _operator(box, token: str):
    cluster.worker_setup()
    device = cluster.worker_device()
    return cluster.worker_cached(f"hessian:{token}:{device}",
                                 lambda: cluster.fetch(box).build(device))


def _hutchinson_chunk(box, token: str, Z):
    """Ray task: the quadratic forms ``z^T H z`` of the probe rows ``Z`` (int8 +-1)."""
    op = _operator(box, token)
    Zf = np.asarray(Z, dtype=np.float64)
    h0 = op.hvps
    HZ = op.matmat(Zf)
    return np.einsum("ij,ij->i", Zf, HZ), op.hvps - h0


def _slq_probe(box, token: str, z, m: int):
    """Ray task: the Lanczos quadrature (nodes, weights) of one probe (int8 +-1)."""
    op = _operator(box, token)
    watch = Watch(op, total=m)
    theta, tau = lanczos_quadrature(watch, np.asarray(z, dtype=np.float64), m)
    return theta, tau, watch.hvps


# --------------------------------------------------------------------------- driver side


def _setup(spec: HessianSpec, address, num_cpus, gpus_per_task, max_retries, fn):
    startup = cluster.init(address, num_cpus=num_cpus)
    slots, gpus = cluster.cluster_slots(gpus_per_task)
    ref = cluster.put(spec)
    return startup, [ref], spec.key(), cluster.remote(fn, 1, gpus, max_retries), slots


def hutchinson_trace_ray(op_or_spec, probes: int = 100, seed: int = 0, *,
                         address: str | None = None, num_cpus: int | None = None,
                         probes_per_task: int | None = None, gpus_per_task: float | None = None,
                         max_retries: int = 3, progress=None, cancel=None) -> TraceResult:
    """:func:`landscape.hessian.hutchinson_trace` with the probes spread over Ray tasks.

    The probes are drawn here exactly as the local function draws them (one
    ``default_rng(seed)``, all ``probes`` Rademacher rows at once). ``progress(done,
    total)`` counts HVPs; a cancel raises :class:`~landscape.core.errors.Cancelled` with
    the samples so far (NaN where pending)."""
    m = int(probes)
    if m < 2:
        raise LandscapeError(f"Hutchinson needs at least 2 probes for a standard error, got {m}")
    t0 = time.perf_counter()
    spec = as_spec(op_or_spec)
    startup, box, token, fn, slots = _setup(spec, address, num_cpus, gpus_per_task, max_retries,
                                            _hutchinson_chunk)
    P = spec.n_params()
    Z = rademacher(np.random.default_rng(seed), m, P).astype(np.int8)
    per = int(probes_per_task) if probes_per_task else max(1, math.ceil(m / (2 * slots)))
    starts = list(range(0, m, per))
    samples = np.full(m, np.nan)
    counter = {"hvps": 0}

    def on_result(i, value):
        s, hv = value
        samples[starts[i]:starts[i] + len(s)] = s
        counter["hvps"] += hv
        if progress is not None:
            progress(counter["hvps"], m)

    cluster.run_tasks(fn, box, token, len(starts), lambda i: (Z[starts[i]:starts[i] + per],),
                      on_result, cancel, "Hutchinson trace", lambda: samples.copy(), slots)
    est = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(m))
    seconds = time.perf_counter() - t0
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(spec.dtype).replace("torch.", ""),
            "n_params": P, "probes": m, "seed": seed, "method": "hutchinson", "backend": "ray",
            "workers": slots, "probes_per_task": per, "ray_startup_seconds": startup}
    return TraceResult(est, se, samples, "hutchinson", counter["hvps"], seconds, meta)


def slq_density_ray(op_or_spec, probes: int = 5, lanczos_steps: int = 80, seed: int = 0,
                    grid=None, sigma: float | None = None, grid_points: int = 2001, *,
                    address: str | None = None, num_cpus: int | None = None,
                    gpus_per_task: float | None = None, max_retries: int = 3, progress=None,
                    cancel=None) -> DensityResult:
    """:func:`landscape.hessian.slq_density` with one Ray task per probe vector.

    Probe ``p`` is the ``p``-th Rademacher vector drawn from ``default_rng(seed)`` exactly as
    locally (one ``[1, P]`` draw per probe, in order). ``progress(done, total)`` counts
    HVPs; a cancel raises :class:`~landscape.core.errors.Cancelled` with
    ``partial=(nodes, weights)`` (zero rows where pending)."""
    n_v = int(probes)
    t0 = time.perf_counter()
    spec = as_spec(op_or_spec)
    P = spec.n_params()
    m = min(int(lanczos_steps), P)
    if n_v < 1 or m < 1:
        raise LandscapeError("SLQ needs at least one probe and one Lanczos step")
    startup, box, token, fn, slots = _setup(spec, address, num_cpus, gpus_per_task, max_retries,
                                            _slq_probe)
    rng = np.random.default_rng(seed)
    Z = [rademacher(rng, 1, P)[0].astype(np.int8) for _ in range(n_v)]
    nodes = np.zeros((n_v, m))
    weights = np.zeros((n_v, m))
    counter = {"hvps": 0}

    def on_result(p, value):
        theta, tau, hv = value
        nodes[p, :len(theta)] = theta
        nodes[p, len(theta):] = theta[-1] if len(theta) else 0.0
        weights[p, :len(tau)] = tau
        counter["hvps"] += hv
        if progress is not None:
            progress(counter["hvps"], max(n_v * m, counter["hvps"]))

    cluster.run_tasks(fn, box, token, n_v, lambda p: (Z[p], m), on_result, cancel, "SLQ density",
                      lambda: (nodes.copy(), weights.copy()), slots)
    # The same combination as the local slq_density.
    grid, dens, sig, extra = slq_smooth(nodes, weights, m, P, grid, sigma, grid_points)
    seconds = time.perf_counter() - t0
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(spec.dtype).replace("torch.", ""),
            "n_params": P, "probes": n_v, "lanczos_steps": m, "seed": seed, **extra,
            "backend": "ray", "workers": slots, "ray_startup_seconds": startup}
    return DensityResult(grid, dens, nodes, weights, sig, counter["hvps"], seconds, meta)
