"""Every point in this thread, with the per-point evaluator of :mod:`landscape.surface.evaluators`.

Progress is reported after the first point, then about every 0.1 s and at the end; the
cancel event is checked at those moments (so a cancel stops within about 0.1 s plus one
point). The points keep the coarse-to-fine order of the plan.
"""

from __future__ import annotations

import time

from landscape.surface.evaluators import build_evaluator

REPORT_SECONDS = 0.1


def run_points(ev, plan, grid, positions) -> None:
    """Evaluate ``positions`` (indices into ``plan.order``) with the per-point evaluator
    ``ev(a, b) -> (loss, acc)``, writing into ``grid``."""
    positions = [int(p) for p in positions]
    if not positions:
        return
    pts = plan.points(positions)
    last_i = len(positions) - 1
    last = time.perf_counter()
    for i, (s, (a, b)) in enumerate(zip(positions, pts)):
        loss, acc = ev(a, b)
        grid.put_one(s, loss, acc)
        if i == 0 or i == last_i or time.perf_counter() - last > REPORT_SECONDS:
            grid.check_cancel()
            grid.report()
            last = time.perf_counter()


class LocalExecutor:
    """All points here, on the CPU, one after the other."""

    name = "local"

    def target(self):
        return "cpu", False

    def run(self, task, plan, grid) -> dict:
        ev = build_evaluator(task)
        run_points(ev, plan, grid, grid.todo())
        import torch

        return {"method": ev.name, "device": "cpu", "workers": 1, "executor": "local",
                "threads_per_worker": torch.get_num_threads(), "fast_path": getattr(ev, "fast_path", "none")}
