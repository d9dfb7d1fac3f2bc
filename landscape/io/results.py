"""The one store for array results: ``.npz`` (arrays plus the ``meta`` dict as JSON, read
without pickle) or ``.json`` (everything as lists).

A result is a dataclass with array fields and a ``meta`` dict. ``save(result, path, names)``
writes the fields ``names``; ``load(path, names)`` gives back ``(arrays, meta)`` whichever
format was written, so every result type reads through the same function.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError

FORMATS = (".npz", ".json")


def jsonable(o):
    """``json.dumps`` default for numpy values."""
    return o.tolist() if hasattr(o, "tolist") else str(o)


def result_path(path, write: bool) -> Path:
    """A ``.npz``/``.json`` result path; its folder is created for writing, its existence
    checked for reading."""
    path = Path(path)
    if path.suffix.lower() not in (".npz", ".json"):
        raise LandscapeError(f"unsupported output type {path.suffix or '(none)'}; "
                             "use .npz or .json")
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise LandscapeError(f"result file not found: {path}")
    return path


def write_npz(path: Path, result, names) -> None:
    """The arrays ``names`` of ``result`` plus its ``meta`` as JSON, compressed."""
    arrays = {k: getattr(result, k) for k in names}
    np.savez_compressed(path, meta_json=np.array(json.dumps(result.meta, default=jsonable)),
                        **arrays)


def read_npz(path: Path, names) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a file written by :func:`write_npz` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in names}
        meta = json.loads(str(z["meta_json"]))
    return arrays, meta




def save(result, path, names) -> Path:
    """Write the array fields ``names`` of ``result`` and its ``meta`` to ``path`` (.npz or
    .json); returns the path."""
    path = result_path(path, write=True)
    if path.suffix.lower() == ".npz":
        write_npz(path, result, names)
    else:
        payload = {k: np.asarray(getattr(result, k)).tolist() for k in names}
        payload["meta"] = result.meta
        path.write_text(json.dumps(payload, default=jsonable))
    return path


def load(path, names, optional=()) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a file written by :func:`save`; the fields in ``optional`` may be
    missing (older files) and come back as None."""
    path = result_path(path, write=False)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: (z[k] if k in z.files else None) for k in (*names, *optional)}
                meta = json.loads(str(z["meta_json"]))
        else:
            d = json.loads(path.read_text())
            arrays = {k: (np.asarray(d[k]) if d.get(k) is not None else None) for k in (*names, *optional)}
            meta = d.get("meta", {})
    except (OSError, ValueError, KeyError) as e:
        raise LandscapeError(f"cannot read result file {path}: {e}") from None
    missing = [k for k in names if arrays[k] is None]
    if missing:
        raise LandscapeError(f"result file {path} lacks {', '.join(missing)}")
    return arrays, meta
