"""Surface results on disk: ``.h5`` readable by the original loss-landscape code, or ``.npz``.

Layout (both formats): ``xcoordinates`` [nx]; for 2-D ``ycoordinates`` [ny] and
``train_loss``/``train_acc`` (optionally ``test_loss``/``test_acc``) of shape ``(ny, nx)``
indexed ``[j, i]`` for the point ``(x_i, y_j)`` -- the shape of ``meshgrid(x, y)``, so the
paper's ``contour(X, Y, Z)`` draws them unchanged; for 1-D shape ``(nx,)``.

``.h5`` (format 2, the paper's conventions, :mod:`landscape.io.paper`): accuracies in
**percent** (file attribute ``acc_units = "percent"``); directions are groups
``xdirection``/``ydirection`` with datasets ``"0"`` ... ``"n-1"``, one per parameter tensor in
``model.parameters()`` order (``h5_util.read_list`` reads them), the parameter names in the
group attribute ``names``; the group ``acc_fraction`` keeps the accuracies as computed (so
they read back bit for bit; used only while they agree with the percent datasets).
``.npz``: accuracies as fractions, directions as arrays ``xdirection/<name>``. The recipe
and metadata are JSON: the ``.h5`` file's ``recipe`` attribute, the ``.npz`` array
``meta_json``; the optional trajectory too (``trajectory`` attribute / ``trajectory_json``).

Reading (:func:`load`) accepts our files of every version (format 1: fraction accuracies,
directions keyed by name) and the paper's (``crunch``'s ``(nx, ny)``-declared arrays filled in
meshgrid order, percent accuracies, -1 for points never computed, directions in a separate
``dir_file``). In memory accuracies are always fractions in [0, 1].

This module reads and writes plain arrays and metadata: :func:`save` takes any record
with the fields of :data:`FIELDS` (``x`` [nx], ``y`` [ny] or None, ``loss``/``acc``,
``dx``/``dy`` flat directions [P] (``dy`` None for 1-D) in the order of ``names`` with
``shapes``, ``meta`` dict, ``trajectory`` dict or None; optional ``test_loss``/``test_acc``
like ``loss``), and :func:`load` returns those fields as a dict, with ``info`` saying what
was found in the file. :func:`landscape.surface.result.load` makes it a ``SurfaceResult``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.io import paper

FORMATS = (".h5", ".npz")
FIELDS = ("x", "y", "loss", "acc", "dx", "dy", "names", "shapes", "meta", "trajectory",
          "test_loss", "test_acc", "info")
FRACTIONS = "acc_fraction"  # .h5 group: the accuracies as written, so they read back bit for bit
H5_FORMAT = 2  # 1: fraction accuracies, directions keyed by name; 2: the paper's conventions


def _json(obj) -> str:
    return json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def split_flat(flat, names: list[str], shapes: list[list[int]]) -> dict[str, np.ndarray]:
    """A flat direction [P] as one array per parameter name, shaped as in ``shapes``."""
    out, start = {}, 0
    for n, s in zip(names, shapes):
        k = int(np.prod(s)) if len(s) else 1
        out[n] = flat[start:start + k].reshape(s)
        start += k
    return out


def _surfaces(result) -> dict[str, np.ndarray]:
    """The value arrays to write: ``train_*`` always, ``test_*`` when present."""
    out = {"train_loss": result.loss, "train_acc": result.acc}
    for key in ("test_loss", "test_acc"):
        if getattr(result, key, None) is not None:
            out[key] = getattr(result, key)
    return out


def save(result, path) -> Path:
    """Write a surface record (the fields of :data:`FIELDS` as attributes, e.g. a
    ``SurfaceResult``) to ``.h5`` or ``.npz`` (by suffix); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LandscapeError(f"unsupported output type {suffix or '(none)'}; use .h5 or .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = {"names": result.names, "shapes": result.shapes}
    directions = {"x": split_flat(result.dx, result.names, result.shapes),
                  "y": None if result.dy is None else split_flat(result.dy, result.names, result.shapes)}
    values = _surfaces(result)
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "w") as f:
            f["xcoordinates"] = result.x
            if result.y is not None:
                f["ycoordinates"] = result.y
            for key, arr in values.items():
                if key.endswith("_acc"):  # percent for their code; the exact fractions for ours
                    f[key] = 100.0 * np.asarray(arr, dtype=float)
                    f[f"{FRACTIONS}/{key}"] = arr
                else:
                    f[key] = arr
            for which, arrays in directions.items():
                if arrays is None or not result.names:  # a file read without directions
                    continue
                grp = f.create_group(f"{which}direction")
                paper.write_list(grp, [arrays[n] for n in result.names])
                grp.attrs["names"] = _json(list(result.names))
            f.attrs["recipe"] = _json(result.meta)
            f.attrs["layout"] = _json(layout)
            f.attrs["acc_units"] = "percent"
            f.attrs["landscape_format"] = H5_FORMAT
            if result.trajectory is not None:
                f.attrs["trajectory"] = _json(result.trajectory)
        return path
    arrays = {"xcoordinates": result.x, **values,
              "meta_json": np.array(_json(result.meta)), "layout_json": np.array(_json(layout))}
    if result.y is not None:
        arrays["ycoordinates"] = result.y
    for which, dirs in directions.items():
        if dirs is None:
            continue
        for name, arr in dirs.items():
            arrays[f"{which}direction/{name}"] = arr
    if result.trajectory is not None:
        arrays["trajectory_json"] = np.array(_json(result.trajectory))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def _flat(dirs: dict, names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(dirs[n]).reshape(-1) for n in names]).astype(np.float32)


