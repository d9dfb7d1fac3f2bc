"""A flatness run's settings (:class:`FlatnessConfig`) and its presets.

The same MLP (same initial weights, seed ``seed``) is trained on the 1,797 8x8 digits four
ways: small (``small_batch``) and large (``large_batch``, None = full batch) minibatches,
each with plain SGD and with SAM (Foret et al. 2021, radius ``rho``), all at learning rate
``lr`` for ``steps`` updates. Then each minimum gets its top Hessian eigenvalue (Lanczos),
a 1-D slice and a 2-D surface along the same filter-normalized random directions (Li et al.
2018, Fig. 3) over ``[-span, span]``, and the 1-D linear interpolations small -> large batch
(Keskar et al. 2017, Fig. 3) and SGD -> SAM (large batch) over ``t in [-0.5, 1.5]``.

Measured on 2 CPU cores (one torch thread, default preset; seeds 0, 1, 2): top eigenvalue
small-batch SGD 2.1 / 3.6 / 3.0, large-batch SGD 7.0 / 7.1 / 7.7, large-batch SAM 3.1 /
2.9 / 2.9; training loss 0.03-0.09 for every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from landscape.lessons.kit import LessonConfig, check, check_choice, is_int, is_pos, preset_maker

ACTIVATIONS = ("relu", "tanh")


@dataclass
class FlatnessConfig(LessonConfig):
    """One flatness comparison. Defaults: the lesson's recipe (about 15-25 s on 2 cores)."""

    what = "flatness"

    widths: tuple[int, ...] = (64, 64)   # hidden widths of the MLP 64-...-10
    activation: str = "relu"
    lr: float = 0.2                      # SGD (no momentum) and SAM's base step
    steps: int = 1000                    # updates per run
    small_batch: int = 16
    large_batch: int | None = None       # None: full batch (1,797 examples)
    sam: bool = True                     # also train both batch sizes with SAM
    rho: float = 0.05                    # SAM radius (parameter distance)
    seed: int = 0                        # initial weights and minibatch order
    line_points: int = 41                # 1-D slices and interpolations, 4k + 1 (0 = skip them)
    grid: int = 21                       # 2-D surface points a side (0 = skip them)
    span: float = 1.0                    # slices and surfaces over [-span, span] (filter-normalized)
    direction_seed: int = 0              # the random directions

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        widths = list(self.widths) if self.widths is not None else []
        check(widths and all(is_int(w) and 1 <= w <= 4096 for w in widths),
              f"hidden widths must be one or more whole numbers 1..4096, got {widths}")
        check_choice(self.activation, ACTIVATIONS, "activation")
        check(is_pos(self.lr) and self.lr <= 10, f"learning rate must be in (0, 10], got {self.lr}")
        check(is_int(self.steps) and 1 <= self.steps <= 100_000, f"steps must be 1..100000, got {self.steps}")
        check(is_int(self.small_batch) and self.small_batch >= 1,
              f"the small batch must be a whole number >= 1, got {self.small_batch}")
        check(self.large_batch is None or (is_int(self.large_batch) and self.large_batch > self.small_batch),
              f"the large batch must be larger than the small one ({self.small_batch}), got {self.large_batch}")
        check(isinstance(self.sam, bool), f"sam must be true or false, got {self.sam!r}")
        check(is_pos(self.rho), f"SAM's rho must be a positive number, got {self.rho}")
        check(is_int(self.seed) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed}")
        check(is_int(self.line_points) and (self.line_points == 0 or (5 <= self.line_points <= 401
                                                                      and self.line_points % 4 == 1)),
              f"line_points must be 0 or 4k + 1 in 5..401 (so t = 0 and t = 1 are on the grid), "
              f"got {self.line_points}")
        check(is_int(self.grid) and (self.grid == 0 or 5 <= self.grid <= 101),
              f"grid must be 0 or 5..101 points a side, got {self.grid}")
        check(is_pos(self.span), f"span must be a positive number, got {self.span}")
        check(is_int(self.direction_seed) and self.direction_seed >= 0,
              f"direction_seed must be a whole number >= 0, got {self.direction_seed}")


PRESETS: dict[str, FlatnessConfig] = {
    # The lesson: four runs, 1-D and 2-D views, eigenvalues (about 15-25 s on 2 cores).
    "lesson": FlatnessConfig(),
    # Just the sharpness comparison (the test's recipe): small vs large batch SGD, no SAM,
    # no surfaces; about 3 s a seed.
    "sharpness": FlatnessConfig(sam=False, line_points=0, grid=0),
}

PRESET_NOTES = {
    "lesson": "MLP 64-64-64-10 on the digits: batch 16 vs full batch, SGD vs SAM, 1,000 steps",
    "sharpness": "only the top eigenvalues of small- vs large-batch SGD (no SAM, no surfaces)",
}

#: ``preset(name, **overrides)``: a copy of a preset with some fields replaced
preset = preset_maker(PRESETS, "flatness")
