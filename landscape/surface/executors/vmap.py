"""Many points per call: ``torch.func.vmap`` over stacked parameter vectors (for GPUs).

Each call evaluates a chunk of up to 256 positions (in batches of 64 parameter vectors
``[B, P]``, see :func:`landscape.surface.evaluators.evaluate_points_vmap`); progress and
cancel are handled between chunks. BatchNorm statistics are kept, so ``bn="recompute"``
is refused before anything runs (:func:`landscape.surface.evaluate.check_options`). On a
CPU the per-point evaluators are faster; there this executor serves as a cross-check.
"""

from __future__ import annotations

from landscape.surface.evaluators import ChunkEvaluator

CHUNK = 256


class VmapExecutor:
    """Batched evaluation on ``device`` (a torch device or its name)."""

    name = "vmap"

    def __init__(self, device="cpu", chunk: int = CHUNK):
        self.device, self.chunk = device, int(chunk)

    def target(self):
        return self.device, True

    def run(self, task, plan, grid) -> dict:
        ev = ChunkEvaluator(task, self.device, batched=True)
        for pos in plan.chunks(grid.todo(), self.chunk):
            grid.check_cancel()
            loss, acc = ev(plan.points(pos))
            grid.put(pos, loss, acc)
            grid.report()
        return {"method": "vmap", "workers": 1, "device": str(self.device)}
