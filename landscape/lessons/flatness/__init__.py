"""Flatness (Keskar et al. 2017; Li et al. 2018, Fig. 3; Foret et al. 2021): small batches and
SAM find flatter minima than large-batch SGD.

``config`` (settings, presets), ``sam`` (one SGD or SAM update), ``run`` (training and
measuring as events, the background job), ``result`` (the result and its files), ``figures``.
"""

from landscape.lessons.flatness.config import PRESET_NOTES, PRESETS, FlatnessConfig, preset  # noqa: F401
from landscape.lessons.flatness.result import FlatnessResult, load, save  # noqa: F401
from landscape.lessons.flatness.run import (  # noqa: F401
    FlatnessEvent,
    FlatnessRun,
    flatness_job,
    runs_of,
    train,
    unit_count,
)
