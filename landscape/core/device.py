"""The one place that chooses the compute device and the CPU thread count.

Measured on 2-core machines: small models under load run 5-15x slower with two torch
threads than with one, so small-model work uses one thread per worker process and takes
its parallelism from processes instead (see ``landscape.surface.executors.pool``).
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
DTYPES = {"float32": torch.float32, "float64": torch.float64}  # the one dtype table


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype for ``"float32"`` or ``"float64"`` (a one-line error otherwise)."""
    if name not in DTYPES:
        from landscape.core.errors import LandscapeError

        raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def available_devices() -> list[str]:
    """Devices this machine has, best first, always ending with ``"cpu"``."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def choose_device(preference: str = "auto") -> torch.device:
    """``cuda`` > ``mps`` > ``cpu`` for ``"auto"``; an explicit choice must be available."""
    if preference not in DEVICE_CHOICES:
        from landscape.core.errors import LandscapeError

        raise LandscapeError(f"unknown device {preference!r}; choose one of {DEVICE_CHOICES}")
    found = available_devices()
    if preference == "auto":
        return torch.device(found[0])
    if preference not in found:
        from landscape.core.errors import LandscapeError

        raise LandscapeError(f"device {preference!r} is not available here (found: {found})")
    return torch.device(preference)


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count (default: one per core); returns what was set."""
    n = cpu_count() if n is None else max(1, int(n))
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Set torch's thread count for the block and restore it after (None: leave it)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(before)


def warm_up() -> float:
    """Pay once per process what would otherwise land in the middle of a live run: the first
    optimizer constructed (about 3 s of lazy imports inside torch) and the first double
    backward (about 0.5 s, in float32 and float64). Returns the seconds it took."""
    t0 = time.perf_counter()
    p = torch.nn.Parameter(torch.zeros(2))
    for opt in (torch.optim.SGD([p], lr=0.1, momentum=0.9), torch.optim.Adam([p], lr=0.1)):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    for dt in (torch.float32, torch.float64):
        w = torch.nn.Parameter(torch.ones(3, dtype=dt))
        (g,) = torch.autograd.grad(torch.tanh(w).pow(2).sum(), w, create_graph=True)
        torch.autograd.grad(g.sum(), w)
    return time.perf_counter() - t0
