"""What every subcommand shares: the one-line-error parser, the model and data flags, a model
from ``--preset`` or ``--checkpoint``, the lessons' output flags, and JSON-safe numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

from landscape.core.errors import LandscapeError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise LandscapeError(f"{message} (see `{self.prog} --help`)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--preset", help="built-in recipe (see `landscape presets`)")
    g.add_argument("--checkpoint", help="model file: .pt2, .safetensors (+ .json sidecar), .pt/.pth")
    g.add_argument("--arch", help="zoo spec (JSON) for a .pt/.pth state_dict")
    g.add_argument("--data", help="built-in data name, or a .npz (X, y) / .csv (label last)")
    g.add_argument("--loss", choices=["cross_entropy", "mse"], help="default: from the recipe")
    g.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    g.add_argument("--threads", type=int, help="torch threads in this process (default 1)")


def resolve_model(args):
    """(model, data, loss_kind, trajectory, origin) from --preset or --checkpoint/--data."""
    from landscape import presets
    from landscape.core import data
    from landscape.io import checkpoints as checkpoint

    if args.preset and args.checkpoint:
        raise LandscapeError("give either --preset or --checkpoint, not both")
    if args.preset:
        run = presets.train_preset(args.preset)
        p = presets.get(args.preset)
        d = data.load(args.data) if args.data else run.data
        return run.model, d, args.loss or p.train.loss, run.trajectory, {"preset": args.preset}
    if not args.checkpoint:
        raise LandscapeError("give a model: --preset NAME or --checkpoint PATH")
    loaded = checkpoint.load(args.checkpoint, arch=args.arch)
    spec = args.data or loaded.data
    if spec is None:
        raise LandscapeError(f"{Path(args.checkpoint).name} names no data set; pass --data "
                             "(a built-in name, or a .npz / .csv file)")
    d = data.load(spec)
    recipe = (loaded.meta.get("recipe") or {})
    loss = args.loss or (recipe.get("train") or {}).get("loss") or \
        ("cross_entropy" if d.is_classification else "mse")
    traj = None
    tpath = getattr(args, "trajectory", None)
    if tpath or Path(args.checkpoint).suffix == ".safetensors":
        if tpath:
            t = presets.read_trajectory(Path(tpath))
        else:
            t = presets.load_trajectory(Path(args.checkpoint))
        if t is not None:
            traj = (t[0], t[1])
    return loaded.model, d, loss, traj, {"checkpoint": str(args.checkpoint),
                                          "format": loaded.format}


def add_lesson_parser(subparsers, name: str, help: str, presets, default: str, note: str = ""):
    """A lesson subcommand's parser with its ``--preset`` flag (``default``; ``note`` after its
    name in the help); the caller adds the lesson's flags, then :func:`add_output_args`."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("--preset", default=default, help=f"one of {', '.join(presets)} (default {default}{note})")
    return p


def overrides(args, *names: str) -> dict:
    """The preset overrides a lesson subcommand passes on: each of ``names`` and ``device``
    from ``args`` (None where absent, so the preset keeps its value)."""
    return {name: getattr(args, name, None) for name in (*names, "device")}


def train_and_save(train, save, cfg, args, out: str | None):
    """``train(cfg)`` on ``--threads`` torch threads; the result, saved to ``out`` when given."""
    res = train(cfg, threads=getattr(args, "threads", None))
    if out:
        save(res, out)
    return res


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



def finite(obj):
    """NaN and infinities become null, so the --json line is valid JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist"):
        return finite(obj.tolist())
    return obj


