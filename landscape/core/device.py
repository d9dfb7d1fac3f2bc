"""The one place that chooses the compute device and the CPU thread count.

Measured on 2-core machines: small models under load run 5-15x slower with two torch
threads than with one, so small-model work uses one thread per worker process and takes
its parallelism from processes instead (see ``landscape.surface.compute``).
"""

from __future__ import annotations

import os

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


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
