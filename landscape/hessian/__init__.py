"""Curvature: one Hessian-vector-product operator and the algorithms built on it.

The face re-exports: :mod:`.operator` (the operators), :mod:`.ggn` (Gauss-Newton and
empirical-Fisher operators, :func:`curvature_operator` by name), :mod:`.decompose`
(``H = G + R``, Papyan's split), :mod:`.flatness` (readouts), :mod:`.results` (result types),
:mod:`.lanczos` (top-k, smallest, :class:`Watch`), :mod:`.trace` (Hutchinson, Hutch++),
:mod:`.slq` (density), :mod:`.outliers` (bulk/outlier split), :mod:`.layers` (per-layer
blocks), :mod:`.pyhessian` (PyHessian cross-checks). :mod:`.report` and :mod:`.figures` are
imported by name.
"""

from landscape.hessian.decompose import (  # noqa: F401
    DecompositionResult,
    DifferenceOperator,
    decompose_hessian,
    papyan_split,
    papyan_vectors,
    subspace_overlap,
)
from landscape.hessian.flatness import (  # noqa: F401
    NOTES,
    FlatnessResult,
    adaptive_sharpness,
    basin_width,
    flatness_readouts,
)
from landscape.hessian.ggn import (  # noqa: F401
    OPERATOR_NAMES,
    OPERATORS,
    GaussNewtonOperator,
    curvature_operator,
)
from landscape.hessian.lanczos import (  # noqa: F401
    ProgressFn,
    Watch,
    smallest_eigenvalue,
    top_eigenpairs,
)
from landscape.hessian.layers import layer_spectra  # noqa: F401
from landscape.hessian.operator import BlockOperator, DenseOperator, HessianOperator  # noqa: F401
from landscape.hessian.outliers import (  # noqa: F401
    BULK_RHO,
    MIN_GAP_RATIO,
    OUTLIER_RHO,
    bulk_and_outliers,
    outlier_split,
)
from landscape.hessian.pyhessian import pyhessian_top_eigenvalues, pyhessian_trace  # noqa: F401
from landscape.hessian.results import (  # noqa: F401
    DensityResult,
    EigenResult,
    LayerResult,
    OutlierResult,
    TraceResult,
)
from landscape.hessian.slq import (  # noqa: F401
    lanczos_quadrature,
    slq_density,
    slq_sigma,
    slq_smooth,
    wasserstein1,
)
from landscape.hessian.trace import hutchinson_trace, hutchpp_trace, rademacher  # noqa: F401
from landscape.hessian.tracking import ScaledOperator, track_top  # noqa: F401
