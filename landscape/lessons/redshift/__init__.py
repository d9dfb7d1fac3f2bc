"""Neural redshift: the frequency content of a random network's function.

``config`` (the network and grid), ``run`` (drawing the network, its spectrum, mean
frequency, sweeps), ``figures``.
"""

from landscape.lessons.redshift.config import ACTIVATIONS, WINDOWS, RedshiftConfig  # noqa: F401
from landscape.lessons.redshift.figures import (  # noqa: F401
    fig_redshift_image,
    fig_redshift_radial,
    fig_redshift_spectrum,
    fig_redshift_sweep,
)
from landscape.lessons.redshift.run import (  # noqa: F401
    RedshiftResult,
    compute,
    grid_points,
    mean_frequency,
    network_function,
    spectrum,
    sweep,
)
