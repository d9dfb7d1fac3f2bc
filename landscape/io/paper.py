"""The file conventions of the paper's own code (tomgoldstein/loss-landscape), both ways.

What that code writes and reads (``plot_surface.py``, ``net_plotter.py``, ``h5_util.py``,
``plot_2D.py``, ``projection.py``):

- **Surfaces**: ``xcoordinates`` [nx], ``ycoordinates`` [ny], ``train_loss``/``train_acc``
  (and ``test_loss``/``test_acc``). ``crunch`` declares the arrays with shape ``(nx, ny)``
  (filled with -1) but fills them through ``ravel()`` in ``meshgrid(x, y)`` order: flat index
  ``k`` holds the point ``(x[k % nx], y[k // nx])``. Reshaping the flat values to ``(ny, nx)``
  therefore gives ``Z[j, i]`` for the point ``(x_i, y_j)`` for their files (any grid) and for
  ours (written ``(ny, nx)``) alike: :func:`grid_values`. Accuracies are **percent**
  (``plot_1D`` draws ``100 - acc`` as the error).
- **Directions**: groups ``xdirection``/``ydirection`` read by ``h5_util.read_list``: datasets
  ``"0"`` ... ``"n-1"``, one per tensor in ``model.parameters()`` order (:func:`read_list`,
  :func:`write_list`), in the surface file or in the file its ``dir_file`` entry names.
- **PCA projections**: ``proj_xcoord``, ``proj_ycoord`` [T], the trajectory's coordinates in
  the plane of a PCA directions file (:func:`read_projection`).

Our own files before format 2 held accuracies as fractions and keyed the direction datasets
by parameter name (in the order of the ``layout`` attribute); :func:`read_directions` reads
every variant. This module needs only numpy and h5py (the ``io`` wing imports only ``core``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError

OURS, PAPER = "landscape", "loss-landscape"  # the two origins of a file
UNFILLED = -1.0  # crunch's initial value: a point it never computed


# ---------------------------------------------------------------------------------------
# h5_util.read_list / write_list


def write_list(group, arrays) -> None:
    """``h5_util.write_list``: one dataset ``str(i)`` per array, in order."""
    for i, a in enumerate(arrays):
        group.create_dataset(str(i), data=np.asarray(a))


def is_indexed(keys) -> bool:
    """True when the dataset names are exactly ``"0"`` ... ``"n-1"`` (read_list's layout)."""
    keys = list(keys)
    return bool(keys) and sorted(keys, key=lambda k: (len(k), k)) == [str(i) for i in range(len(keys))]


def read_list(group) -> list[np.ndarray]:
    """``h5_util.read_list``: ``[group["0"], group["1"], ...]`` for ``len(group)`` datasets."""
    return [np.asarray(group[str(i)][()]) for i in range(len(group.keys()))]


# ---------------------------------------------------------------------------------------
# Surface values


def grid_values(arr, nx: int, ny: int | None, name: str = "train_loss") -> tuple[np.ndarray, str]:
    """The values ``[j, i]`` of the point ``(x_i, y_j)``, shape ``(ny, nx)`` (``(nx,)`` for 1-D),
    from an array of either origin, and how it was laid out in the file.

    The flat values are in ``meshgrid(x, y)`` order in both origins (ours are written
    ``(ny, nx)``; ``crunch`` declares ``(nx, ny)`` but fills through ``ravel()``), so the
    flat array reshaped to ``(ny, nx)`` is right for both; only its label differs."""
    arr = np.asarray(arr, dtype=float)
    if ny is None:
        if arr.size != nx:
            raise LandscapeError(f"{name} holds {arr.size} values; the {nx} x-coordinates need {nx}")
        return arr.reshape(nx), "1-D"
    if arr.size != nx * ny:
        raise LandscapeError(f"{name} holds {arr.size} values (shape {list(arr.shape)}); the grid "
                             f"{nx} x {ny} needs {nx * ny}")
    if nx != ny and arr.shape == (ny, nx):
        layout = "(ny, nx)"
    elif nx != ny and arr.shape == (nx, ny):
        layout = "crunch: declared (nx, ny), filled in meshgrid order"
    elif arr.ndim == 2:
        layout = "square, meshgrid order"
    else:
        layout = "flat, meshgrid order"
    return arr.reshape(-1).reshape(ny, nx), layout


def mark_unfilled(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``crunch``'s never-computed points (exactly -1) as NaN, and how many there were."""
    miss = values == UNFILLED
    if not miss.any():
        return values, 0
    out = values.copy()
    out[miss] = np.nan
    return out, int(miss.sum())


def accuracy_units(acc: np.ndarray, declared: str | None, origin: str) -> tuple[str, str]:
    """(``"percent"`` | ``"fraction"`` | ``"none"``, why): the file's ``acc_units`` attribute
    if any; our files before it held fractions; the paper's hold percent, unless every value
    lies in [0, 1] (then they are read as fractions, and the answer says so)."""
    if declared in ("percent", "fraction"):
        return declared, "declared by the file's acc_units attribute"
    finite = np.asarray(acc, float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return "none", "no accuracies in the file"
    if origin == OURS:
        return "fraction", "written by landscape before accuracies were stored in percent"
    if finite.max() > 1.0:
        return "percent", "the paper's convention (values above 1)"
    return "fraction", "every value lies in [0, 1]"


# ---------------------------------------------------------------------------------------
# Directions


def _resolve(dir_file: str, beside: Path) -> Path | None:
    """The file a ``dir_file`` entry names: as written, else next to the file holding it."""
    for cand in (Path(dir_file), beside.parent / dir_file, beside.parent / Path(dir_file).name):
        if cand.is_file():
            return cand
    return None


def as_text(value) -> str:
    """An h5py string value (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_group(f, which: str, layout_names) -> tuple[list[np.ndarray], list[str] | None, bool]:
    """The ``{which}direction`` group of an open h5 file: (arrays in parameter order, their
    names or None, indexed). Indexed groups (``"0"`` ...) read as ``read_list`` does; groups
    keyed by name (our format 1) follow ``layout_names`` when given."""
    grp = f[f"{which}direction"]
    keys = list(grp.keys())
    if is_indexed(keys):
        arrays = read_list(grp)
        names = json.loads(as_text(grp.attrs["names"])) if "names" in grp.attrs else None
        if names is None and layout_names is not None and len(layout_names) == len(arrays):
            names = list(layout_names)
        return arrays, names, True
    order = [n for n in (layout_names or []) if n in grp] or keys
    return [np.asarray(grp[n][()]) for n in order], order, False


def read_directions(path, _followed: bool = False) -> dict:
    """The directions in a file of either origin: ``{"x": [arrays], "y": [arrays] or None,
    "names": [str] or None, "indexed": bool, "source": str}``. ``indexed``: the tensors are
    matched to the model by position (read_list); otherwise by parameter name. A surface file
    without directions but with a ``dir_file`` entry is followed to that file."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"directions file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                layout = json.loads(str(z["layout_json"])) if "layout_json" in z.files else None
                out = {}
                for which in ("x", "y"):
                    keys = [k.split("/", 1)[1] for k in z.files if k.startswith(f"{which}direction/")]
                    order = [n for n in (layout or {}).get("names", []) if n in keys] or keys
                    out[which] = [z[f"{which}direction/{n}"] for n in order] or None
                    out[f"{which}_names"] = order
            if out["x"] is None:
                raise LandscapeError(f"{path.name} holds no directions (no xdirection/ arrays)")
            return {"x": out["x"], "y": out["y"], "names": out["x_names"], "indexed": False,
                    "source": str(path)}
        import h5py

        with h5py.File(path, "r") as f:
            if "xdirection" not in f:
                if "dir_file" in f and not _followed:
                    target = as_text(f["dir_file"][()])
                    found = _resolve(target, path)
                    if found is None:
                        raise LandscapeError(f"{path.name} names its directions file {target!r}, "
                                             "which is not there (nor beside it)")
                    return read_directions(found, _followed=True)
                raise LandscapeError(f"{path.name} holds no xdirection group (nor a dir_file entry)")
            layout = json.loads(as_text(f.attrs["layout"])) if "layout" in f.attrs else {}
            x, names, indexed = read_group(f, "x", layout.get("names"))
            y = read_group(f, "y", layout.get("names"))[0] if "ydirection" in f else None
    except LandscapeError:
        raise
    except Exception as e:
        raise LandscapeError(f"{path.name}: not a readable directions file ({type(e).__name__})") from None
    return {"x": x, "y": y, "names": names, "indexed": indexed, "source": str(path)}


def _shape(a) -> list[int]:
    return [int(s) for s in np.shape(a)]


def match_directions(found: dict, names, shapes) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat float32 directions [P] for a model with parameters ``names``/``shapes``
    (``model.parameters()`` order), from :func:`read_directions`'s answer. Indexed files are
    matched by position, named ones by name; the first mismatch is a one-line error."""
    src = Path(found["source"]).name
    names, shapes = list(names), [list(s) for s in shapes]
    flats = []
    for which in ("x", "y"):
        arrays = found[which]
        if arrays is None:
            flats.append(None)
            continue
        if found["indexed"]:
            for i, (a, n, s) in enumerate(zip(arrays, names, shapes)):
                if _shape(a) != s:
                    raise LandscapeError(f"{src}: {which}direction tensor {i} has shape {_shape(a)}, "
                                         f"the model's parameter {i} ({n}) has shape {s}")
            if len(arrays) < len(names):
                i = len(arrays)
                raise LandscapeError(f"{src}: {which}direction holds {len(arrays)} tensors, the model "
                                     f"has {len(names)} parameters; parameter {i} ({names[i]}, shape "
                                     f"{shapes[i]}) has no tensor")
            if len(arrays) > len(names):
                i = len(names)
                raise LandscapeError(f"{src}: {which}direction holds {len(arrays)} tensors, the model "
                                     f"has {len(names)} parameters; tensor {i} (shape "
                                     f"{_shape(arrays[i])}) matches none (buffers of a 'states' file?)")
            ordered = arrays
        else:
            by_name = dict(zip(found["names"], arrays))
            for n, s in zip(names, shapes):
                if n not in by_name:
                    raise LandscapeError(f"{src}: {which}direction has no tensor for the model's "
                                         f"parameter {n} (shape {s})")
                if _shape(by_name[n]) != s:
                    raise LandscapeError(f"{src}: {which}direction tensor {n} has shape "
                                         f"{_shape(by_name[n])}, the model's has shape {s}")
            extra = [n for n in found["names"] if n not in set(names)]
            if extra:
                raise LandscapeError(f"{src}: {which}direction tensor {extra[0]} matches no "
                                     "parameter of the model")
            ordered = [by_name[n] for n in names]
        flat = np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in ordered]) if ordered \
            else np.zeros(0, np.float32)
        flats.append(flat)
    return flats[0], flats[1]


# ---------------------------------------------------------------------------------------
# PCA projections


def read_projection(path) -> np.ndarray:
    """A projection file's trajectory ``[T, 2]``: ``proj_xcoord``, ``proj_ycoord`` (the
    snapshots' coordinates in the plane of the PCA directions, their units)."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"projection file not found: {path}")
    try:
        import h5py

        with h5py.File(path, "r") as f:
            missing = [k for k in ("proj_xcoord", "proj_ycoord") if k not in f]
            if missing:
                raise LandscapeError(f"{path.name} is not a projection file: no {missing[0]} "
                                     f"(found {', '.join(sorted(f.keys())) or 'nothing'})")
            xs = np.asarray(f["proj_xcoord"][()], float).reshape(-1)
            ys = np.asarray(f["proj_ycoord"][()], float).reshape(-1)
    except LandscapeError:
        raise
    except Exception as e:
        raise LandscapeError(f"{path.name}: not a readable projection file ({type(e).__name__})") from None
    if xs.size != ys.size or xs.size == 0:
        raise LandscapeError(f"{path.name}: proj_xcoord has {xs.size} values, proj_ycoord {ys.size}")
    return np.stack([xs, ys], axis=1)
