"""``landscape surface``: a loss surface around a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landscape.cli.common import add_model_args, resolve_model
from landscape.core.errors import LandscapeError

NAME = "surface"


def add_parser(sub) -> None:
    s = sub.add_parser("surface", help="loss surface around a model")
    add_model_args(s)
    s.add_argument("--directions", default="random",
                   choices=["random", "pca", "interpolate", "plane", "hessian"])
    s.add_argument("--checkpoint2", help="second model (interpolate, plane)")
    s.add_argument("--checkpoint3", help="third model (plane)")
    s.add_argument("--trajectory", help="trajectory .npz for PCA (default: beside the checkpoint)")
    s.add_argument("--grid", type=int, nargs="+", default=[41], metavar="N",
                   help="N (square), or NX NY")
    s.add_argument("--dim", type=int, choices=[1, 2], default=2, help="1-D slice or 2-D surface")
    s.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), dest="xrange")
    s.add_argument("--yrange", type=float, nargs=2, metavar=("LO", "HI"))
    s.add_argument("--norm", default="filter", choices=["filter", "layer", "none"])
    s.add_argument("--ignore", default="biasbn", choices=["biasbn", "none"])
    s.add_argument("--orthogonalize", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--samples", type=int, help="evaluate on a fixed random subset")
    s.add_argument("--bn", default="keep", choices=["keep", "recompute"],
                   help="BatchNorm statistics: keep the trained ones or recompute per point")
    s.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="evaluate the grid on Ray: no address starts a local Ray; 'auto', "
                        "host:port or ray://host:10001 joins a cluster (pip install -e "
                        ".[distributed]); with --out, a rerun resumes finished chunks")
    s.add_argument("--out", help="result file (.h5 or .npz)")
    s.add_argument("--directions-file", metavar="F",
                   help="reuse the directions of a .h5/.npz file: ours, or the loss-landscape "
                        "code's (xdirection/ydirection read_list groups, or its dir_file)")
    s.add_argument("--test-data", metavar="DATA",
                   help="also evaluate the grid on this data (built-in name, .npz or .csv): "
                        "test_loss and test_acc in the file")


def _needs_export_reader(checkpoint) -> bool:
    """A ``.pt2`` that neither the direct reader nor the program cache can open: the workers
    will need torch's export reader."""
    if not checkpoint or Path(checkpoint).suffix.lower() != ".pt2" or not Path(checkpoint).is_file():
        return False
    from landscape.io import program_cache, pt2_reader
    from landscape.io.checkpoints import MAX_CHECKPOINT_BYTES

    if Path(checkpoint).stat().st_size > MAX_CHECKPOINT_BYTES:
        return False  # refused when it is loaded
    try:
        source = Path(checkpoint).read_bytes()
    except OSError:
        return False
    try:
        pt2_reader.read(source)
        return False
    except pt2_reader.NotReadable:
        return not program_cache.is_cached(source)


