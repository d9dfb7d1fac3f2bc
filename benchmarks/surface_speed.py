"""41x41 filter-normalized surfaces on all 1,797 digits: landscape vs the reference tool
`loss-landscapes` 3.0.6 (`random_plane`), side by side in one run, on the same model, the
same data and the same cores, for four cases a user meets:

- the built-in `digits-mlp` preset (hand-written MLP evaluator);
- a user's plain 64-128-128-10 ReLU MLP saved as a `.pt2` (torch.export, dynamic batch);
- a user's small residual CNN with BatchNorm saved as a `.pt2`;
- a zoo CNN with BatchNorm saved as `.safetensors` (what `landscape train --out` writes);
- on request (``--cases resnet-pt``), the zoo ResNet (16 channels, 4 residual blocks with
  BatchNorm) saved as a plain ``.pt`` state_dict.

    pip install -e ".[bench]"      # loss-landscapes==3.0.6
    python benchmarks/surface_speed.py [--grid 41] [--repeats 2] [--cases mlp-pt2 cnn-pt2]

Prints per case the wall time of each tool (median of the repeats; ours with the worker
pool already warm), the ratio (theirs / ours), what ran (executor, workers, fast path), the
largest relative difference between our grid and a direct per-point evaluation at a few
points, and the start-up of `landscape surface` (process start to first point, minus
`import torch`): for a checkpoint opened before (the program cache holds it) and for a
first open (an empty cache).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

CASES = ("preset-mlp", "mlp-pt2", "cnn-pt2", "cnn-safetensors", "resnet-pt")
DEFAULT_CASES = CASES[:4]  # resnet-pt (a zoo ResNet as a plain state_dict) on request


class ResBN(nn.Module):
    """A small residual CNN with BatchNorm on 8x8 digits (flat 64 inputs), 8 channels."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c3, self.b3 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = x.view(-1, 1, 8, 8)
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.relu(h + self.b3(self.c3(torch.relu(self.b2(self.c2(h))))))
        return self.fc(h.mean((2, 3)))


def _quick_train(model, data, steps=60):
    """A few full-batch Adam steps, so the landscape is not that of a random network."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.X), data.y).backward()
        opt.step()
    return model.eval()


def make_case(case: str, folder: Path, data):
    """``(model ready for evaluation, checkpoint path or None)`` for a case."""
    from landscape import presets
    from landscape.core import models
    from landscape.io import checkpoints

    torch.manual_seed(0)
    if case == "preset-mlp":
        return presets.train_preset("digits-mlp").model, None
    if case == "resnet-pt":
        m = models.build({"name": "resnet", "args": {}}, seed=0)
        path = folder / "resnet.pt"
        torch.save(_quick_train(m, data, 20).state_dict(), path)
        (folder / "resnet.json").write_text('{"name": "resnet", "args": {}}')
        return checkpoints.load(path, arch={"name": "resnet", "args": {}}).model, path
    if case == "cnn-safetensors":
        m = models.build({"name": "cnn", "args": {"channels": [8, 8], "batchnorm": True}}, seed=0)
        path = checkpoints.save(_quick_train(m, data), folder / "cnn.safetensors", data="digits")
        return checkpoints.load(path).model, path
    m = (nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
         if case == "mlp-pt2" else ResBN())
    _quick_train(m, data)
    path = folder / f"{case}.pt2"
    ep = torch.export.export(m, (data.X[:8],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(path))
    return checkpoints.load(path).model, path


def startup(path, repeats: int = 3) -> tuple[float, float | None]:
    """Median seconds from process start to the first point of a 1x1 surface, minus the
    median of ``python -c 'import torch'``: ``(later opens, first open)``. Later opens find
    the program cache written by an earlier open; a first open (checkpoints only) runs each
    time with an empty cache folder."""
    import os

    def wall(cmd, env=None):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return time.perf_counter() - t

    model = ["--preset", "digits-mlp"] if path is None else ["--checkpoint", str(path), "--data", "digits"]
    if path is not None and path.suffix == ".pt":
        model += ["--arch", path.with_suffix(".json").read_text()]
    cmd = [sys.executable, "-m", "landscape", "surface", *model, "--grid", "1", "--workers", "1"]
    wall(cmd)  # writes the program cache, if any
    ours = [wall(cmd) for _ in range(repeats)]
    first = None
    if path is not None:
        first = [wall(cmd, dict(os.environ, LANDSCAPE_CACHE=tempfile.mkdtemp(prefix="landscape-cold-")))
                 for _ in range(repeats)]
    base = statistics.median([wall([sys.executable, "-c", "import torch"]) for _ in range(repeats)])
    return statistics.median(ours) - base, (None if first is None else statistics.median(first) - base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=41)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=CASES)
    args = ap.parse_args()

    import loss_landscapes
    import loss_landscapes.metrics
    from tests_oracle import surface_point

    from landscape import surface
    from landscape.core import data as datasets
    from landscape.core.device import cpu_count
    from landscape.surface.evaluators import PlaneTask
    from landscape.surface.executors import pool as workers

    cores = cpu_count()
    d = datasets.load("digits")
    n = args.grid
    folder = Path(tempfile.mkdtemp(prefix="landscape-bench-"))
    workers.warm(cores)
    rows = []
    for case in args.cases:
        model, path = make_case(case, folder, d)
        torch.set_num_threads(cores)
        metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), d.X, d.y)
        loss_landscapes.random_plane(model, metric, distance=1, steps=3, normalization="filter",
                                     deepcopy_model=True)  # warm
        ref = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            loss_landscapes.random_plane(model, metric, distance=1, steps=n, normalization="filter",
                                         deepcopy_model=True)
            ref.append(time.perf_counter() - t)
        torch.set_num_threads(1)
        cfg = surface.SurfaceConfig(grid=(n, n), workers=cores)
        ours, res = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = surface.compute(model, d, cfg)
            ours.append(time.perf_counter() - t)
        w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        task = PlaneTask(model, w, torch.as_tensor(res.dx, dtype=w.dtype), torch.as_tensor(res.dy, dtype=w.dtype),
                         d.X, d.y)
        rel = max(abs(res.loss[j, i] - surface_point(model, d.X, d.y, "cross_entropy", task.w, task.dx,
                                                     task.dy, float(res.x[i]), float(res.y[j]))[0])
                  / abs(res.loss[j, i]) for i, j in ((0, 0), (n // 2, n // 3), (n - 1, n - 1)))
        m = res.meta
        rows.append((case, statistics.median(ref), statistics.median(ours),
                     f"{m.get('executor')}, {m['workers']}x{m.get('threads_per_worker')} thr, "
                     f"{m['method']}/{m.get('fast_path')}", rel, *startup(path)))
    workers.shutdown()
    print(f"\n{n}x{n} grid, {d.n} digits, {cores} cores; loss-landscapes 3.0.6 random_plane on "
          f"{cores} threads")
    print("\n| case | loss-landscapes (s) | landscape (s) | ratio | what ran | max rel. diff "
          "| start-up (s) | first open (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for case, ref, mine, ran, rel, up, cold in rows:
        first = "-" if cold is None else f"{cold:.2f}"
        print(f"| {case} | {ref:.2f} | {mine:.2f} | {ref / mine:.2f}x | {ran} | {rel:.1e} | {up:.2f} | {first} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import oracles

    sys.modules["tests_oracle"] = oracles
    main()
