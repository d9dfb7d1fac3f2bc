"""Surface results on disk: ``.h5`` in the original loss-landscape layout, or ``.npz``.

Layout (both formats): ``xcoordinates`` [nx]; for 2-D ``ycoordinates`` [ny] and
``train_loss``/``train_acc`` of shape ``(ny, nx)`` indexed ``[j, i]`` for the point
``(x_i, y_j)``; for 1-D ``train_loss``/``train_acc`` of shape ``(nx,)``. In ``.h5`` the
directions are groups ``xdirection``/``ydirection`` with one dataset per parameter name;
in ``.npz`` they are arrays ``xdirection/<name>``. The recipe and metadata are JSON: the
``.h5`` file's ``recipe`` attribute, the ``.npz`` array ``meta_json``. The optional
trajectory is JSON too (``trajectory`` attribute / ``trajectory_json`` array).

This module reads and writes plain arrays and metadata: :func:`save` takes any record
with the fields of :data:`FIELDS` (``x`` [nx], ``y`` [ny] or None, ``loss``/``acc``,
``dx``/``dy`` flat directions [P] (``dy`` None for 1-D) in the order of ``names`` with
``shapes``, ``meta`` dict, ``trajectory`` dict or None), and :func:`load` returns those
fields as a dict. :func:`landscape.surface.result.load` makes it a ``SurfaceResult``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError

FORMATS = (".h5", ".npz")
FIELDS = ("x", "y", "loss", "acc", "dx", "dy", "names", "shapes", "meta", "trajectory")


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
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "w") as f:
            f["xcoordinates"] = result.x
            if result.y is not None:
                f["ycoordinates"] = result.y
            f["train_loss"] = result.loss
            f["train_acc"] = result.acc
            for which, arrays in directions.items():
                if arrays is None:
                    continue
                grp = f.create_group(f"{which}direction")
                for name, arr in arrays.items():
                    grp.create_dataset(name, data=arr)
            f.attrs["recipe"] = _json(result.meta)
            f.attrs["layout"] = _json(layout)
            if result.trajectory is not None:
                f.attrs["trajectory"] = _json(result.trajectory)
        return path
    arrays = {"xcoordinates": result.x, "train_loss": result.loss, "train_acc": result.acc,
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


def load(path) -> dict:
    """The fields (:data:`FIELDS`) of a surface written by :func:`save` (or by the original
    loss-landscape code, whose files lack the layout: directions then come back in file
    order)."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"surface file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as f:
                x = f["xcoordinates"][()]
                y = f["ycoordinates"][()] if "ycoordinates" in f else None
                loss = f["train_loss"][()]
                acc = f["train_acc"][()] if "train_acc" in f else np.full_like(loss, np.nan)
                meta = json.loads(f.attrs.get("recipe", "{}"))
                layout = json.loads(f.attrs["layout"]) if "layout" in f.attrs else None
                traj = json.loads(f.attrs["trajectory"]) if "trajectory" in f.attrs else None
                dx_d = {k: v[()] for k, v in f["xdirection"].items()} if "xdirection" in f else {}
                dy_d = {k: v[()] for k, v in f["ydirection"].items()} if "ydirection" in f else None
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                x = z["xcoordinates"]
                y = z["ycoordinates"] if "ycoordinates" in z.files else None
                loss, acc = z["train_loss"], z["train_acc"]
                meta = json.loads(str(z["meta_json"]))
                layout = json.loads(str(z["layout_json"])) if "layout_json" in z.files else None
                traj = json.loads(str(z["trajectory_json"])) if "trajectory_json" in z.files else None
                dx_d = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("xdirection/")}
                dy_d = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("ydirection/")} or None
        else:
            raise LandscapeError(f"unsupported surface file {suffix or '(none)'}; use .h5 or .npz")
    except LandscapeError:
        raise
    except KeyError as e:
        raise LandscapeError(f"{path.name}: missing dataset {e}") from None
    except Exception as e:
        raise LandscapeError(f"{path.name}: not a readable surface file ({type(e).__name__})") from None
    if layout is None:
        names = list(dx_d)
        shapes = [list(np.shape(dx_d[n])) for n in names]
    else:
        names, shapes = layout["names"], layout["shapes"]
    dx = _flat(dx_d, names) if dx_d else np.zeros(0, np.float32)
    dy = _flat(dy_d, names) if dy_d else None
    return dict(zip(FIELDS, (x, y, loss, acc, dx, dy, names, shapes, meta, traj)))
