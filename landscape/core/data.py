"""Data sets as tensors: built-in ones (no downloads) and user files.

A :class:`Dataset` holds ``X`` (float, shape ``[N, ...features]``) and ``y`` (int64 labels of
shape ``[N]`` for classification, float targets ``[N]`` or ``[N, K]`` for regression).

Built-in (``load_builtin(name, **options)``):

- ``digits``: scikit-learn's 1,797 8x8 digit images (bundled with the package), ``X`` of
  shape ``[N, 64]``, pixels divided by 16 (range [0, 1]); ``standardize=True`` centres and
  scales each pixel; ``n`` takes the first n examples of a fixed seeded shuffle.
- ``moons``, ``circles``, ``spirals``: 2-D two-class (spirals: ``classes``-arm) toy sets.
- ``gaussians``: a ``classes``-component mixture in ``dim`` dimensions with unit-variance
  components whose means are ``separation`` apart on average (means drawn from
  ``N(0, s^2 I)`` with ``s = separation / sqrt(2 dim)``); ``random_labels`` shuffles labels.
- ``sines``: 1-D regression, ``x`` on a uniform grid over [-1, 1], target a sum of sines.

User files (``load_file(path)``): ``.npz`` with arrays ``X`` and ``y``; ``.csv`` with the
label in the last column (a header line is skipped when it is not numeric).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from landscape.core.errors import LandscapeError

BUILTIN = ("digits", "moons", "circles", "spirals", "gaussians", "sines")
MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class Dataset:
    """Features ``X`` [N, ...], targets ``y`` [N] (int64 labels) or [N, K] (float)."""

    X: torch.Tensor
    y: torch.Tensor
    name: str = "data"
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def is_classification(self) -> bool:
        return not self.y.is_floating_point()

    @property
    def n_classes(self) -> int | None:
        return int(self.y.max().item()) + 1 if self.is_classification else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def target_size(self) -> int:
        """Outputs a model needs: the class count, or the regression target width."""
        if self.is_classification:
            return self.n_classes
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])

    def subset(self, n: int | None, seed: int = 0) -> Dataset:
        """A fixed random subset of ``n`` examples (all of them when n is None or >= N)."""
        if n is None or n >= self.n:
            return self
        if n <= 0:
            raise LandscapeError(f"subset size must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(self.n, generator=g)[:n].sort().values
        meta = dict(self.meta, subset=n, subset_seed=seed)
        return Dataset(self.X[idx], self.y[idx], self.name, meta)

    def to(self, dtype: torch.dtype | None = None, device=None) -> Dataset:
        X = self.X.to(device=device, dtype=dtype or self.X.dtype)
        y = self.y.to(device=device)
        if y.is_floating_point() and dtype is not None:
            y = y.to(dtype)
        return Dataset(X, y, self.name, self.meta)

    def fingerprint(self) -> str:
        """A short hash of the values, for cache keys and result metadata."""
        h = hashlib.sha256()
        h.update(self.X.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def _seeded(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _standardize(X: np.ndarray) -> np.ndarray:
    mu = X.mean(0, keepdims=True)
    sd = X.std(0, keepdims=True)
    return (X - mu) / np.where(sd > 0, sd, 1.0)


def _digits_table() -> np.ndarray:
    """The 1,797 UCI handwritten digits (8x8 pixels 0..16, then the label) as scikit-learn
    ships them, read straight from its bundled ``digits.csv.gz`` (importing
    ``sklearn.datasets`` costs about a second); [1797, 65] float64."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz") if spec else ""
    if not os.path.exists(path):  # a different scikit-learn layout: ask it
        from sklearn.datasets import load_digits

        d = load_digits()
        return np.column_stack([d.data, d.target]).astype(np.float64)
    return np.loadtxt(path, delimiter=",")


def _digits(n: int | None = None, standardize: bool = False, seed: int = 0, **_):
    table = _digits_table()
    X = table[:, :-1] / 16.0
    y = table[:, -1].astype(np.int64)
    if n is not None and n < len(y):
        idx = np.sort(_seeded(seed).permutation(len(y))[:n])
        X, y = X[idx], y[idx]
    if standardize:
        X = _standardize(X)
    return X, y


def _moons(n: int = 512, noise: float = 0.1, seed: int = 0, **_):
    rng = _seeded(seed)
    n0 = n // 2
    t0 = rng.uniform(0, math.pi, n0)
    t1 = rng.uniform(0, math.pi, n - n0)
    a = np.stack([np.cos(t0), np.sin(t0)], 1)
    b = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)
    X = np.concatenate([a, b]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)]).astype(np.int64)
    return X, y


