"""Training loops as generators of events, so a UI can draw live and stop at any step.

``Trainer(model, data, config)`` trains a private copy of ``model`` (the caller's model is
never changed). ``trainer.run(n)`` yields one :class:`StepEvent` per optimizer step; stop
iterating to pause, call ``run`` again to go on. The trajectory keeps a parameter snapshot
every ``snapshot_every`` steps; when it holds ``max_snapshots`` it drops every other one and
doubles the interval, so memory stays below ``max_snapshots * P`` floats for any run length.

Same seed, same data, same config -> bit-identical runs (on one device and thread count).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from landscape.core import losses
from landscape.core.data import Dataset
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.core.params import flat_params

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")


@dataclass
class TrainConfig:
    """One training recipe. ``batch_size=None`` is full batch; ``gd`` is plain full-batch
    gradient descent, ``sgd`` minibatch SGD (with ``momentum``), ``momentum`` heavy-ball
    (full batch unless ``batch_size`` is set), ``adam`` Adam with ``betas``."""

    optimizer: str = "sgd"
    lr: float = 0.1
    steps: int = 1000
    batch_size: int | None = 128
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    seed: int = 0
    dtype: str = "float32"
    snapshot_every: int = 10
    max_snapshots: int = 200

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise LandscapeError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.loss not in losses.LOSSES:
            raise LandscapeError(f"unknown loss {self.loss!r}; choose one of {losses.LOSSES}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if self.steps < 0:
            raise LandscapeError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise LandscapeError(f"batch size must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}")
        if self.snapshot_every < 1 or self.max_snapshots < 2:
            raise LandscapeError("snapshot_every must be >= 1 and max_snapshots >= 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise LandscapeError(f"unknown training options: {sorted(unknown)}")
        return cls(**d)


@dataclass
class StepEvent:
    """After one optimizer step: ``loss``/``accuracy`` of the batch used, measured at the
    parameters before the update (for full batch, the training loss at step ``step``)."""

    step: int
    loss: float
    accuracy: float
    seconds: float
    snapshot: bool = False


@dataclass
class Trajectory:
    """Parameter snapshots ``params`` [T, P] (float32) at ``steps`` [T]."""

    steps: list[int] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)
    every: int = 10
    max_snapshots: int = 200

    def add(self, step: int, theta: torch.Tensor) -> None:
        if self.steps and self.steps[-1] == step:
            self.snapshots[-1] = theta
            return
        self.steps.append(step)
        self.snapshots.append(theta)
        if len(self.steps) > self.max_snapshots:
            keep = list(range(0, len(self.steps) - 1, 2)) + [len(self.steps) - 1]
            self.steps = [self.steps[i] for i in keep]
            self.snapshots = [self.snapshots[i] for i in keep]
            self.every *= 2

    @property
    def params(self) -> np.ndarray:
        return torch.stack(self.snapshots).numpy() if self.snapshots else np.zeros((0, 0))

    def __len__(self) -> int:
        return len(self.steps)


class Trainer:
    """Owns a private copy of the model, its optimizer, and the history of the run."""

    def __init__(self, model: nn.Module, data: Dataset, config: TrainConfig, device=None):
        import copy

        config.validate()
        self.config = config
        dtype = DTYPES[config.dtype]
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = copy.deepcopy(model).to(dtype=dtype, device=self.device)
        self.data = data.to(dtype=dtype, device=self.device)
        self.data_meta = data.meta
        if self.data.is_classification is False and config.loss == "cross_entropy":
            raise LandscapeError("cross-entropy needs integer class labels; use --loss mse "
                                 "for regression targets")
        self._gen = torch.Generator().manual_seed(config.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas),
                                        eps=config.eps, weight_decay=config.weight_decay)
        else:
            mom = 0.0 if config.optimizer == "gd" else config.momentum
            self.opt = torch.optim.SGD(params, lr=config.lr, momentum=mom,
                                       weight_decay=config.weight_decay)
        self.full_batch = config.optimizer == "gd" or config.batch_size is None or \
            config.batch_size >= self.data.n
        self.step = 0
        self.history: list[StepEvent] = []
        self.trajectory = Trajectory(every=config.snapshot_every, max_snapshots=config.max_snapshots)
        self.trajectory.add(0, self._snapshot())
        self._order = None
        self._pos = 0

    def _snapshot(self) -> torch.Tensor:
        """The current parameters as a float32 CPU vector (trajectories live on the CPU)."""
        return flat_params(self.model).float().cpu()

    def _batch(self):
        if self.full_batch:
            return self.data.X, self.data.y
        bs = self.config.batch_size
        if self._order is None or self._pos + bs > self.data.n:
            self._order = torch.randperm(self.data.n, generator=self._gen).to(self.device)
            self._pos = 0
        idx = self._order[self._pos:self._pos + bs]
        self._pos += bs
        return self.data.X[idx], self.data.y[idx]

    def step_once(self) -> StepEvent:
        """One optimizer step; raises LandscapeError when the loss becomes NaN or inf."""
        t0 = time.perf_counter()
        self.model.train()
        X, y = self._batch()
        out = self.model(X)
        loss = losses.loss(out, y, self.config.loss)
        if not torch.isfinite(loss):
            self.model.eval()
            raise LandscapeError(
                f"training diverged at step {self.step} (loss is {loss.item()}); "
                "lower the learning rate")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.eval()
        self.step += 1
        snap = self.step % self.trajectory.every == 0
        if snap:
            self.trajectory.add(self.step, self._snapshot())
        ev = StepEvent(self.step, loss.item(), losses.accuracy(out.detach(), y),
                       time.perf_counter() - t0, snap)
        self.history.append(ev)
        return ev

    def run(self, n: int | None = None) -> Iterator[StepEvent]:
        """Yield events for up to ``n`` more steps (default: until ``config.steps``)."""
        end = self.config.steps if n is None else self.step + n
        while self.step < end:
            yield self.step_once()

    def finish(self) -> None:
        """Record the final parameters as the trajectory's last snapshot."""
        self.trajectory.add(self.step, self._snapshot())

    @torch.no_grad()
    def evaluate(self, data: Dataset | None = None) -> tuple[float, float]:
        """Full-data (loss, accuracy) of the current model in eval mode."""
        d = self.data if data is None else data.to(dtype=DTYPES[self.config.dtype])
        out = self.model(d.X)
        return losses.loss(out, d.y, self.config.loss).item(), losses.accuracy(out, d.y)


def train(model: nn.Module, data: Dataset, config: TrainConfig,
          callback=None, device=None) -> Trainer:
    """Run ``config.steps`` steps to the end; ``callback(event)`` may return True to stop."""
    tr = Trainer(model, data, config, device=device)
    for ev in tr.run():
        if callback is not None and callback(ev):
            break
    tr.finish()
    return tr
