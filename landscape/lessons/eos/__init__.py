"""Edge of stability (Cohen et al. 2021, 2022): sharpness rising to 2/eta and hovering there.

``config`` (settings, presets, thresholds, model and data), ``run`` (training with the
tracked sharpness, in a background job), ``result`` (the record and its files),
``quadratic`` (the 1-D lesson), ``slice`` (the loss along the top eigenvector) and
``figures``. The sharpness is measured with :class:`landscape.hessian.HessianOperator` and
the eigenpair tracker :mod:`landscape.hessian.tracking`.
"""

from landscape.core.device import DTYPES  # noqa: F401
from landscape.hessian.tracking import ScaledOperator, track_top  # noqa: F401
from landscape.lessons.eos.config import (  # noqa: F401
    CROSSING_FRACTION,
    DIVERGED_FACTOR,
    OPTIMIZERS,
    POOLS,
    PRESET_NOTES,
    PRESETS,
    EosConfig,
    build_model,
    hessian_label,
    load_data,
    preset,
    threshold,
)
from landscape.lessons.eos.figures import (  # noqa: F401
    CURV_UNITS,
    STEP_LABEL,
    fig_curvature,
    fig_loss_sharpness,
    fig_quadratic,
    fig_slice,
)
from landscape.lessons.eos.quadratic import QuadraticResult, quadratic_iterates  # noqa: F401
from landscape.lessons.eos.result import EosResult, crossing_step, load, save  # noqa: F401
from landscape.lessons.eos.run import EosEvent, EosRun, start_job, train  # noqa: F401
from landscape.lessons.eos.slice import SliceResult, eigen_slice  # noqa: F401
