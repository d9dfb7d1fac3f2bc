"""Loss surfaces: plan a grid, pick directions, evaluate it on any executor, draw it.

``plan`` (recipe, grid, coarse-to-fine order), ``directions``, ``evaluators`` (the loss at
one point), ``evaluate`` (the one grid evaluation), ``executors`` (this thread, worker
processes, Ray, vmap), ``compute`` (directions + grid in one call), ``result`` (the
result and its files), ``figures``.
"""

from landscape.surface.compute import (  # noqa: F401
    compute,
    make_task,
    surface,
    trajectory_losses,
)
from landscape.surface.evaluate import check_options, evaluate, evaluate_grid  # noqa: F401
from landscape.surface.evaluators import PlaneTask  # noqa: F401
from landscape.surface.plan import (  # noqa: F401
    BN_MODES,
    DIRECTIONS,
    MAX_POINTS,
    GridPlan,
    SurfaceConfig,
    coarse_to_fine,
)
from landscape.surface.result import SurfaceResult, load, save  # noqa: F401
