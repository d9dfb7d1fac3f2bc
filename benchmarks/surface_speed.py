"""41x41 filter-normalized surface of `digits-mlp` on all 1,797 digits: landscape vs the
reference tool `loss-landscapes` 3.0.6 (`random_plane`), side by side in one run, on the
same trained model and the same thread budget (all cores of this machine).

    pip install -e ".[bench]"      # loss-landscapes==3.0.6
    python benchmarks/surface_speed.py [--grid 41] [--repeats 3]

Prints each method's wall time (median of the repeats), the speed ratio against
loss-landscapes, our achieved GFLOP/s of plain forward work, and the largest relative
difference between our surface and a direct per-point evaluation of the same points.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def forward_flops(model, n: int) -> float:
    """2 * N * sum(in * out) for the Linear layers: the plain forward work per point."""
    return 2.0 * n * sum(m.in_features * m.out_features for m in model
                         if isinstance(m, torch.nn.Linear))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=41)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from landscape import presets, surface
    from landscape.core.device import cpu_count
    from landscape.surface.evaluators import ModuleEvaluator, PlaneTask
    from landscape.surface.executors import pool as workers

    cores = cpu_count()
    run = presets.train_preset("digits-mlp")
    model, data = run.model, run.data
    n = args.grid
    points = n * n
    gflop = forward_flops(model, data.n) * points / 1e9
    print(f"digits-mlp: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{data.n} examples, {n}x{n} grid, {gflop:.1f} GFLOP of plain forward work, "
          f"{cores} cores")

    # --- the reference: loss-landscapes random_plane on all cores (torch threads) ---
    import loss_landscapes
    import loss_landscapes.metrics

    torch.set_num_threads(cores)
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), data.X, data.y)
    ref_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ll = loss_landscapes.random_plane(model, metric, distance=1, steps=n,
                                          normalization="filter", deepcopy_model=True)
        ref_times.append(time.perf_counter() - t)
    assert np.asarray(ll).shape == (n, n)

    # --- ours: fast MLP evaluator in a pool of single-thread worker processes ---
    t = time.perf_counter()
    workers.warm(cores)
    startup = time.perf_counter() - t
    cfg = surface.SurfaceConfig(grid=(n, n), workers=cores)
    ours, res = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = surface.compute(model, data, cfg)
        ours.append(time.perf_counter() - t)

    # --- accuracy: a direct per-point evaluation (generic module path, one process) ---
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    task = PlaneTask(model, w, torch.as_tensor(res.dx), torch.as_tensor(res.dy), data.X, data.y)
    direct = ModuleEvaluator(task)
    t = time.perf_counter()
    exact = np.array([[direct(float(a), float(b))[0] for a in res.x] for b in res.y])
    plain_loop = time.perf_counter() - t
    rel = float(np.max(np.abs(res.loss - exact) / np.abs(exact)))

    ref, mine = statistics.median(ref_times), statistics.median(ours)
    rows = [
        (f"loss-landscapes 3.0.6 random_plane, {cores} threads (reference)", ref),
        (f"plain per-point loop (module copy, in-place params), {cores} threads", plain_loop),
        (f"landscape ({res.meta['method']} evaluator, {res.meta['workers']} worker processes)", mine),
    ]
    print(f"\n{'method':74s} {'seconds':>8s} {'vs reference':>13s} {'GFLOP/s':>8s}")
    for name, sec in rows:
        print(f"{name:74s} {sec:8.3f} {ref / sec:12.2f}x {gflop / sec:8.1f}")
    print(f"\nspeed-up over loss-landscapes: {ref / mine:.2f}x "
          f"(runs: ours {[f'{x:.3f}' for x in ours]}, reference {[f'{x:.3f}' for x in ref_times]})")
    print(f"worker pool start-up, paid once per process: {startup:.2f} s")
    print(f"max relative difference vs direct per-point evaluation: {rel:.2e}")
    workers.shutdown()


if __name__ == "__main__":
    main()
