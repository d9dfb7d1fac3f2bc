"""Neural redshift: the frequency content of a random network's function."""

from landscape.lessons.redshift.run import (  # noqa: F401
    ACTIVATIONS,
    WINDOWS,
    RedshiftConfig,
    RedshiftResult,
    compute,
    fig_redshift_image,
    fig_redshift_radial,
    fig_redshift_spectrum,
    fig_redshift_sweep,
    grid_points,
    mean_frequency,
    network_function,
    spectrum,
    sweep,
)
