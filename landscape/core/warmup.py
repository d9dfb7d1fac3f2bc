"""Start-up work paid once per process, so a live run never pauses for it.

The first optimizer constructed in a process costs about 3 s (lazy imports inside torch);
one tiny Adam and SGD step here moves that cost to start-up, and one double backward does
the same for the first Hessian-vector product.
"""

from __future__ import annotations

import time


def warm_up() -> float:
    """Build and step tiny optimizers once; returns the seconds it took."""
    import torch

    t0 = time.perf_counter()
    p = torch.nn.Parameter(torch.zeros(2))
    for opt in (torch.optim.SGD([p], lr=0.1, momentum=0.9), torch.optim.Adam([p], lr=0.1)):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    # The first double backward (Hessian-vector products) costs about 0.5 s once, too.
    w = torch.nn.Parameter(torch.ones(3))
    (g,) = torch.autograd.grad(torch.tanh(w).pow(2).sum(), w, create_graph=True)
    torch.autograd.grad(g.sum(), w)
    return time.perf_counter() - t0