def _circles(n: int = 512, noise: float = 0.08, factor: float = 0.5, seed: int = 0, **_):
    rng = _seeded(seed)
    n0 = n // 2
    t = rng.uniform(0, 2 * math.pi, n)
    r = np.where(np.arange(n) < n0, 1.0, factor)
    X = np.stack([r * np.cos(t), r * np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    y = (np.arange(n) >= n0).astype(np.int64)
    return X, y


def _spirals(n: int = 600, classes: int = 2, noise: float = 0.15, turns: float = 1.5,
             seed: int = 0, **_):
    rng = _seeded(seed)
    per = n // classes
    xs, ys = [], []
    for c in range(classes):
        t = np.sqrt(rng.uniform(0, 1, per)) * turns * 2 * math.pi
        ang = t + 2 * math.pi * c / classes
        pts = np.stack([t * np.cos(ang), t * np.sin(ang)], 1) / (turns * 2 * math.pi)
        xs.append(pts + noise / (turns * 2 * math.pi) * 2 * rng.standard_normal(pts.shape))
        ys.append(np.full(per, c))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _gaussians(n: int = 300, classes: int = 4, dim: int = 10, separation: float = 2.0,
               random_labels: bool = False, seed: int = 0, **_):
    rng = _seeded(seed)
    # Means ~ N(0, s^2 I) with s = separation / sqrt(2 dim): two means are then
    # sqrt(2 dim) s = separation apart in expectation.
    means = rng.standard_normal((classes, dim)) * separation / math.sqrt(2 * dim)
    y = np.arange(n) % classes
    X = means[y] + rng.standard_normal((n, dim))
    if random_labels:
        y = rng.permutation(y)
    return X, y.astype(np.int64)


def _sines(n: int = 200, frequencies=(1, 2, 4), amplitudes=None, seed: int = 0, **_):
    """x on a uniform grid over [-1, 1) (n points, endpoint excluded, so each integer
    frequency k falls on FFT bin 2k); y = sum_k A_k sin(2 pi k x + phi_k)."""
    rng = _seeded(seed)
    x = -1.0 + 2.0 * np.arange(n) / n
    amps = np.ones(len(frequencies)) if amplitudes is None else np.asarray(amplitudes, float)
    phases = rng.uniform(0, 2 * math.pi, len(frequencies))
    y = sum(a * np.sin(2 * math.pi * k * x + p) for k, a, p in zip(frequencies, amps, phases))
    return x[:, None], y.astype(np.float64)


_BUILDERS = {
    "digits": _digits,
    "moons": _moons,
    "circles": _circles,
    "spirals": _spirals,
    "gaussians": _gaussians,
    "sines": _sines,
}


def load_builtin(name: str, **options) -> Dataset:
    """A built-in data set by name; ``options`` as documented in the module docstring."""
    if name not in _BUILDERS:
        raise LandscapeError(f"unknown data set {name!r}; built-in ones are {', '.join(BUILTIN)}")
    X, y = _BUILDERS[name](**options)
    return from_arrays(X, y, name=name, meta={"source": "builtin", "name": name, **options})


def from_arrays(X, y, name: str = "data", meta: dict | None = None) -> Dataset:
    """Validate arrays and wrap them: labels become int64 when they are whole numbers."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.size == 0 or y.size == 0 or X.ndim == 0 or len(X) == 0:
        raise LandscapeError(f"{name}: the data set is empty")
    if X.ndim == 1:
        X = X[:, None]
    if not np.issubdtype(X.dtype, np.number) or X.dtype == np.complex128:
        raise LandscapeError(f"{name}: X must be numeric, got dtype {X.dtype}")
    if y.ndim == 0 or len(y) != len(X):
        raise LandscapeError(
            f"{name}: X has {len(X)} rows but y has {y.shape[0] if y.ndim else 0}; "
            "they must match")
    if y.ndim > 2:
        raise LandscapeError(f"{name}: y must be 1-D labels or 2-D targets, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number):
        raise LandscapeError(f"{name}: y must be numeric, got dtype {y.dtype}")
    Xf = X.astype(np.float64)
    bad = ~np.isfinite(Xf)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise LandscapeError(f"{name}: X has {int(bad.sum())} NaN or inf values (first in row {row})")
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all():
        raise LandscapeError(f"{name}: y has NaN or inf values")
    if y.ndim == 1 and np.all(yf == np.round(yf)):
        if yf.min() < 0:
            raise LandscapeError(f"{name}: class labels must be 0, 1, 2, ...; found {int(yf.min())}")
        yt = torch.from_numpy(yf.astype(np.int64))
    else:
        yt = torch.from_numpy(yf)
    return Dataset(torch.from_numpy(Xf).to(torch.float32), yt, name, dict(meta or {}))


def load_file(path, name: str | None = None) -> Dataset:
    """Load user data from ``.npz`` (arrays ``X``, ``y``) or ``.csv`` (label last column)."""
    path = Path(path)
    name = name or path.name
    check_file(path, name, MAX_FILE_BYTES, missing=f"data file not found: {path}",
               folder=f"{path} is a folder; give a .npz or .csv file")
    return load_bytes(path.read_bytes(), name)


def check_file(path: Path, name: str, max_bytes: int, missing: str, folder: str) -> None:
    """Raise :class:`LandscapeError` (one line) unless ``path`` is a non-empty file of at most
    ``max_bytes``: ``missing`` and ``folder`` are the messages when it does not exist or is a
    folder; an empty or too large file is named ``name`` in the message."""
    if not path.exists():
        raise LandscapeError(missing)
    if path.is_dir():
        raise LandscapeError(folder)
    size = path.stat().st_size
    if size == 0:
        raise LandscapeError(f"{name}: the file is empty")
    if size > max_bytes:
        raise LandscapeError(f"{name}: {size / 2**20:.0f} MB is over the {max_bytes // 2**20} MB limit")


def load_bytes(raw: bytes, name: str) -> Dataset:
    """Load user data from the bytes of a ``.npz`` or ``.csv`` file named ``name``."""
    if len(raw) == 0:
        raise LandscapeError(f"{name}: the file is empty")
    suffix = Path(name).suffix.lower()
    meta = {"source": "file", "name": name}
    if suffix == ".npz":
        try:
            import zipfile

            with zipfile.ZipFile(io.BytesIO(raw)) as zf:  # arrays' size once decompressed
                unpacked = sum(i.file_size for i in zf.infolist())
            if unpacked > MAX_FILE_BYTES:
                raise LandscapeError(f"{name}: its arrays take {unpacked / 2**20:.0f} MB "
                                     f"unpacked, over the {MAX_FILE_BYTES // 2**20} MB limit")
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                keys = set(z.files)
                if not {"X", "y"} <= keys:
                    raise LandscapeError(
                        f"{name}: a .npz needs arrays named 'X' and 'y'; found {sorted(keys) or 'none'}")
                X, y = z["X"], z["y"]
        except LandscapeError:
            raise
        except ValueError as e:  # object arrays need pickle: refused
            raise LandscapeError(f"{name}: cannot read arrays without pickle ({e})") from None
        except Exception as e:
            raise LandscapeError(f"{name}: not a readable .npz file ({type(e).__name__})") from None
        return from_arrays(X, y, name=name, meta=meta)
    if suffix in (".csv", ".txt"):
        text = raw.decode("utf-8", errors="replace").strip().splitlines()
        rows = [r for r in text if r.strip()]
        if not rows:
            raise LandscapeError(f"{name}: the file is empty")
        try:
            float(rows[0].split(",")[0])
        except ValueError:
            rows = rows[1:]  # header
        if not rows:
            raise LandscapeError(f"{name}: the file has a header but no rows")
        try:
            table = [[float(v) for v in r.split(",")] for r in rows]
        except ValueError as e:
            raise LandscapeError(f"{name}: a value is not a number ({e})") from None
        widths = {len(r) for r in table}
        if len(widths) != 1:
            raise LandscapeError(f"{name}: rows have different numbers of columns ({sorted(widths)})")
        arr = np.array(table)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise LandscapeError(f"{name}: a .csv needs at least one feature column and a label column")
        return from_arrays(arr[:, :-1], arr[:, -1], name=name, meta=meta)
    raise LandscapeError(f"{name}: unsupported data file type {suffix or '(none)'}; use .npz or .csv")


def load(spec) -> Dataset:
    """A data set from a spec: a built-in name, a file path, or ``{"name": ..., **options}``."""
    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        return load_builtin(spec.pop("name"), **spec)
    if isinstance(spec, str) and spec in _BUILDERS:
        return load_builtin(spec)
    return load_file(spec)


def check_fits(output_size: int, data: Dataset, what: str = "the model") -> None:
    """Raise when a model with ``output_size`` outputs cannot be scored on ``data``."""
    if data.is_classification:
        if output_size < data.n_classes:
            raise LandscapeError(
                f"{what} has {output_size} outputs but the labels have {data.n_classes} classes "
                f"(0..{data.n_classes - 1}); use data with at most {output_size} classes")
    elif output_size != data.target_size:
        raise LandscapeError(
            f"{what} has {output_size} outputs but the regression targets have width "
            f"{data.target_size}")
