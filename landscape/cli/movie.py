"""``landscape movie``: the trajectory moving over its PCA loss surface, the loss curve beside it.

Trains a preset (``--preset``, cached) or replays a saved run (``--checkpoint`` written by
``landscape train --out``, its trajectory beside it, or ``--trajectory FILE``), then writes
``--out`` as a standalone ``.html`` (Plotly animation: Play/Pause, step slider, works
offline), a ``.gif`` or an ``.mp4`` (imageio, imageio-ffmpeg). Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from landscape.cli.common import add_model_args, resolve_model
from landscape.core.errors import LandscapeError

NAME = "movie"


def add_parser(sub) -> None:
    p = sub.add_parser("movie", help="a movie of training on the loss surface (.html, .gif, .mp4)")
    add_model_args(p)
    p.add_argument("--trajectory", "--trajectory-from", dest="trajectory", metavar="FILE",
                   help="trajectory .npz of a saved run (default: beside the checkpoint)")
    p.add_argument("--out", required=True, help="movie file: .html, .gif or .mp4")
    p.add_argument("--frames", type=int, default=60, help="animation frames (default 60)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument("--view", choices=["contour", "3d"], default="contour",
                   help="the surface as a contour map or in 3-D (default contour)")
    p.add_argument("--grid", type=int, default=31, help="surface grid points a side (default 31)")
    p.add_argument("--width", type=int, default=1024, help="GIF/MP4 width in pixels (>= 800)")
    p.add_argument("--samples", type=int, help="evaluate the surface on a fixed random subset")
    p.add_argument("--workers", type=int, help="surface worker processes (default: one per core)")


def _say(message: str) -> None:
    print(f"movie: {message}", file=sys.stderr, flush=True)


def _every(total: int, what: str):
    """A progress callback that reports about ten times."""
    last = [-1]

    def progress(done, total_=None, *_):
        n = total_ or total
        tenth = int(10 * done / max(n, 1))
        if tenth != last[0]:
            last[0] = tenth
            _say(f"{what} {done}/{n}")

    return progress


def _load(args):
    """(model, data, loss, trajectory, history, origin)."""
    from landscape import presets

    if args.preset and not args.checkpoint:
        p = presets.get(args.preset)
        _say(f"training preset {args.preset} ({p.train.steps} steps; cached after the first run)")
        report = _every(p.train.steps, "training step")
        run = presets.train_preset(args.preset, callback=lambda ev: report(ev.step, p.train.steps))
        if args.data:
            from landscape.core import data

            run.data = data.load(args.data)
        return (run.model, run.data, args.loss or p.train.loss, run.trajectory, run.history,
                {"preset": args.preset})
    model, d, loss, traj, origin = resolve_model(args)
    history = None
    if args.trajectory:
        history = presets.read_trajectory(Path(args.trajectory))[2]
    elif args.checkpoint and Path(args.checkpoint).suffix == ".safetensors":
        t = presets.load_trajectory(Path(args.checkpoint))
        history = None if t is None else t[2]
    return model, d, loss, traj, history, origin


def run(args) -> dict:
    from landscape.surface import movie

    t0 = time.perf_counter()
    fmt = movie.check_options(args.out, args.frames, args.fps, args.view, args.width)
    model, d, loss, traj, history, origin = _load(args)
    if traj is None:
        raise LandscapeError("a movie needs a training trajectory: use --preset, a checkpoint "
                             "written by `landscape train --out`, or --trajectory FILE")
    _say(f"PCA surface {args.grid}x{args.grid} around the final model")
    name = origin.get("preset") or Path(origin.get("checkpoint", "model")).name
    data = movie.movie_data(model, d, traj, loss, history=history, grid=args.grid,
                            samples=args.samples, workers=args.workers,
                            title=f"Training on the loss surface: {name}",
                            progress=_every(args.grid ** 2, "surface point"))
    _say(f"writing {args.frames} frames to {args.out}")
    info = movie.write_movie(data, args.out, frames=args.frames, fps=args.fps, view=args.view,
                             width=args.width, progress=_every(args.frames, "frame"))
    seconds = time.perf_counter() - t0
    _say(f"done in {seconds:.1f} s -> {args.out}")
    out = {**info, "fps": args.fps, "view": args.view, "grid": args.grid,
           "n_snapshots": data.meta["n_snapshots"], "explained_variance": data.meta["explained_variance"],
           "seconds": round(seconds, 3), "source": origin}
    if not args.json:
        size = "" if fmt == ".html" else f", {info['width']}x{info['height']} px"
        print(f"movie: {info['frames']} frames ({args.view}{size}) -> {args.out}")
    return out
