"""Loss surfaces: plan a grid, pick directions, evaluate it on any executor, draw it."""

from landscape.surface.compute import (  # noqa: F401
    BN_MODES,
    DIRECTIONS,
    MAX_POINTS,
    SurfaceConfig,
    SurfaceResult,
    coarse_to_fine,
    compute,
    evaluate_grid,
    make_task,
    surface,
    trajectory_losses,
)
from landscape.surface.evaluators import PlaneTask  # noqa: F401