def run(args) -> dict:
    from landscape import surface
    from landscape.core.device import choose_device
    from landscape.io import checkpoints as checkpoint

    if args.dim == 1 and len(args.grid) != 1:
        raise LandscapeError("a 1-D slice takes one grid size: --grid N")
    if len(args.grid) > 2:
        raise LandscapeError("--grid takes N or NX NY")
    if any(g < 1 for g in args.grid):
        raise LandscapeError(f"the grid is empty: --grid {' '.join(map(str, args.grid))}")
    grid = tuple(args.grid) if args.dim == 1 or len(args.grid) == 2 else (args.grid[0],) * 2
    if args.out and Path(args.out).suffix.lower() not in (".h5", ".npz"):
        raise LandscapeError(f"--out must end in .h5 or .npz, got {args.out}")
    device = choose_device(args.device)
    if device.type == "cpu" and not args.ray and args.workers != 1 and grid[0] * grid[-1] >= 256:
        from landscape.core.device import cpu_count
        from landscape.surface.executors import pool

        pool.prestart(min(args.workers or cpu_count(), cpu_count()),  # start while the data loads
                      preload_export=_needs_export_reader(args.checkpoint))
    model, d, loss, traj, origin = resolve_model(args)
    cfg = surface.SurfaceConfig(
        directions=args.directions, grid=grid, xrange=tuple(args.xrange or (-1.0, 1.0)),
        yrange=tuple(args.yrange) if args.yrange else None, norm=args.norm, ignore=args.ignore,
        seed=args.seed, orthogonalize=args.orthogonalize, samples=args.samples, bn=args.bn,
        loss=loss, workers=args.workers)
    model_b = checkpoint.load(args.checkpoint2, arch=args.arch).model if args.checkpoint2 else None
    model_c = checkpoint.load(args.checkpoint3, arch=args.arch).model if args.checkpoint3 else None
    hvecs = None
    if args.directions == "hessian":
        from landscape.hessian.report import top_directions

        hvecs = top_directions(model, d, loss, args.samples, args.seed)
    given = None
    if args.directions_file:
        from landscape.core.params import Layout
        from landscape.io import paper

        if args.directions != "random":
            raise LandscapeError("give --directions or --directions-file, not both")
        lay = Layout.of(model)
        given = paper.match_directions(paper.read_directions(args.directions_file), lay.names, lay.shapes)
        if args.dim == 2 and given[1] is None:
            raise LandscapeError(f"{Path(args.directions_file).name} holds no ydirection; a 2-D "
                                 "surface needs two directions (use --dim 1)")
    test_d = None
    if args.test_data:
        from landscape.core import data as datasets

        test_d = datasets.load(args.test_data)
    if args.directions == "pca" and traj is None:
        raise LandscapeError("PCA directions need a trajectory: use --preset, a checkpoint "
                             "written by `landscape train --out`, or --trajectory")
    grid_fn = None
    if args.ray:
        from landscape.core.ray import ray_available
        from landscape.surface.executors import ray as distributed

        ok, why = ray_available()
        if not ok:
            raise LandscapeError(why)
        ckpt = distributed.default_checkpoint_path(args.out) if args.out else None
        grid_fn = distributed.RayGridEvaluator(None if args.ray == "local" else args.ray,
                                               checkpoint_path=ckpt)
    res = surface.compute(model, d, cfg, trajectory=traj, model_b=model_b, model_c=model_c,
                          hessian_vectors=hvecs, device=None if device.type == "cpu" else device,
                          directions=given, test_data=test_d,
                          grid_fn=grid_fn)
    res.meta["source"] = origin
    if traj is not None and res.trajectory is not None:
        res.trajectory["loss"] = surface.trajectory_losses(model, d, traj[1], loss)
    if args.out:
        surface.save(res, args.out)
    m = res.meta
    out = {"out": args.out, "shape": list(res.loss.shape) if res.dims == 2 else [1, len(res.x)],
           "x": res.x.tolist(), "y": None if res.y is None else res.y.tolist(),
           "loss_center": m["loss_center"], "loss_min": m["loss_min"], "loss_max": m["loss_max"],
           "seconds": round(m["seconds"], 4), "method": m["method"], "workers": m["workers"],
           "n_params": m["n_params"], "n_eval": m["n_eval"], "cos_dx_dy": m["cos_dx_dy"],
           "executor": m.get("executor", m.get("backend")), "threads_per_worker": m.get("threads_per_worker"),
           "device": m.get("device"), "points_per_second": m.get("points_per_second"),
           "fast_path": m.get("fast_path")}
    for key in ("explained_variance", "barrier_height", "subset_max_abs_error", "loss_a", "loss_b", "choice"):
        if key in m:
            out[key] = m[key]
    if given is not None:
        out["directions_file"] = args.directions_file
    if test_d is not None:
        out["test_loss_center"] = m["test_loss_center"]
        out["test_loss_min"] = float(np.nanmin(res.test_loss))
    if not args.json:
        print(f"surface {'x'.join(map(str, res.loss.shape[::-1]))} in {m['seconds']:.2f} s "
              f"({m['method']}, {m['workers']} worker(s)): centre {m['loss_center']}, "
              f"min {m['loss_min']:.4g}" + (f" -> {args.out}" if args.out else ""))
    return out
