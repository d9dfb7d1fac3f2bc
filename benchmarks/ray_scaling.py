"""Ray against one process: the `digits-mlp` surface (MLP 64-128-128-10, all 1,797 digits,
random filter-normalized plane) on square grids of several sizes.

    pip install -e ".[distributed]"
    python benchmarks/ray_scaling.py [--sizes 5 11 15 21 31 41 61 101] [--repeats 3] [--cpus 2]
                                     [--hessian] [--address ray://head:10001]

Measures, on the same task and grid:
- one process, one torch thread (``surface.evaluate_grid(..., workers=1)``);
- the local worker pool (``workers=<cpus>``, warm), for reference;
- Ray with ``<cpus>`` single-thread workers (``executors.ray.evaluate_grid_ray``), warm: Ray
  started and its workers' torch imported before the timing; each grid is a new task, so
  the object-store put and the workers' evaluator set-up are inside the timing.
And Ray's start-up: ``ray.init`` (a private local Ray) and the first tasks (workers importing
torch and landscape).

Prints each size's wall times (the best of the repeats, run in rotation), the speed ratio one-process / Ray,
whether Ray's values equal the one-process values, the warm break-even grid (the smallest
size from which Ray is faster) and the cold break-even (the grid whose one-process time
exceeds Ray's time plus its start-up, extrapolated from the largest grid's per-point
rates). Ends with one JSON line of all numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """The best of ``repeats`` wall times of each function, run in rotation so that load
    from other processes on a shared machine hits every method alike; and their outputs."""
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 11, 15, 21, 31, 41, 61, 101])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=None, help="Ray workers (default: all cores)")
    ap.add_argument("--address", default=None, help="a Ray cluster instead of a local Ray")
    ap.add_argument("--hessian", action="store_true",
                    help="also time Hutchinson (100 probes) and SLQ (4 probes x 40 steps)")
    args = ap.parse_args()

    from landscape import presets, surface
    from landscape.core import ray as session
    from landscape.core.device import cpu_count
    from landscape.core.params import Layout, flat_params
    from landscape.surface.directions import random_plane
    from landscape.surface.executors import pool as workers
    from landscape.surface.executors import ray as dist

    cpus = args.cpus or cpu_count()
    torch.set_num_threads(1)
    run = presets.train_preset("digits-mlp")
    model, data = run.model, run.data
    w = flat_params(model)
    dx, dy = random_plane(w, Layout.of(model), seed=0)
    task = surface.make_task(model, data, dx, dy, surface.SurfaceConfig())
    print(f"load average at start: {os.getloadavg()[0]:.1f} (other work on this machine "
          "slows every method; the times are the best of the repeats)")
    print(f"digits-mlp: {w.numel()} parameters, {data.n} examples; {cpu_count()} cores, "
          f"Ray {__import__('ray').__version__} with {cpus} workers")

    t = time.perf_counter()
    init_s = session.init(args.address, num_cpus=cpus)
    session.warm(args.address)
    warm_s = time.perf_counter() - t
    print(f"Ray start-up: ray.init {init_s:.1f} s, init + first tasks on every worker "
          f"(torch import) {warm_s:.1f} s")
    workers.warm(cpus)

    rows = []
    print(f"{'grid':>8} {'points':>7} {'1 proc s':>9} {'pool s':>8} {'Ray s':>8} "
          f"{'1proc/Ray':>9} {'equal':>6}")
    for n in args.sizes:
        xs = ys = np.linspace(-1.0, 1.0, n)
        times, outs = interleaved({
            "one": lambda xs=xs, ys=ys: surface.evaluate_grid(task, xs, ys, workers=1),
            "pool": lambda xs=xs, ys=ys: surface.evaluate_grid(task, xs, ys, workers=cpus),
            "ray": lambda xs=xs, ys=ys: dist.evaluate_grid_ray(task, xs, ys, address=args.address),
        }, args.repeats)
        t1, tp, tr = times["one"], times["pool"], times["ray"]
        l1, lr, info = outs["one"][0], outs["ray"][0], outs["ray"][2]
        same = bool(np.array_equal(l1, lr))
        rows.append({"grid": n, "points": n * n, "one_process_s": t1, "pool_s": tp, "ray_s": tr,
                     "ratio": t1 / tr, "equal": same, "max_abs_diff": float(np.abs(l1 - lr).max()),
                     "chunk_size": info["chunk_size"], "chunks": info["chunks"]})
        print(f"{n:>4}x{n:<3} {n * n:>7} {t1:>9.3f} {tp:>8.3f} {tr:>8.3f} {t1 / tr:>9.2f} "
              f"{str(same):>6}")

    faster = [r for r in rows if r["ratio"] > 1.0]
    warm_even = None
    for i, r in enumerate(rows):
        if all(q["ratio"] > 1.0 for q in rows[i:]):
            warm_even = r["grid"]
            break
    big = rows[-1]
    per1 = big["one_process_s"] / big["points"]
    per_r = big["ray_s"] / big["points"]
    cold_points = warm_s / (per1 - per_r) if per1 > per_r else math.inf
    cold_side = math.ceil(math.sqrt(cold_points)) if math.isfinite(cold_points) else None
    print(f"warm break-even: Ray is faster from a {warm_even}x{warm_even} grid on" if warm_even
          else "warm break-even: Ray was never faster on these sizes")
    print(f"per point at {big['grid']}x{big['grid']}: one process {per1 * 1e3:.3f} ms, "
          f"Ray {per_r * 1e3:.3f} ms, ratio {big['ratio']:.2f}x")
    if cold_side:
        print(f"cold break-even (Ray start-up {warm_s:.1f} s included): about "
              f"{cold_points:,.0f} points, a {cold_side}x{cold_side} grid")
    hess = hessian_rows(model, data, args) if args.hessian else None
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(json.dumps({"cpus": cpus, "loadavg_end": os.getloadavg()[0], "ray_init_s": init_s,
                      "ray_startup_s": warm_s, "rows": rows,
                      "warm_break_even_grid": warm_even, "faster_sizes": [r["grid"] for r in faster],
                      "cold_break_even_points": cold_points, "cold_break_even_grid": cold_side,
                      "hessian": hess}))
    session.shutdown()
    workers.shutdown()


def hessian_rows(model, data, args) -> dict:
    """Hutchinson and SLQ locally (one process, one thread) and on Ray; same seeds."""
    from landscape import hessian
    from landscape.hessian import ray as dist

    op = hessian.HessianOperator(model, data.X, data.y)
    spec = dist.HessianSpec.from_operator(op)
    out = {}
    for name, local, remote in [
        ("hutchinson_100", lambda: hessian.hutchinson_trace(op, probes=100, seed=0),
         lambda: dist.hutchinson_trace_ray(spec, probes=100, seed=0, address=args.address)),
        ("slq_4x40", lambda: hessian.slq_density(op, probes=4, lanczos_steps=40, seed=0),
         lambda: dist.slq_density_ray(spec, probes=4, lanczos_steps=40, seed=0,
                                      address=args.address)),
    ]:
        remote()  # the workers build their operator once (cached afterwards)
        times, outs = interleaved({"local": local, "ray": remote}, args.repeats)
        a, b = outs["local"], outs["ray"]
        diff = (abs(a.trace - b.trace) / abs(a.trace) if name.startswith("hutch")
                else float(np.abs(a.density - b.density).max() / a.density.max()))
        out[name] = {"local_s": times["local"], "ray_s": times["ray"],
                     "ratio": times["local"] / times["ray"], "rel_diff": diff}
        print(f"{name}: local {times['local']:.2f} s, Ray {times['ray']:.2f} s, "
              f"ratio {times['local'] / times['ray']:.2f}x, relative difference {diff:.1e}")
    return out


if __name__ == "__main__":
    main()
