"""Opposing signals (Rosenfeld & Risteski 2023, "Outliers with opposing signals have an
outsized effect on neural network optimization"): at the edge of stability a few groups of
examples that share a strong feature but carry different labels swing in anti-phase while
the overall loss stays low. Measured here on data with a known answer: a feature planted on
two classes, found label-free and checked against matched random controls.

- :mod:`.config`: the run's settings, presets and network;
- :mod:`.planted`: the data sets with a planted feature;
- :mod:`.stats`: the statistics (movement ranking, groups, amplitude, controls, vote share,
  spikes), with their definitions;
- :mod:`.run`: training step by step (:class:`OpposingRun`, :func:`train`);
- :mod:`.result`: :class:`OpposingResult` and its files; :mod:`.figures`: the plots.

Measured on a 2-core CPU, one torch thread, float32, seeds 0-4 (7-14 s a run on a quiet
machine, 25-70 s under heavy load; about half of it is the sharpness trace), planted
(alpha 16) vs control (alpha 1), min-max over seeds:

- precision@m 0.80-0.97 vs 0.00-0.09 (chance 0.02); the groups are the 3s and 8s on every
  seed; purity 0.94-1.00 (control 0.86-0.94: its detected set is mostly 8s with 9s, 1s or 3s,
  so purity alone is not specific); phase agreement 1.00 (control 0.97-1.00);
- amplitude ratio of the planted groups 27-43 vs 0.05-1.03; of the detected groups 31-44 vs
  9.5-11.7 (selection bias: the detected set is chosen by its movement in the same window);
- vote share 0.88-0.91 vs -0.06..0.06; sharpness ratio 0.98-1.14 vs 0.96-0.97 (the control is
  at the edge of stability too);
- group loss correlation -0.95..-1.00, matched random pairs' median -0.97..-1.00 (percentile
  of the pair among them 0.00-0.69): anti-correlation shows the oscillation, not its cause;
- the groups swing between about 0.01 and 0.22-0.58 while the overall loss stays at 0.02;
  overall-loss spikes (local maxima 1.1x the previous 20 steps' median) come at steps 60-150,
  when the sharpness first reaches 2/lr, and occasionally later;
- remove and retrain: without the detected set the kept examples' late oscillation amplitude
  falls 2-23x (planted) but also 1.2-110x (control): not specific either.
- plain digits (no plant, seeds 0-1): the detector pairs 8s with 9s (purity 0.83-0.89,
  detected-group amplitude ratio 10.5-11.9, the selection-bias level).
- the Gaussian mixture preset (seeds 0-1): precision 0.83 / 1.00, planted-group amplitude ratio
  21 / 166, vote share 0.965 / 0.961, sharpness ratio 0.85 / 0.95; its control (alpha 1)
  precision 0.00, ratio 0.82 / 0.78, vote share 0.12 / 0.14 and sharpness ratio 0.61 / 0.65
  (below the edge: here the plant itself drives the run to the edge of stability).

The two-layer linear toy (``data="toy"``, the paper's illustration: a small core signal in
``toy_dim`` coordinates plus one large coordinate ``toy_outlier`` carried by ``fraction`` of
each class) is an illustration only: it has no stable anti-phase regime. With the preset's
settings (400 examples, 20 core coordinates, signal 0.5, outlier 10 on 10% of each class,
width 20, 600 steps) it converges to the same fixed point (loss 0.038; late sharpness
0.79 x 2/lr at the preset's step size) for lr up to 2.1 x 2/lambda_0 and diverges within 10
steps from 2.2 x on. The preset runs at 1.0 x 2/lambda_0, where nothing oscillates
(planted-group amplitude ratio about 1.6). A synthetic Gaussian set in which the network
memorises the planted points shows nothing either; the well-separated 10-class mixture of
the ``opposing-gaussian`` preset does show the phenomenon (numbers above).
"""

from landscape.core.device import DTYPES  # noqa: F401
from landscape.lessons.opposing.config import (  # noqa: F401
    ACTIVATIONS,
    BAND,
    DATASETS,
    PATCH_PIXELS,
    PRESET_NOTES,
    PRESETS,
    SHARPNESS_NCV,
    SHARPNESS_TOL,
    SPIKE_LOOKBACK,
    OpposingConfig,
    build_model,
    preset,
)
from landscape.lessons.opposing.figures import (  # noqa: F401
    COLORS,
    LOSS_LABEL,
    STEP_LABEL,
    fig_controls,
    fig_gallery,
    fig_members,
    fig_overview,
    fig_progress,
    fig_retrain,
    fig_vote,
    fig_zoom,
)
from landscape.lessons.opposing.planted import (  # noqa: F401
    PlantedData,
    choose_planted,
    make_data,
    opposing_toy,
    planted_digits,
    planted_gaussians,
)
from landscape.lessons.opposing.result import (  # noqa: F401
    OpposingResult,
    load,
    save,
)
from landscape.lessons.opposing.run import (  # noqa: F401
    OpposingEvent,
    OpposingRun,
    preview,
    train,
)
from landscape.lessons.opposing.stats import (  # noqa: F401
    amplitude,
    control_band,
    find_spikes,
    group_curve,
    matched_subsets,
    movement_scores,
    pair_statistics,
    per_example_losses,
    phase_agreement,
    precision_at,
    rank_by_movement,
    split_by_label,
    step_movers,
    vote_share,
)
