"""What the training-dynamics lessons share: running a step generator to the end with a
thread count and a cancel event, and result files (``.npz`` arrays + ``meta_json``)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from landscape.core.errors import Cancelled, LandscapeError


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Set torch's thread count for the block and restore it after (None: leave it)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(before)


def run_to_end(run, cancel=None, callback=None):
    """Iterate ``run.run(cancel=cancel)``; ``callback(event)`` may return True to stop early.
    A set ``cancel`` event raises :class:`Cancelled` with ``run.result()`` as the partial
    result. Returns ``run``."""
    for ev in run.run(cancel=cancel):
        if callback is not None and callback(ev):
            break
    if cancel is not None and cancel.is_set() and not run.done:
        raise Cancelled(f"stopped at step {run.step}", partial=run.result())
    return run


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


def add_output_args(p) -> None:
    """The flags every lesson subcommand shares: device, result file, JSON line, threads."""
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--out", help="result file (.npz or .json)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--threads", type=int, help="torch threads in this process")


def checked_out(args) -> str | None:
    """``--out`` when it names a .npz or .json file (a one-line error otherwise)."""
    out = getattr(args, "out", None)
    if out and Path(out).suffix.lower() not in (".npz", ".json"):
        raise LandscapeError(f"--out must end in .npz or .json, got {out}")
    return out


def preset_with(presets: dict, name: str, what: str, **overrides):
    """A copy of ``presets[name]`` (a config dataclass) with the non-None ``overrides``
    replaced; unknown names and fields are one-line errors naming ``what``."""
    import copy
    from dataclasses import fields, replace

    if name not in presets:
        raise LandscapeError(f"unknown {what} preset {name!r}; choose one of "
                             f"{', '.join(presets)}")
    base = presets[name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in fields(base)}
    if unknown:
        raise LandscapeError(f"unknown {what} options: {sorted(unknown)}")
    return replace(copy.deepcopy(base), **changes)
