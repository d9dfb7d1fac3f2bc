"""The settings of one Neural Redshift measurement (:class:`RedshiftConfig`).

A fully connected network ``R^2 -> R`` with ``depth`` hidden layers of ``width`` units and
the chosen activation, drawn with ``W ~ N(0, init_scale^2 / fan_in)`` and
``b ~ N(0, bias_std^2)`` from ``seed``, evaluated on ``grid x grid`` points over
``[-1, 1)^2``; the spectrum is taken after a periodic Hann window (``"hann"``) or none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.lessons.kit import LessonConfig, check, check_choice, is_finite, is_pos

ACTIVATIONS = ("relu", "tanh", "gelu", "sin")
WINDOWS = ("hann", "none")


def _whole(v) -> bool:
    """An int (not a bool or a float: the sizes index arrays as they are)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass
class RedshiftConfig(LessonConfig):
    """One random network and its measurement grid."""

    what = "neural-redshift"

    activation: str = "relu"    # relu, tanh, gelu or sin
    depth: int = 4              # hidden layers
    width: int = 128            # units per hidden layer
    init_scale: float = 1.0     # weight std multiplier: W ~ N(0, init_scale^2 / fan_in)
    bias_std: float = 0.1       # b ~ N(0, bias_std^2)
    grid: int = 64              # grid x grid points over [-1, 1)^2
    window: str = "hann"        # "hann" or "none" before the FFT
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        check_choice(self.activation, ACTIVATIONS, "activation")
        check(_whole(self.depth) and 1 <= self.depth <= 64, f"depth must be 1..64 hidden layers, got {self.depth}")
        check(_whole(self.width) and 1 <= self.width <= 4096, f"width must be 1..4096 units, got {self.width}")
        check(is_pos(self.init_scale), f"init scale must be a positive number, got {self.init_scale}")
        check(is_finite(self.bias_std) and self.bias_std >= 0, f"bias std must be >= 0, got {self.bias_std}")
        check(_whole(self.grid) and 8 <= self.grid <= 1024, f"grid must be 8..1024 points a side, got {self.grid}")
        check_choice(self.window, WINDOWS, "window")
        check(_whole(self.seed) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed}")
