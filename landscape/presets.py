"""Built-in recipes: a data spec, a zoo model spec and a training config under one name.

Every preset trains on the CPU in seconds; ``train_preset`` caches the trained model on
disk (``$LANDSCAPE_CACHE`` or ``~/.cache/landscape``) keyed by a hash of the recipe, so a
second use costs a file read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from landscape.core import data as data_mod
from landscape.core import models
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.train import TrainConfig, Trainer, train


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    data: dict
    model: dict
    train: TrainConfig
    surface_samples: int | None = None  # default evaluation subset for surfaces
    tags: tuple[str, ...] = field(default_factory=tuple)

    def recipe(self) -> dict:
        return {"preset": self.name, "data": self.data, "model": self.model,
                "train": self.train.to_dict()}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:12]


_MLP_DIGITS = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [128, 128],
                                       "activation": "relu"}}


def _digits_resnet(name: str, description: str, skip: bool) -> Preset:
    """The skip / no-skip comparison pair: a 6-block ResNet-style CNN on the digits."""
    return Preset(name, description, {"name": "digits"},
                  {"name": "resnet", "args": {"channels": 16, "blocks": 6, "skip": skip,
                                              "batchnorm": True}},
                  TrainConfig("sgd", lr=0.05, steps=300, batch_size=128, momentum=0.9, seed=0),
                  surface_samples=500, tags=("compare",))


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("digits-mlp", "MLP 64-128-128-10 (ReLU) on the 1,797 8x8 digits, SGD with momentum",
           {"name": "digits"}, _MLP_DIGITS,
           TrainConfig("sgd", lr=0.05, steps=600, batch_size=128, momentum=0.9, seed=0,
                       snapshot_every=10)),
    # Stopped early (200 steps, loss about 0.05): the softmax is not yet saturated, so the
    # Hessian's C - 1 = 9 outliers stand clear of the bulk (measured on 1,000 examples, seeds
    # 0-2: lambda_9 / lambda_10 = 2.2-2.5, overlaps with the class-mean gradients 0.88-0.99
    # against <= 0.15 for the bulk). Trained to 600 steps the outliers sink into the bulk.
    Preset("digits-mlp-papyan", "The digits MLP stopped early (200 SGD steps): Papyan's C - 1 "
                                "Hessian outliers clear of the bulk",
           {"name": "digits"}, _MLP_DIGITS,
           TrainConfig("sgd", lr=0.05, steps=200, batch_size=128, momentum=0.9, seed=0,
                       snapshot_every=10), tags=("hessian",)),
    Preset("digits-cnn", "Small CNN (two 3x3 conv blocks, no BatchNorm) on the digits",
           {"name": "digits"}, {"name": "cnn", "args": {"channels": [16, 32]}},
           TrainConfig("sgd", lr=0.05, steps=400, batch_size=128, momentum=0.9, seed=0),
           surface_samples=500),
    Preset("digits-cnn-bn", "Small CNN with BatchNorm on the digits",
           {"name": "digits"}, {"name": "cnn", "args": {"channels": [16, 32], "batchnorm": True}},
           TrainConfig("sgd", lr=0.05, steps=400, batch_size=128, momentum=0.9, seed=0),
           surface_samples=500),
    _digits_resnet("digits-resnet-skip", "ResNet-style CNN, 6 residual blocks WITH skip connections",
                   skip=True),
    _digits_resnet("digits-resnet-noskip", "The same network WITHOUT skip connections (Li et al. 2018)",
                   skip=False),
    Preset("moons-mlp", "MLP 2-32-32-2 (tanh) on two moons, full-batch Adam",
           {"name": "moons", "n": 512},
           {"name": "mlp", "args": {"in_dim": 2, "out_dim": 2, "widths": [32, 32],
                                    "activation": "tanh"}},
           TrainConfig("adam", lr=0.01, steps=400, batch_size=None, seed=0, snapshot_every=5)),
    Preset("eos-tanh", "Edge of stability: tanh MLP 64-64-64-10, 500 standardised digits, "
                       "squared loss, full-batch GD eta=0.2, float64 (Cohen et al. 2021)",
           {"name": "digits", "n": 500, "standardize": True},
           {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [64, 64, 64],
                                    "activation": "tanh"}},
           TrainConfig("gd", lr=0.2, steps=1500, batch_size=None, loss="mse", seed=0,
                       dtype="float64", snapshot_every=25)),
]}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise LandscapeError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def cache_dir() -> Path:
    return Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape"))


def make(name: str):
    """(untrained model, data) of a preset: the model built with the preset's seed."""
    p = get(name)
    d = data_mod.load(p.data)
    m = models.build(p.model, seed=p.train.seed)
    return m, d


@dataclass
class PresetRun:
    """A trained preset: ``model``, ``data``, the ``trajectory`` as ``(steps [T],
    snapshots [T, P])`` and the per-step ``history`` of (step, loss, accuracy)."""

    model: object
    data: object
    trajectory: tuple | None
    history: list
    cached: bool = False


def _trajectory_path(path: Path) -> Path:
    return path.with_name(path.stem + ".trajectory.npz")


def save_trajectory(path: Path, trainer: Trainer) -> Path:
    import numpy as np

    out = _trajectory_path(path)
    hist = np.array([(e.step, e.loss, e.accuracy) for e in trainer.history], dtype=np.float64)
    np.savez(out, steps=np.asarray(trainer.trajectory.steps),
             snapshots=trainer.trajectory.params, history=hist.reshape(-1, 3))
    return out


def load_trajectory(path: Path):
    """``(steps, snapshots, history)`` saved next to a checkpoint, or None."""
    t = _trajectory_path(Path(path))
    return read_trajectory(t) if t.exists() else None


def read_trajectory(path: Path):
    """``(steps, snapshots, history)`` from a trajectory ``.npz`` (as ``landscape train``
    writes it: arrays ``steps`` [T], ``snapshots`` [T, P], optional ``history``)."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"trajectory file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            hist = z["history"] if "history" in z.files else np.zeros((0, 3))
            return z["steps"], z["snapshots"], hist
    except Exception:
        raise LandscapeError(f"{path.name}: not a readable trajectory file (arrays steps, "
                             "snapshots)") from None


def train_preset(name: str, use_cache: bool = True, callback=None, cancel=None) -> PresetRun:
    """Train a preset, or read it from the cache (model, trajectory and history).

    ``callback(event)`` sees every step (return True to stop early; nothing is cached then);
    ``cancel`` (a ``threading.Event``) raises :class:`~landscape.core.errors.Cancelled`."""
    from landscape.io import checkpoints as checkpoint

    p = get(name)
    model, d = make(name)
    path = cache_dir() / "presets" / f"{name}-{p.key()}.safetensors"
    if use_cache and path.exists():
        try:
            loaded = checkpoint.load(path)
            traj = load_trajectory(path)
            if traj is not None:
                steps, snaps, hist = traj
                return PresetRun(loaded.model, d, (steps, snaps),
                                 [tuple(r) for r in hist.tolist()], cached=True)
        except LandscapeError:
            pass
    stopped = False

    def step(ev):
        nonlocal stopped
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"training {name} cancelled at step {ev.step}")
        stopped = bool(callback(ev)) if callback is not None else False
        return stopped

    tr: Trainer = train(model, d, p.train, callback=step)
    if use_cache and not stopped:
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(tr.model, path, data=p.data, recipe=p.recipe())
        save_trajectory(path, tr)
    traj = (tr.trajectory.steps, tr.trajectory.params)
    return PresetRun(tr.model, d, traj, [(e.step, e.loss, e.accuracy) for e in tr.history])
