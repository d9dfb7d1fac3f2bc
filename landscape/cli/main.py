"""The ``landscape`` command (also ``python -m landscape``).

Every subcommand accepts a built-in ``--preset`` or a user model (``--checkpoint`` with
``--data``), writes its result with ``--out``, prints a one-line JSON summary with
``--json``, and on bad input prints one line ``landscape: error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from landscape.core.errors import LandscapeError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise LandscapeError(f"{message} (see `{self.prog} --help`)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--preset", help="built-in recipe (see `landscape presets`)")
    g.add_argument("--checkpoint", help="model file: .pt2, .safetensors (+ .json sidecar), .pt/.pth")
    g.add_argument("--arch", help="zoo spec (JSON) for a .pt/.pth state_dict")
    g.add_argument("--data", help="built-in data name, or a .npz (X, y) / .csv (label last)")
    g.add_argument("--loss", choices=["cross_entropy", "mse"], help="default: from the recipe")
    g.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    g.add_argument("--threads", type=int, help="torch threads in this process (default 1)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="landscape", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)

    pr = sub.add_parser("presets", help="list the built-in presets")
    pr.add_argument("--json", action="store_true", help="print a one-line JSON summary")

    t = sub.add_parser("train", help="train a preset or a zoo model; write a checkpoint")
    _add_model_args(t)
    t.add_argument("--model", help="zoo spec JSON, e.g. '{\"name\": \"mlp\", \"args\": {...}}'")
    t.add_argument("--optimizer", choices=["gd", "sgd", "momentum", "adam"])
    t.add_argument("--lr", type=float)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, help="0 = full batch")
    t.add_argument("--seed", type=int)
    t.add_argument("--snapshot-every", type=int)
    t.add_argument("--out", help="checkpoint path (.safetensors); the trajectory goes beside it")

    s = sub.add_parser("surface", help="loss surface around a model")
    _add_model_args(s)
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
    from landscape.lessons import eos, opposing, spectral_bias

    eos.add_cli(sub)
    spectral_bias.add_cli(sub)
    opposing.add_cli(sub)

    h = sub.add_parser("hessian", help="Hessian spectrum: top eigenvalues, trace, density, outliers")
    _add_model_args(h)
    h.add_argument("--top-k", type=int, default=5, help="top eigenvalues by Lanczos")
    h.add_argument("--trace", choices=["hutchinson", "hutchpp", "none"], default="hutchpp")
    h.add_argument("--density", action="store_true", help="SLQ eigenvalue density")
    h.add_argument("--probes", type=int, default=60, help="trace probes (HVPs)")
    h.add_argument("--samples", type=int, help="fixed random subset of the data")
    h.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    h.add_argument("--no-outliers", action="store_true", help="skip the bulk/outlier split")
    h.add_argument("--smallest", action="store_true",
                   help="also the most negative eigenvalue (with its residual)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", help="result file (.npz)")
    return ap


def _resolve_model(args):
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


def cmd_presets(args) -> dict:
    from landscape import presets

    rows = {n: p.description for n, p in presets.PRESETS.items()}
    if not args.json:
        for n, d in rows.items():
            print(f"{n:24s} {d}")
    return {"presets": list(rows)}


def cmd_train(args) -> dict:
    from landscape import presets
    from landscape.core import data, models
    from landscape.core.train import TrainConfig, train

    t0 = time.perf_counter()
    if args.preset:
        p = presets.get(args.preset)
        model, d = presets.make(args.preset)
        cfg = TrainConfig.from_dict(p.train.to_dict())
        data_spec, model_spec = p.data, p.model
    else:
        if not (args.data and args.model):
            raise LandscapeError("give --preset NAME, or --data and --model (a zoo spec)")
        d = data.load(args.data)
        model = models.build(args.model, seed=args.seed or 0)
        cfg = TrainConfig(loss=args.loss or ("cross_entropy" if d.is_classification else "mse"))
        data_spec, model_spec = args.data, models.spec_of(model)
    for key, val in (("optimizer", args.optimizer), ("lr", args.lr), ("steps", args.steps),
                     ("seed", args.seed), ("loss", args.loss), ("snapshot_every", args.snapshot_every)):
        if val is not None:
            setattr(cfg, key, val)
    if args.batch_size is not None:
        cfg.batch_size = None if args.batch_size == 0 else args.batch_size
    if args.seed is not None and args.preset:
        model = models.build(model_spec, seed=args.seed)
    from landscape.core.data import check_fits

    check_fits(models.output_size(model, d.input_shape), d)
    tr = train(model, d, cfg)
    loss, acc = tr.evaluate()
    out = None
    if args.out:
        from landscape.io import checkpoints as checkpoint

        recipe = {"data": data_spec, "model": model_spec, "train": cfg.to_dict()}
        out = checkpoint.save(tr.model, args.out, data=data_spec, recipe=recipe)
        presets.save_trajectory(out, tr)
        out = str(out)
    res = {"out": out, "final_loss": loss, "final_accuracy": acc, "steps": tr.step,
           "n_params": sum(p.numel() for p in tr.model.parameters()),
           "seconds": round(time.perf_counter() - t0, 3)}
    if not args.json:
        print(f"trained {res['steps']} steps: loss {loss:.4g}, accuracy {acc:.3f}"
              + (f" -> {out}" if out else ""))
    return res


def cmd_surface(args) -> dict:
    from landscape import surface
    from landscape.core.device import choose_device
    from landscape.io import checkpoints as checkpoint
    from landscape.io import surfaces as store

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
    model, d, loss, traj, origin = _resolve_model(args)
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
    if args.directions == "pca" and traj is None:
        raise LandscapeError("PCA directions need a trajectory: use --preset, a checkpoint "
                             "written by `landscape train --out`, or --trajectory")
    grid_fn = None
    if args.ray:
        from landscape.surface import ray as distributed

        ok, why = distributed.ray_available()
        if not ok:
            raise LandscapeError(why)
        ckpt = distributed.default_checkpoint_path(args.out) if args.out else None
        grid_fn = distributed.RayGridEvaluator(None if args.ray == "local" else args.ray,
                                               checkpoint_path=ckpt)
    res = surface.compute(model, d, cfg, trajectory=traj, model_b=model_b, model_c=model_c,
                          hessian_vectors=hvecs, device=None if device.type == "cpu" else device,
                          grid_fn=grid_fn)
    res.meta["source"] = origin
    if traj is not None and res.trajectory is not None:
        res.trajectory["loss"] = surface.trajectory_losses(model, d, traj[1], loss)
    if args.out:
        store.save(res, args.out)
    m = res.meta
    out = {"out": args.out, "shape": list(res.loss.shape) if res.dims == 2 else [1, len(res.x)],
           "x": res.x.tolist(), "y": None if res.y is None else res.y.tolist(),
           "loss_center": m["loss_center"], "loss_min": m["loss_min"], "loss_max": m["loss_max"],
           "seconds": round(m["seconds"], 4), "method": m["method"], "workers": m["workers"],
           "n_params": m["n_params"], "n_eval": m["n_eval"], "cos_dx_dy": m["cos_dx_dy"]}
    for key in ("explained_variance", "barrier_height", "subset_max_abs_error", "loss_a", "loss_b"):
        if key in m:
            out[key] = m[key]
    if not args.json:
        print(f"surface {'x'.join(map(str, res.loss.shape[::-1]))} in {m['seconds']:.2f} s "
              f"({m['method']}, {m['workers']} worker(s)): centre {m['loss_center']}, "
              f"min {m['loss_min']:.4g}" + (f" -> {args.out}" if args.out else ""))
    return out


def cmd_hessian(args) -> dict:
    import numpy as np

    from landscape.hessian import report as spectrum

    if args.out and Path(args.out).suffix.lower() != ".npz":
        raise LandscapeError(f"--out must end in .npz, got {args.out}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model, d, loss, _, origin = _resolve_model(args)
    rep = spectrum.compute_report(
        model, d, loss, top_k=args.top_k, outliers=not args.no_outliers, trace=args.trace,
        probes=args.probes, density=args.density, samples=args.samples, dtype=args.dtype,
        smallest=args.smallest, seed=args.seed)
    k = min(args.top_k, len(rep.eig.eigenvalues))
    out = {"top_eigenvalues": rep.eig.eigenvalues[:k].tolist(),
           "residuals": rep.eig.residuals[:k].tolist(),
           "trace": rep.trace.trace if rep.trace else None,
           "trace_stderr": rep.trace.stderr if rep.trace else None,
           "trace_method": args.trace,
           "n_outliers": rep.split.n_outliers if rep.split else None,
           "outlier_verdict": rep.split.verdict if rep.split else None,
           "rho": rep.split.rho.tolist() if rep.split else None,
           "hvps": rep.meta["hvps"], "n_params": rep.meta["n_params"],
           "n_examples": rep.meta["n_examples"], "dtype": args.dtype,
           "seconds": round(rep.meta["seconds"], 3), "source": origin}
    if rep.density is not None:
        out["density_sigma"] = rep.density.sigma
    if rep.smallest is not None:
        out["smallest_eigenvalue"] = float(rep.smallest.eigenvalues[0])
        out["smallest_residual"] = float(rep.smallest.residuals[0])
    if args.out:
        arrays = {"eigenvalues": rep.eig.eigenvalues, "residuals": rep.eig.residuals}
        if rep.split is not None:
            arrays["rho"] = rep.split.rho
        if rep.density is not None:
            arrays["density_grid"], arrays["density"] = rep.density.grid, rep.density.density
        np.savez(args.out, meta_json=np.array(json.dumps(out, default=str)), **arrays)
        out["out"] = args.out
    if not args.json:
        print(f"top eigenvalues {np.round(out['top_eigenvalues'], 6).tolist()} "
              f"(max residual {max(out['residuals']):.2g}); trace {out['trace']}; "
              f"outliers: {rep.split.message if rep.split else 'n/a'}; {out['hvps']} HVPs, "
              f"{out['seconds']} s")
    return out


def cmd_spectral_bias(args) -> dict:
    from landscape.lessons import spectral_bias

    return spectral_bias.run_cli(args)


def cmd_opposing(args) -> dict:
    from landscape.lessons import opposing

    return opposing.run_cli(args)


def cmd_eos(args) -> dict:
    from landscape.lessons import eos

    return eos.run_cli(args)


def _finite(obj):
    """NaN and infinities become null, so the --json line is valid JSON."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    return obj


COMMANDS = {"presets": cmd_presets, "train": cmd_train, "surface": cmd_surface,
            "hessian": cmd_hessian, "eos": cmd_eos, "spectral-bias": cmd_spectral_bias,
            "opposing": cmd_opposing}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        from landscape.core.device import set_threads

        # One torch thread unless asked: small models on a few cores run fastest that way
        # (surfaces get their parallelism from worker processes instead).
        set_threads(getattr(args, "threads", None) or 1)
        result = COMMANDS[args.command](args)
        if getattr(args, "json", False):
            print(json.dumps(_finite(result), allow_nan=False,
                             default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        return 0
    except LandscapeError as e:
        print(f"landscape: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless debugging
        if os.environ.get("LANDSCAPE_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"landscape: internal error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
