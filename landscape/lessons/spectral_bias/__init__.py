"""Spectral bias (Rahaman et al. 2019): low frequencies are learned first.

``config`` (settings, presets), ``model`` (coordinate MLP, encodings), ``measures`` (FFT
bins, amplitude, error, half-amplitude steps, Spearman, activation regions), ``run``
(training as events, the background job), ``result`` (the result and its files), ``figures``.
"""

from landscape.core.device import DTYPES  # noqa: F401
from landscape.lessons.spectral_bias.config import (  # noqa: F401
    ACTIVATIONS,
    ENCODINGS,
    PRESET_NOTES,
    PRESETS,
    SpectralConfig,
    preset,
)
from landscape.lessons.spectral_bias.figures import (  # noqa: F401
    FREQ_LABEL,
    STEP_LABEL,
    fig_error_curves,
    fig_function,
    fig_heatmap,
    fig_loss,
    fig_regions,
)
from landscape.lessons.spectral_bias.measures import (  # noqa: F401
    HALF,
    fft_bins,
    half_amplitude_steps,
    normalized_amplitude,
    pattern_ids,
    relative_error,
    spearman,
    target,
)
from landscape.lessons.spectral_bias.model import CoordinateMLP, Sine, build_model  # noqa: F401
from landscape.lessons.spectral_bias.result import SpectralResult, load, save  # noqa: F401
from landscape.lessons.spectral_bias.run import SpectralBiasRun, SpectralEvent, spectral_job, train  # noqa: F401
