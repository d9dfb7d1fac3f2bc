"""Figures of a spectral-bias result (plotly): the frequency x step heatmap of the normalized
amplitude, the relative error per frequency, the learned function over the target, the loss,
and the ReLU activation regions along ``x``. Frequencies are in cycles per unit ``x``; steps
are Adam updates done."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from landscape.core.style import styled
from landscape.lessons.spectral_bias.result import SpectralResult

FREQ_LABEL = "frequency k (cycles per unit x)"
STEP_LABEL = "optimizer step (Adam updates)"


def log_ticks(values) -> dict:
    """Tick settings for a log axis over ``values``: one label per power of ten when they
    span two decades or more (the minor 2 and 5 labels of a log axis collide), else the
    1-2-5 steps inside their range (finer when that gives fewer than three), so that a narrow
    axis still has a few labels."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return {"dtick": 1}
    lo, hi = float(v.min()), float(v.max())
    if np.log10(hi / lo) >= 2:
        return {"dtick": 1}
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for steps in ((1, 2, 5), (1, 2, 3, 5, 7), range(1, 10)):  # a narrower range, finer steps
        ticks = [m * 10.0 ** e for e in decades for m in steps if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            break
    return {"tickmode": "array", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


@styled
def fig_heatmap(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Frequency x step heatmap of the normalized amplitude, clipped to [0, 1], with the
    half-amplitude step of each frequency marked."""
    z = np.clip(res.amplitude.T, 0.0, 1.0)
    fig = go.Figure(go.Heatmap(
        x=res.steps, y=res.frequencies, z=z, zmin=0.0, zmax=1.0, colorscale="Viridis",
        colorbar={"title": {"text": "2|F[k]| / (N A_k)", "side": "right"}},
        hovertemplate="step %{x}<br>k = %{y}<br>normalized amplitude %{z:.3f}<extra></extra>"))
    half = res.half_step
    ok = np.isfinite(half)
    if ok.any():
        fig.add_trace(go.Scatter(x=half[ok], y=res.frequencies[ok], mode="markers",
                                 name="half amplitude reached",
                                 marker={"symbol": "diamond", "color": "white", "size": 8,
                                         "line": {"color": "black", "width": 1}}))
    rho = res.spearman
    fig.update_layout(
        title=title or ("Learned share of each frequency's amplitude"
                        + (f"; Spearman(half step, k) = {rho:.2f}" if rho is not None else "")),
        xaxis_title=STEP_LABEL, yaxis_title=FREQ_LABEL, legend={"orientation": "h", "y": -0.2})
    return fig


@styled
def fig_error_curves(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Relative error ``|F_target[k] - F_net[k]| / |F_target[k]|`` per frequency, log axis."""
    fig = go.Figure()
    K = len(res.frequencies)
    for j, k in enumerate(res.frequencies):
        color = _ramp(j, K)
        fig.add_trace(go.Scatter(x=res.steps, y=np.maximum(res.rel_error[:, j], 1e-6), mode="lines",
                                 name=f"k = {int(k)}", line={"color": color}))
    # one labelled tick per power of ten: the minor 2, 5 labels of a log axis collide
    fig.update_yaxes(type="log", exponentformat="power", title_text="relative error",
                     **log_ticks(np.maximum(res.rel_error, 1e-6)))
    fig.update_layout(title=title or "Relative error per frequency, |F_target[k] − F_net[k]| / "
                                     "|F_target[k]|", xaxis_title=STEP_LABEL)
    return fig


@styled
def fig_function(res: SpectralResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """The learned function over the target at the recorded step nearest ``step``."""
    i = res.index_of(res.steps[-1] if step is None else step)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=res.x, y=res.y, mode="lines", name="target",
                             line={"color": "black", "width": 1}))
    fig.add_trace(go.Scatter(x=res.x, y=res.outputs[i], mode="lines", name="network",
                             line={"color": "#d62728", "width": 2}))
    fig.update_layout(title=title or f"Learned function at step {int(res.steps[i])}",
                      xaxis_title="x (input coordinate, dimensionless)",
                      yaxis_title="f(x) (target units)", legend={"orientation": "h", "y": -0.2})
    return fig


@styled
def fig_loss(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Full-batch training loss per step on a log axis."""
    fig = go.Figure(go.Scatter(x=res.loss_steps, y=np.maximum(res.loss, 1e-12), mode="lines",
                               name="loss"))
    fig.update_yaxes(type="log", exponentformat="power", title_text="loss, 0.5 x mean squared error",
                     **log_ticks(np.maximum(res.loss, 1e-12)))
    fig.update_layout(title=title or "Training loss", xaxis_title=STEP_LABEL)
    return fig


@styled
def fig_regions(res: SpectralResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """ReLU activation regions: pattern id of each input along x at a step (left) and the
    number of distinct regions over training (right)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45])
    if len(res.n_regions) == 0:
        fig.update_layout(title=title or "Activation regions (ReLU networks only; none recorded)")
        fig.update_xaxes(title_text="x (input coordinate)", row=1, col=1)
        fig.update_xaxes(title_text=STEP_LABEL, row=1, col=2)
        fig.update_yaxes(title_text="activation-pattern id", row=1, col=1)
        fig.update_yaxes(title_text="distinct regions on the grid", row=1, col=2)
        return fig
    i = res.index_of(res.steps[-1] if step is None else step)
    ids = res.region_ids[i]
    fig.add_trace(go.Scatter(x=res.region_x, y=ids, mode="markers", name="pattern id",
                             marker={"size": 3, "color": ids % 10, "colorscale": "Turbo"}),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=res.steps, y=res.n_regions, mode="lines", name="regions"),
                  row=1, col=2)
    fig.add_vline(x=int(res.steps[i]), line={"dash": "dot", "color": "grey"}, row=1, col=2)
    fig.update_xaxes(title_text="x (input coordinate, dimensionless)", row=1, col=1)
    fig.update_yaxes(title_text="activation-pattern id (order of first appearance)", row=1, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=1, col=2)
    fig.update_yaxes(title_text=f"distinct regions on {len(res.region_x)} points", row=1, col=2)
    fig.update_layout(title=title or f"ReLU activation regions along x (step {int(res.steps[i])}: "
                      f"{int(res.n_regions[i])} regions)", showlegend=False)
    return fig


def _ramp(j: int, n: int) -> str:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Plasma", [0.9 * j / max(1, n - 1)])[0]

