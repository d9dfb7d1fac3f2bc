r"""Edge of stability (Cohen et al. 2021; adaptive optimizers: Cohen et al. 2022), measured:
full-batch training with the top Hessian eigenvalues tracked along the way.

- Full-batch training of a smooth network (the canonical demo: tanh MLP 64-64-64-10 on 500
  standardised digits, squared loss ``0.5 * ||f(x) - onehot(y)||^2`` averaged over examples,
  float64) with one of three optimizers, written out here (no ``torch.optim``, so no 3 s
  first-construction cost and no hidden state):

  - ``gd``: ``theta <- theta - eta g``; stable on a quadratic with curvature ``lambda`` iff
    ``lambda < 2 / eta``.
  - ``momentum`` (heavy ball, PyTorch's convention): ``v <- beta v + g``,
    ``theta <- theta - eta v``; stable iff ``lambda < (2 + 2 beta) / eta``.
  - ``adam``: ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
    ``theta <- theta - eta m_hat / (sqrt(v_hat) + eps)`` = ``theta - eta P^-1 m`` with the
    preconditioner ``P = (1 - beta1^t) diag(sqrt(v_hat) + eps)``. With ``P`` frozen this is
    EMA momentum on ``P^-1 H``: stable iff ``lambda_1(P^-1 H) < (2 + 2 beta1) / ((1 - beta1)
    eta)`` (38 / eta for beta1 = 0.9).

- Every ``eig_every`` steps (and at the last step) at the parameters ``theta_s``: the top
  ``n_eigs`` eigenvalues of the Hessian ``H`` of the full-batch training loss (the
  *sharpness* is the largest), for Adam also the top eigenvalues of the preconditioned
  Hessian ``P^-1 H`` (through the symmetric ``P^-1/2 H P^-1/2``, with the ``P`` of the update
  taken from ``theta_s``), the curvature along the gradient ``g^T H g / ||g||^2`` and along
  the update actually taken ``d^T H d / ||d||^2`` (the same for GD).
- Tracking is warm-started (:func:`landscape.hessian.tracking.track_top`): a Davidson
  iteration whose search space starts from the previous top ``n_eigs + 1`` Ritz vectors and
  the gradient (and the update), grows by one residual per HVP, and stops when every
  tracked residual ``||H u - lambda u||`` is at most ``eig_tol * lambda``; the curvatures
  along the gradient and the update come out of the same space at no extra HVP. The first
  measurement starts from a seeded random vector; past ``eig_maxdim`` directions ARPACK
  Lanczos warm-started from the best vector finishes. Residuals are stored. With
  eigenvalues clustered at the top (as at the edge) a residual ``r`` only guarantees an
  eigenvalue within ``r``; measured against exact Lanczos on ``eos-tanh``, the tracked
  lambda_1 was within 5e-4 relative at ``eig_tol = 1e-2``.
- HVPs (:class:`landscape.hessian.HessianOperator`, re-pointed at ``theta_s`` for each
  measurement) run in ``eig_dtype`` (float32 by default, also for float64 training: half
  the cost of a float64 HVP on the CPU; eigenvalues agree with float64 to about 1e-5
  relative).
- The threshold of the optimizer (above), the first measured step where the sharpness (for
  Adam: the preconditioned sharpness) crosses ``crossing_fraction`` (0.95) of it from below,
  and the share of steps where the loss went up, before and after that step.
- ReLU, max-pooling and other piecewise-linear pieces make the loss only piecewise twice
  differentiable: its "sharpness" is then that of the Hessian almost everywhere (the
  result's ``hessian_label`` says so); prefer smooth activations for the demo.

Steps count updates: ``theta_s`` is the model after ``s`` updates, ``loss[s]`` its
full-batch loss (s = 0..steps). Units: the loss is in squared output units; eigenvalues of
``H``, curvatures and the GD/momentum thresholds are loss per squared parameter unit (the
inverse of the learning rate's units); ``lambda(P^-1 H)`` and the Adam threshold share the
units of ``1 / eta``.

Runs are deterministic for a seed on one device and thread count. Training is a generator
of events (:meth:`EosRun.run`), so a UI can draw live and stop; :func:`start_job` runs it in
the one background job (poll / pause / resume / cancel). The 1-D lesson ``f(x) = lambda x^2 /
2`` is :mod:`~landscape.lessons.eos.quadratic`; the loss along the top Hessian eigenvector
:mod:`~landscape.lessons.eos.slice`.

Measured on a 2-core CPU (shared, loaded), one torch thread, seed 0, eigenvalues every 25
steps unless said:

- ``eos-tanh`` (eta 0.2, 1,500 steps): sharpness 2.63 at init (0.26 x 2/eta), 0.95 x at step
  495-500 (every 5 steps: 1.0 x near step 520), an overshoot to 1.20 x at step 675, then
  0.996-1.036 x over the second half; loss strictly decreasing before the crossing, up on
  23% of the steps after. Tracking: 431 HVPs (7.1 a measurement), 1.1 s against 2.6 s of
  training (thread CPU 1.07 / 2.58 s: 0.41).
- ``eos-tanh-fast`` (eta 0.4, 600 steps): 0.95 x at step 155 (every 5 steps), an overshoot to
  1.79 x at step 230, then 1.045-1.098 x over the second half; loss up on 35% of the steps
  after the crossing. Tracking is dearer at this edge (13-19 HVPs a measurement: 0.8 x the
  training time), the top eigenvalues being clustered.
- ``eos-adam`` (eta 4e-3): ``lambda_1(P^-1 H)`` is 15 x 38/eta at step 0 (the first update
  divides by ``|g|``), 0.31 x at step 25, crosses 0.95 x at step 100 and stays at
  0.982-1.017 x over the second half; two trackers (H and P^-1 H): 0.95 x the training time.
- ``eos-momentum`` (beta 0.8, eta 0.2): crosses 0.95 x (2 + 2 beta)/eta at step 425, peaks at
  1.035 x, drops to 0.85 x at step 775 and creeps back (0.93 x at 1,200): heavy ball hovers
  less cleanly than GD here.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.core import losses
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.hessian import HessianOperator
from landscape.hessian.tracking import ScaledOperator, pad_nan, track_top
from landscape.lessons.eos.config import DIVERGED_FACTOR, EosConfig, build_model, hessian_label, load_data
from landscape.lessons.eos.result import EosResult
from landscape.lessons.kit import StepEvent, lesson_job, run_to_end, torch_threads


@dataclass
class EosEvent(StepEvent):
    """One parameter point ``theta_step`` visited: its full-batch ``loss``; when ``measured``,
    the top Hessian eigenvalues there (``eigenvalues`` [k]), ``precond`` [k] (Adam) and the
    curvature along the gradient. ``seconds``: run time so far (training + measurements)."""

    measured: bool = False
    eigenvalues: np.ndarray | None = None
    precond: np.ndarray | None = None
    grad_curvature: float | None = None


class EosRun:
    """A run in progress: ``run()`` yields events; ``result()`` is valid at any point.

    ``model`` and ``data`` (a :class:`landscape.core.data.Dataset`) may be given instead of the
    config's specs (the config's ``model``/``data`` then only label the result); the model is
    copied, never changed.
    """

    def __init__(self, config: EosConfig | None = None, model: nn.Module | None = None,
                 data=None):
        from landscape.core.data import check_fits
        from landscape.core.device import choose_device
        from landscape.core.models import output_size

        config = copy.deepcopy(config) if config is not None else EosConfig()
        config.validate()
        self.config = cfg = config
        self.device = choose_device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        self.threshold = cfg.threshold
        d = data if data is not None else load_data(cfg)
        if d.is_classification is False and cfg.loss == "cross_entropy":
            raise LandscapeError("cross-entropy needs integer class labels; use the squared loss")
        m = copy.deepcopy(model) if model is not None else build_model(cfg)
        m = m.to(self.dtype)
        check_fits(output_size(m, d.input_shape, dtype=self.dtype), d)
        self.twice_differentiable, self.hessian_label = hessian_label(m)
        self.data = d.to(dtype=self.dtype, device=self.device)
        self.model = m.to(dtype=self.dtype, device=self.device).eval()
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            raise LandscapeError("the model has no trainable parameters")
        # one flat buffer behind every parameter: updates are single vector operations
        with torch.no_grad():
            self._theta = torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
            s = 0
            for p in self._params:
                n = p.numel()
                p.data = self._theta[s:s + n].view_as(p)
                s += n
        self.n_params = int(self._theta.numel())
        # H of the full-batch loss, re-pointed at theta_s for each measurement (one graph build)
        self.op = HessianOperator(self.model, self.data.X, self.data.y, cfg.loss,
                                  dtype=DTYPES[cfg.eig_dtype or cfg.dtype])
        self._buf = torch.zeros_like(self._theta)      # momentum v, or Adam m
        self._sq = torch.zeros_like(self._theta)       # Adam v
        self.step = 0          # updates done: the current point is theta_step
        self.finished = False  # the last point has been evaluated
        self.train_seconds = self.eig_seconds = 0.0
        self.train_cpu = self.eig_cpu = 0.0
        self._loss0: float | None = None
        self._loss: list[float] = []
        self._rec: dict[str, list] = {k: [] for k in (
            "eig_steps", "eigenvalues", "residuals", "precond", "grad_curvature",
            "update_curvature", "grad_dot_u1", "update_dot_u1", "hvps", "params", "u1")}
        self._V: np.ndarray | None = None   # Ritz vectors of H (warm start)
        self._Vp: np.ndarray | None = None  # Ritz vectors of P^-1/2 H P^-1/2
        self._methods: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eig_seconds

    def _loss_grad(self) -> tuple[float, torch.Tensor]:
        out = self.model(self.data.X)
        loss = losses.loss(out, self.data.y, self.config.loss)
        lv = loss.item()
        if not math.isfinite(lv) or (self._loss0 is not None and lv > DIVERGED_FACTOR * max(self._loss0, 1e-12)):
            raise LandscapeError(
                f"training diverged at step {self.step} (loss {lv:.3g}); lower the learning rate "
                f"(its stability threshold is {self.threshold:.3g}, below the sharpness)")
        g = torch.autograd.grad(loss, self._params)
        return lv, torch.cat([gi.reshape(-1) for gi in g])

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """Advance the optimizer state with ``g`` and return the update ``d`` (theta += d)."""
        cfg = self.config
        if cfg.optimizer == "gd":
            return -cfg.lr * g
        if cfg.optimizer == "momentum":
            self._buf.mul_(cfg.momentum).add_(g)
            return -cfg.lr * self._buf
        t = self.step + 1
        self._buf.mul_(cfg.beta1).add_(g, alpha=1 - cfg.beta1)
        self._sq.mul_(cfg.beta2).addcmul_(g, g, value=1 - cfg.beta2)
        return -cfg.lr * self._buf / self._precond(t)

    def _precond(self, t: int) -> torch.Tensor:
        """``diag(P) = (1 - beta1^t) (sqrt(v_hat) + eps)`` for the Adam update number ``t``."""
        cfg = self.config
        v_hat = self._sq / (1 - cfg.beta2 ** t)
        return (1 - cfg.beta1 ** t) * (v_hat.sqrt() + cfg.eps)

    def preconditioner(self, t: int | None = None) -> np.ndarray | None:
        """Adam's ``diag(P) = (1 - beta1^t) (sqrt(v_hat) + eps)`` [P] from the current second
        moments, for update number ``t`` (default: the last update done, i.e. the ``P`` the
        measurement at the previous point used); None for GD and momentum."""
        if self.config.optimizer != "adam":
            return None
        t = self.step if t is None else int(t)
        if t < 1:
            raise LandscapeError("no Adam update has been made yet")
        return self._precond(t).double().cpu().numpy()

    def _measure(self, g: torch.Tensor, d: torch.Tensor | None) -> None:
        cfg = self.config
        op = self.op
        h0 = op.hvps
        op.set_point(self._theta)
        gn = g.detach().double().cpu()
        dn = None if d is None else d.detach().double().cpu()
        probes = [gn] if cfg.optimizer == "gd" or dn is None else [gn, dn]
        tr = track_top(op, cfg.n_eigs, self._V, probes=probes, tol=cfg.eig_tol,
                       maxdim=cfg.eig_maxdim, seed=cfg.seed)
        self._V = tr["vectors"]
        self._methods[tr["method"]] = self._methods.get(tr["method"], 0) + 1
        gcurv = float(tr["probe_curvature"][0])
        ucurv = float(tr["probe_curvature"][1]) if len(probes) > 1 else gcurv
        u1 = tr["vectors"][0]
        u1t = torch.from_numpy(u1)
        udot = 0.0 if dn is None else float(dn @ u1t)
        pre = np.full(cfg.n_eigs, np.nan)
        if cfg.optimizer == "adam":
            # the P of the update about to be taken (at the last point: of the last one taken)
            t = self.step + 1 if d is not None else max(self.step, 1)
            dvec = (1.0 / self._precond(t).sqrt()).double().cpu().numpy()
            sop = ScaledOperator(op, dvec)
            trp = track_top(sop, cfg.n_eigs, self._Vp, tol=cfg.eig_tol, maxdim=cfg.eig_maxdim,
                            seed=cfg.seed)
            self._Vp = trp["vectors"]
            self._methods[trp["method"]] = self._methods.get(trp["method"], 0) + 1
            pre = pad_nan(trp["values"], cfg.n_eigs)
        r = self._rec
        r["eig_steps"].append(self.step)
        r["eigenvalues"].append(pad_nan(tr["values"], cfg.n_eigs))
        r["residuals"].append(pad_nan(tr["residuals"], cfg.n_eigs))
        r["precond"].append(pre)
        r["grad_curvature"].append(gcurv)
        r["update_curvature"].append(ucurv)
        r["grad_dot_u1"].append(float(gn @ u1t))
        r["update_dot_u1"].append(udot)
        r["hvps"].append(op.hvps - h0)
        r["params"].append(self._theta.detach().to(device="cpu", dtype=torch.float64, copy=True).numpy())
        r["u1"].append(u1.astype(np.float32))

    def run(self, steps: int | None = None, cancel: threading.Event | None = None
            ) -> Iterator[EosEvent]:
        """Yield one event per parameter point, for up to ``steps`` more updates (default: to
        ``config.steps``, the last point included). Stop iterating (or set ``cancel``) to pause;
        call again to go on. Raises :class:`LandscapeError` when the loss diverges."""
        cfg = self.config
        end = cfg.steps if steps is None else min(cfg.steps, self.step + int(steps))
        while not self.finished and self.step <= end:
            if cancel is not None and cancel.is_set():
                return
            if self.step == end and end < cfg.steps:
                return
            w0, c0 = time.perf_counter(), time.thread_time()
            lv, g = self._loss_grad()
            if self._loss0 is None:
                self._loss0 = lv
            last = self.step >= cfg.steps
            d = None if last else self._direction(g)
            w1, c1 = time.perf_counter(), time.thread_time()
            measured = self.step % cfg.eig_every == 0 or last
            if measured:
                self._measure(g, d)
            w2, c2 = time.perf_counter(), time.thread_time()
            if d is not None:
                with torch.no_grad():
                    self._theta.add_(d)
            self._loss.append(lv)
            w3, c3 = time.perf_counter(), time.thread_time()
            self.train_seconds += (w1 - w0) + (w3 - w2)
            self.train_cpu += (c1 - c0) + (c3 - c2)
            self.eig_seconds += w2 - w1
            self.eig_cpu += c2 - c1
            ev = EosEvent(self.step, lv, self.seconds, measured)
            if measured:
                ev.eigenvalues = self._rec["eigenvalues"][-1]
                ev.precond = self._rec["precond"][-1]
                ev.grad_curvature = self._rec["grad_curvature"][-1]
            if last:
                self.finished = True
            else:
                self.step += 1
            yield ev

    def result(self) -> EosResult:
        """What has been recorded so far, as an :class:`EosResult`."""
        cfg = self.config
        r = self._rec
        k = cfg.n_eigs
        T = len(r["eig_steps"])
        steps_done = len(self._loss) - 1
        meta = {
            "recipe": "edge-of-stability", "config": cfg.to_dict(), "threshold": self.threshold,
            "threshold_formula": {"gd": "2 / lr", "momentum": "(2 + 2 momentum) / lr",
                                  "adam": "(2 + 2 beta1) / ((1 - beta1) lr)"}[cfg.optimizer],
            "sharpness_of": "P^-1 H" if cfg.optimizer == "adam" else "H",
            "hessian_label": self.hessian_label, "twice_differentiable": self.twice_differentiable,
            "loss": "0.5 * ||f(x) - onehot(y)||^2, mean over examples" if cfg.loss == "mse"
                    else "cross-entropy, mean over examples",
            "n_params": self.n_params, "n_examples": self.data.n, "data": self.data.meta,
            "device": str(self.device), "torch_threads": torch.get_num_threads(),
            "steps_done": max(steps_done, 0), "complete": self.finished,
            "seconds": self.seconds, "train_seconds": self.train_seconds,
            "eig_seconds": self.eig_seconds, "train_cpu_seconds": self.train_cpu,
            "eig_cpu_seconds": self.eig_cpu, "hvps": int(sum(r["hvps"])),
            "measurements": T, "eig_methods": dict(self._methods),
        }
        P = self.n_params
        return EosResult(
            loss_steps=np.arange(len(self._loss), dtype=np.int64),
            loss=np.asarray(self._loss, float),
            eig_steps=np.asarray(r["eig_steps"], np.int64),
            eigenvalues=np.asarray(r["eigenvalues"], float).reshape(T, k),
            residuals=np.asarray(r["residuals"], float).reshape(T, k),
            precond=np.asarray(r["precond"], float).reshape(T, k),
            grad_curvature=np.asarray(r["grad_curvature"], float),
            update_curvature=np.asarray(r["update_curvature"], float),
            grad_dot_u1=np.asarray(r["grad_dot_u1"], float),
            update_dot_u1=np.asarray(r["update_dot_u1"], float),
            hvps=np.asarray(r["hvps"], np.int64),
            params=np.asarray(r["params"], np.float64).reshape(T, P),
            u1=np.asarray(r["u1"], np.float32).reshape(T, P), meta=meta)


def train(config: EosConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None, model: nn.Module | None = None,
          data=None) -> EosResult:
    """Run to the end and return the result.

    ``callback(event)`` may return True to stop early (the partial result is returned); a set
    ``cancel`` event raises :class:`Cancelled` with the partial result. ``threads`` sets
    torch's thread count for the run and restores it after (None: leave it alone).
    """
    with torch_threads(threads):
        run = run_to_end(EosRun(config, model=model, data=data), cancel, callback)
        return run.result()


def start_job(config: EosConfig, threads: int | None = None) -> BackgroundJob:
    """The run in the one background job (:func:`landscape.lessons.kit.lesson_job`): poll,
    pause, resume, cancel. ``job.poll().partial[0]`` is the result so far, refreshed at every
    measurement; progress counts steps out of ``config.steps``; a cancelled job keeps its
    partial result as ``poll().result``. ``threads``: torch's thread count in the job."""
    config = copy.deepcopy(config)
    config.validate()
    return lesson_job(lambda: EosRun(config), config.steps, publish=lambda ev: ev.measured,
                      label="eos", threads=threads)