def _read_h5(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        raw = {k: f[k][()] for k in ("xcoordinates", "ycoordinates", "train_loss", "train_acc",
                                     "test_loss", "test_acc") if k in f and isinstance(f[k], h5py.Dataset)}
        if "xcoordinates" not in raw or "train_loss" not in raw:
            missing = "xcoordinates" if "xcoordinates" not in raw else "train_loss"
            raise KeyError(missing)
        if FRACTIONS in f:
            raw["fractions"] = {k: f[FRACTIONS][k][()] for k in f[FRACTIONS].keys()}
        attrs = {k: paper.as_text(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
        raw["datasets"] = sorted(f.keys())
        raw["dir_file"] = paper.as_text(f["dir_file"][()]) if "dir_file" in f else None
        meta = json.loads(attrs.get("recipe", "{}"))
        layout = json.loads(attrs["layout"]) if "layout" in attrs else None
        raw["origin"] = paper.OURS if ("recipe" in attrs or "layout" in attrs) else paper.PAPER
        raw["acc_declared"] = attrs.get("acc_units")
        raw["traj"] = json.loads(attrs["trajectory"]) if "trajectory" in attrs else None
        dirs = {}
        for which in ("x", "y"):
            if f"{which}direction" in f:
                arrays, names, _ = paper.read_group(f, which, (layout or {}).get("names"))
                dirs[which] = (arrays, names)
    raw["meta"], raw["layout"], raw["dirs"] = meta, layout, dirs
    return raw


def _read_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        raw = {k: z[k] for k in ("xcoordinates", "ycoordinates", "train_loss", "train_acc",
                                 "test_loss", "test_acc") if k in z.files}
        if "xcoordinates" not in raw or "train_loss" not in raw:
            raise KeyError("xcoordinates" if "xcoordinates" not in raw else "train_loss")
        raw["datasets"] = sorted(k for k in z.files if "/" not in k) + \
            sorted({k.split("/", 1)[0] for k in z.files if "/" in k})
        raw["meta"] = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
        raw["layout"] = layout = json.loads(str(z["layout_json"])) if "layout_json" in z.files else None
        raw["traj"] = json.loads(str(z["trajectory_json"])) if "trajectory_json" in z.files else None
        raw["origin"], raw["acc_declared"], raw["dir_file"] = paper.OURS, "fraction", None
        dirs = {}
        for which in ("x", "y"):
            keys = [k.split("/", 1)[1] for k in z.files if k.startswith(f"{which}direction/")]
            if keys:
                order = [n for n in (layout or {}).get("names", []) if n in keys] or keys
                dirs[which] = ([z[f"{which}direction/{n}"] for n in order], order)
        raw["dirs"] = dirs
    return raw


def load(path) -> dict:
    """The fields (:data:`FIELDS`) of a surface file of either origin: written by
    :func:`save` (any version) or by the original loss-landscape code. ``info`` says what was
    found: ``origin``, ``datasets``, ``layout`` (how the values were laid out),
    ``acc_units`` (how accuracies were read) and why, ``unfilled_points``, ``dir_file``."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"surface file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LandscapeError(f"unsupported surface file {suffix or '(none)'}; use .h5 or .npz")
    try:
        raw = _read_h5(path) if suffix == ".h5" else _read_npz(path)
    except LandscapeError:
        raise
    except KeyError as e:
        raise LandscapeError(f"{path.name}: missing dataset {e}") from None
    except Exception as e:
        raise LandscapeError(f"{path.name}: not a readable surface file ({type(e).__name__})") from None
    return _fields(raw, path)


def _fields(raw: dict, path: Path) -> dict:
    x = np.asarray(raw["xcoordinates"], float).reshape(-1)
    y = np.asarray(raw["ycoordinates"], float).reshape(-1) if "ycoordinates" in raw else None
    nx, ny = len(x), None if y is None else len(y)
    origin = raw["origin"]
    info = {"origin": origin, "datasets": raw["datasets"], "dir_file": raw["dir_file"],
            "format": path.suffix.lower().lstrip("."), "unfilled_points": 0}
    values = {}
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        if key not in raw:
            continue
        try:
            v, lay = paper.grid_values(raw[key], nx, ny, key)
        except LandscapeError as e:
            raise LandscapeError(f"{path.name}: {e}") from None
        if origin == paper.PAPER:
            v, missing = paper.mark_unfilled(v)
            if key == "train_loss":
                info["unfilled_points"] = missing
        if key == "train_loss":
            info["layout"] = lay
        values[key] = v
    acc = values.get("train_acc")
    units, why = paper.accuracy_units(acc if acc is not None else np.array([]), raw["acc_declared"], origin)
    info["acc_units"], info["acc_units_from"] = units, why
    exact = raw.get("fractions", {})
    for key in ("train_acc", "test_acc"):
        if key in values and units == "percent":
            values[key] = values[key] / 100.0
            if key in exact and np.shape(exact[key]) == values[key].shape \
                    and np.allclose(exact[key], values[key], rtol=1e-9, atol=1e-12, equal_nan=True):
                values[key] = np.asarray(exact[key])
    loss = values["train_loss"]
    acc = values.get("train_acc", np.full_like(loss, np.nan))
    dirs, layout = raw["dirs"], raw["layout"]
    if "x" in dirs:
        arrays, names = dirs["x"]
        if layout is not None and len(layout["names"]) == len(arrays):
            names, shapes = list(layout["names"]), [list(s) for s in layout["shapes"]]
        else:
            names = list(names) if names is not None else [str(i) for i in range(len(arrays))]
            shapes = [list(np.shape(a)) for a in arrays]
        dx = _flat(dict(zip(names, arrays)), names)
        dy = _flat(dict(zip(names, dirs["y"][0])), names) if "y" in dirs else None
    else:
        names, shapes = [], []
        dx, dy = np.zeros(0, np.float32), None
    info["has_directions"] = bool(dx.size)
    return dict(zip(FIELDS, (x, y, loss, acc, dx, dy, names, shapes, raw["meta"], raw["traj"],
                             values.get("test_loss"), values.get("test_acc"), info)))


MAX_UPLOAD_MB = 200


def read_bytes(raw: bytes, filename: str, reader, what: str = "surface file"):
    """``reader(path)`` on uploaded bytes: written under a fixed name with the upload's
    suffix in a private temporary folder (nothing in the file is run: h5py and numpy with
    ``allow_pickle=False``); errors name the upload, not the temporary file."""
    import shutil
    import tempfile

    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise LandscapeError(f"{what} {filename}: unsupported type {suffix or '(none)'}; use .h5 or .npz")
    if not raw:
        raise LandscapeError(f"{what} {filename}: the file is empty")
    if len(raw) > MAX_UPLOAD_MB * 2**20:
        raise LandscapeError(f"{what} {filename}: {len(raw) / 2**20:.1f} MB is over the "
                             f"{MAX_UPLOAD_MB} MB upload limit")
    folder = Path(tempfile.mkdtemp(prefix="landscape-surface-"))
    try:
        path = folder / f"upload{suffix}"
        path.write_bytes(raw)
        return reader(path)
    except LandscapeError as e:
        raise LandscapeError(str(e).replace(path.name, filename)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
