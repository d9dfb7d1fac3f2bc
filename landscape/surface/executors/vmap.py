"""Many points per call: ``torch.func.vmap`` over stacked parameter vectors (for GPUs).

Each call evaluates a chunk of up to 256 positions (in batches of 64 parameter vectors
``[B, P]``, see :func:`landscape.surface.evaluators.evaluate_points_vmap`); progress and
cancel are handled between chunks. BatchNorm statistics are kept, so ``bn="recompute"``
is refused before anything runs (:func:`landscape.surface.evaluate.check_options`). On a
CPU the per-point evaluators are faster; there this executor serves as a cross-check. On
CUDA the points per vmap call follow free memory (:func:`chunk_for_memory`).
"""

from __future__ import annotations

from landscape.surface.evaluators import ChunkEvaluator

CHUNK = 256
VMAP_BATCH = 64  # parameter vectors per vmap call off CUDA


def point_bytes(task) -> int:
    """Bytes one point needs inside a vmap call: its parameter vector ``[P]`` plus every
    tensor one plain forward over the data produces (summed over the ops, an upper bound on
    the live activations), measured by running the forward once under a dispatch mode on
    the task's device."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    total = [task.w.numel() * task.w.element_size()]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    total[0] += t.numel() * t.element_size()
            return out

    with torch.no_grad(), Count():
        task.model(task.X)
    return int(total[0])


def chunk_for_memory(per_point: int, free: int, fraction: float = 0.5, most: int = 1024) -> int:
    """Points per vmap call so that ``per_point`` bytes each fit in ``fraction`` of ``free``
    bytes: ``floor(fraction * free / per_point)`` clipped to ``[1, most]``."""
    return max(1, min(int(most), int(fraction * free) // max(1, int(per_point))))


def vmap_batch(task, device) -> int:
    """The vmap batch for ``device``: from free CUDA memory and :func:`point_bytes` on a
    CUDA device, else :data:`VMAP_BATCH`."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return VMAP_BATCH
    free, _ = torch.cuda.mem_get_info(dev)
    return chunk_for_memory(point_bytes(task), free)


class VmapExecutor:
    """Batched evaluation on ``device`` (a torch device or its name)."""

    name = "vmap"

    def __init__(self, device="cpu", chunk: int = CHUNK):
        self.device, self.chunk = device, int(chunk)

    def target(self):
        return self.device, True

    def run(self, task, plan, grid) -> dict:
        ev = ChunkEvaluator(task, self.device, batched=True)
        ev.vmap_batch = vmap_batch(ev.task, self.device)
        chunk = max(self.chunk, ev.vmap_batch)
        for pos in plan.chunks(grid.todo(), chunk):
            grid.check_cancel()
            loss, acc = ev(plan.points(pos))
            grid.put(pos, loss, acc)
            grid.report()
        return {"method": "vmap", "workers": 1, "device": str(self.device), "executor": "vmap",
                "vmap_batch": ev.vmap_batch}
