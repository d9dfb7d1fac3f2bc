"""Untrusted files from users: models and data arriving as bytes (uploads).

Nothing here runs code from a file: bytes are written to a private temporary folder under
a fixed name with a known suffix and read by :mod:`landscape.io.checkpoints` (pickle-free or
``weights_only=True``) or :mod:`landscape.core.data` (``allow_pickle=False``). Every problem is a
:class:`~landscape.core.errors.LandscapeError` whose message names it, raised before any long
computation: wrong type, empty, truncated, too large, a model whose input or output does not
fit the data.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landscape.core import data, losses, models
from landscape.core.errors import LandscapeError
from landscape.io import checkpoints as checkpoint

MAX_MODEL_MB = 200
MAX_DATA_MB = 100
MODEL_TYPES = ("pt2", "safetensors", "pt", "pth")
DATA_TYPES = ("npz", "csv")


def check_size(raw: bytes, filename: str, what: str, limit_mb: int) -> None:
    """One message above the cap, naming the field, the size and the cap (sizes are shown
    to 0.1 MB, so a file just over the cap never reads as equal to it)."""
    if len(raw) > limit_mb * 2**20:
        mb = max(len(raw) / 2**20, limit_mb + 0.1)
        raise LandscapeError(f"{what} {filename}: {mb:.1f} MB is over the {limit_mb} MB upload "
                             f"limit; upload a smaller file")


def load_model_bytes(raw: bytes, filename: str, arch=None) -> checkpoint.LoadedModel:
    """A model from uploaded bytes; ``arch`` (zoo spec, dict or JSON) for a state_dict."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix not in MODEL_TYPES:
        raise LandscapeError(f"{filename}: unsupported model type .{suffix or '?'}; upload "
                             f"one of {', '.join('.' + t for t in MODEL_TYPES)}")
    if len(raw) == 0:
        raise LandscapeError(f"{filename}: the file is empty")
    check_size(raw, filename, "model file", MAX_MODEL_MB)
    folder = Path(tempfile.mkdtemp(prefix="landscape-upload-"))
    try:
        path = folder / f"model.{suffix}"
        path.write_bytes(raw)
        loaded = checkpoint.load(path, arch=arch)
    except LandscapeError as e:
        raise LandscapeError(str(e).replace(f"model.{suffix}", filename)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    loaded.meta["filename"] = filename
    return loaded


def load_data_bytes(raw: bytes, filename: str) -> data.Dataset:
    """A data set from uploaded ``.npz`` / ``.csv`` bytes."""
    check_size(raw, filename, "data file", MAX_DATA_MB)
    return data.load_bytes(raw, filename)


def check_compatible(model: torch.nn.Module, d: data.Dataset, what: str = "the model") -> int:
    """Run one example through the model: it must accept the data's input shape and have
    enough outputs for the labels. Returns the output size."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    n_out = models.output_size(model, d.input_shape, dtype)
    data.check_fits(n_out, d, what)
    return n_out


@dataclass
class PerExample:
    """Per-example losses [N] at the model, predictions [N], and the indices of the
    highest-loss examples first (``order`` [N])."""

    loss: np.ndarray
    prediction: np.ndarray
    correct: np.ndarray
    order: np.ndarray


@torch.no_grad()
def per_example(model: torch.nn.Module, d: data.Dataset, loss_kind: str,
                batch: int = 1024) -> PerExample:
    """One forward pass over the data in eval mode (on a private copy)."""
    import copy

    m = copy.deepcopy(model).eval()
    dtype = next((p.dtype for p in m.parameters()), torch.float32)
    outs = [m(d.X[i:i + batch].to(dtype)) for i in range(0, d.n, batch)]
    out = torch.cat(outs)
    ls = losses.per_example_loss(out, d.y, loss_kind).double().numpy()
    pred = out.argmax(-1).numpy() if d.is_classification else out.squeeze(-1).double().numpy()
    correct = (pred == d.y.numpy()) if d.is_classification else np.full(d.n, np.nan)
    return PerExample(ls, pred, correct, np.argsort(-ls, kind="stable"))
