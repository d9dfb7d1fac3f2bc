"""Figures of a Neural Redshift measurement (plotly): the random network's function on
``[-1, 1)^2``, its 2-D spectrum (log10 amplitude, zero frequency in the centre), the
ring-averaged radial spectrum, and the mean frequency against depth from :func:`sweep`.
Frequencies are in cycles per unit input."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from landscape.core.style import styled
from landscape.lessons.redshift.run import RedshiftResult


def _describe(res: RedshiftResult) -> str:
    c = res.meta["config"]
    return f"{c['activation']}, depth {c['depth']}, width {c['width']}, init scale {c['init_scale']:g}"


@styled
def fig_redshift_image(res: RedshiftResult, title: str | None = None) -> go.Figure:
    """The random network's function on [-1, 1)^2 as an image."""
    fig = go.Figure(go.Heatmap(x=res.x, y=res.y, z=res.f, colorscale="RdBu", zmid=float(res.f.mean()),
                               colorbar={"title": {"text": "f(x, y) (output units)", "side": "right"}}))
    fig.update_layout(title=title or f"Random network at init ({_describe(res)})",
                      xaxis_title="input x (dimensionless)", yaxis_title="input y (dimensionless)",
                      yaxis={"scaleanchor": "x"})
    return fig


@styled
def fig_redshift_spectrum(res: RedshiftResult, title: str | None = None) -> go.Figure:
    """log10 amplitude of the 2-D spectrum, zero frequency in the centre."""
    z = np.log10(np.maximum(res.amplitude, 1e-12 * max(res.amplitude.max(), 1e-300)))
    fig = go.Figure(go.Heatmap(x=res.freq_x, y=res.freq_y, z=z, colorscale="Magma",
                               colorbar={"title": {"text": "log10 |FFT| (arbitrary units)", "side": "right"}}))
    fig.update_layout(title=title or f"2-D spectrum (mean frequency {res.mean_frequency:.2f} cycles/unit)",
                      xaxis_title="frequency u (cycles per unit x)",
                      yaxis_title="frequency v (cycles per unit y)", yaxis={"scaleanchor": "x"})
    return fig


@styled
def fig_redshift_radial(res: RedshiftResult, title: str | None = None) -> go.Figure:
    """Ring-averaged amplitude against radial frequency (log y), mean frequency marked."""
    fig = go.Figure(go.Scatter(x=res.radial_freq, y=np.maximum(res.radial_amplitude, 1e-12),
                               mode="lines+markers", name="ring mean"))
    fig.add_vline(x=res.mean_frequency, line={"dash": "dash", "color": "red"},
                  annotation_text=f"mean {res.mean_frequency:.2f}")
    fig.update_yaxes(type="log", dtick=1, exponentformat="power",
                     title_text="mean |FFT| on the ring (arbitrary units)")
    fig.update_layout(title=title or "Radial spectrum", xaxis_title="radial frequency (cycles per unit input)")
    return fig


@styled
def fig_redshift_sweep(sw: dict, scale_index: int = 0, title: str | None = None) -> go.Figure:
    """Mean frequency against depth, one line per activation."""
    fig = go.Figure()
    for a, act in enumerate(sw["activations"]):
        fig.add_trace(go.Scatter(x=sw["depths"], y=sw["mean_frequency"][a, :, scale_index],
                                 mode="lines+markers", name=act))
    fig.update_layout(title=title or f"Mean frequency at init vs depth (init scale "
                      f"{sw['init_scales'][scale_index]:g}, mean of {len(sw['seeds'])} seeds)",
                      xaxis_title="hidden layers", yaxis_title="mean frequency (cycles per unit input)")
    return fig
