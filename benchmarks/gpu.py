"""The GPU path against the 2-core CPU path: a 201x201 loss surface of the digits MLP preset and
of a residual CNN with BatchNorm, and the Hessian's top-5 eigenvalues, timed and checked.

    python benchmarks/gpu.py               # on a machine with CUDA
    python benchmarks/gpu.py --dry-run     # the same code on the CPU at a tiny size (CI)
    python benchmarks/gpu.py --json        # one JSON line

For each model: the GPU surface (points batched with ``torch.func.vmap``, float32) in seconds
and points per second; the CPU path (two single-thread worker processes) timed on a subgrid and
scaled to the full grid by its points per second; the ratio; and the largest relative
difference between the GPU surface and the CPU values on the subgrid's points. For the Hessian:
top-5 eigenvalues by Lanczos on the GPU (float32) and on the CPU (float64), their HVP counts,
seconds, and the largest relative difference.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def surface_case(name, model, data, grid, cpu_grid, device) -> dict:
    """GPU (or ``device``) surface on ``grid`` x ``grid`` against the CPU path on a subgrid."""
    from landscape import surface

    model = model.eval()
    cfg = surface.SurfaceConfig(grid=(grid, grid), seed=0, workers=2)
    surface.compute(model, data, surface.SurfaceConfig(grid=(3, 3), seed=0), device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    dev_res = surface.compute(model, data, cfg, device=device)
    _sync(device)
    dev_s = time.perf_counter() - t0
    sub = surface.SurfaceConfig(grid=(cpu_grid, cpu_grid), seed=0, workers=2)
    surface.compute(model, data, surface.SurfaceConfig(grid=(5, 5), seed=0, workers=2))  # start the pool
    t0 = time.perf_counter()
    cpu_res = surface.compute(model, data, sub, device=None)
    cpu_s = time.perf_counter() - t0
    # The subgrid's points are on the full grid when (grid - 1) is a multiple of (cpu_grid - 1).
    step = (grid - 1) // (cpu_grid - 1)
    dev_on_sub = dev_res.loss[::step, ::step]
    rel = float(np.nanmax(np.abs(dev_on_sub - cpu_res.loss) / np.maximum(np.abs(cpu_res.loss), 1e-12)))
    n, n_sub = grid * grid, cpu_grid * cpu_grid
    cpu_full_s = cpu_s * n / n_sub
    return {"case": name, "device": str(device), "grid": grid, "n_params": sum(p.numel() for p in model.parameters()),
            "n_examples": int(data.X.shape[0]), "device_seconds": round(dev_s, 3),
            "device_points_per_s": round(n / dev_s, 1), "cpu_grid": cpu_grid, "cpu_seconds": round(cpu_s, 3),
            "cpu_points_per_s": round(n_sub / cpu_s, 1), "cpu_seconds_full_grid_est": round(cpu_full_s, 2),
            "speedup": round(cpu_full_s / dev_s, 2), "max_rel_diff_vs_cpu": rel,
            "method": dev_res.meta.get("method")}


def hessian_case(model, data, device, k: int = 5) -> dict:
    """Top-k Hessian eigenvalues on ``device`` (float32) and on the CPU (float64)."""
    from landscape import hessian

    out = {}
    for where, dev, dtype in (("device", device, torch.float32), ("cpu", "cpu", torch.float64)):
        m = model.to(dev).eval()
        op = hessian.HessianOperator(m, data.X.to(dev), data.y.to(dev), "cross_entropy", dtype=dtype)
        hessian.top_eigenpairs(op, k=2)  # warm-up (graph, kernels)
        _sync(dev)
        h0 = op.hvps
        t0 = time.perf_counter()
        eig = hessian.top_eigenpairs(op, k=k)
        _sync(dev)
        out[where] = {"seconds": round(time.perf_counter() - t0, 3), "hvps": op.hvps - h0,
                      "eigenvalues": [float(v) for v in eig.eigenvalues[:k]]}
    a, b = np.asarray(out["device"]["eigenvalues"]), np.asarray(out["cpu"]["eigenvalues"])
    out["max_rel_diff"] = float(np.max(np.abs(a - b) / np.abs(b)))
    out["speedup"] = round(out["cpu"]["seconds"] / out["device"]["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=201)
    ap.add_argument("--cpu-grid", type=int, default=21, help="CPU subgrid (its points lie on the grid)")
    ap.add_argument("--dry-run", action="store_true", help="the same code on the CPU at a tiny size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from landscape import presets
    from landscape.core import data as data_mod
    from landscape.core import models

    torch.set_num_threads(1)
    if args.dry_run:
        device, grid, cpu_grid = "cpu", 5, 3
        digits = data_mod.load_builtin("digits", n=120, seed=0)
        mlp = models.build({"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [16, 16]}}, seed=0)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here; use --dry-run to exercise the code on the CPU")
        device, grid, cpu_grid = "cuda", args.grid, args.cpu_grid
        digits = data_mod.load_builtin("digits")
        mlp = presets.train_preset("digits-mlp").model
    cnn = models.build({"name": "resnet", "args": {"channels": 8 if args.dry_run else 16,
                                                    "blocks": 1 if args.dry_run else 2, "batchnorm": True}}, seed=0)
    rows = [surface_case("digits-mlp", mlp, digits, grid, cpu_grid, device),
            surface_case("resnet-bn", cnn, digits, grid, cpu_grid, device)]
    hess = hessian_case(mlp, digits, device)
    report = {"surfaces": rows, "hessian_top5": hess, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'case':12s} {'grid':>9s} {'device s':>9s} {'pts/s':>10s} {'2-core CPU s (est)':>19s} "
          f"{'speedup':>8s} {'max rel diff':>13s}")
    for r in rows:
        print(f"{r['case']:12s} {r['grid']:>4d}x{r['grid']:<4d} {r['device_seconds']:9.2f} "
              f"{r['device_points_per_s']:10.0f} {r['cpu_seconds_full_grid_est']:19.1f} {r['speedup']:8.1f} "
              f"{r['max_rel_diff_vs_cpu']:13.2e}")
    dev, cpu = hess["device"], hess["cpu"]
    print(f"Hessian top-5 (digits-mlp): device {dev['seconds']} s, {dev['hvps']} HVPs; "
          f"CPU float64 {cpu['seconds']} s, {cpu['hvps']} HVPs; max rel diff {hess['max_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
