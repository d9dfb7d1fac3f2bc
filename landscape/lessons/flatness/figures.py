"""Figures of a flatness comparison: a :class:`FlatnessResult` in, a Plotly figure out.

Loss is the full-data cross-entropy in nats; slice and surface coordinates are in units of
filter-normalized directions (1.0 moves every filter by its own norm; Li et al. 2018), the
interpolation coordinate ``t`` is dimensionless (0 = first model, 1 = second); the top
Hessian eigenvalue is in nats per squared unit of parameter distance.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.lessons.flatness.result import FlatnessResult

COLORS = {"small-batch SGD": "#1f77b4", "large-batch SGD": "#d62728", "small-batch SAM": "#2ca02c",
          "large-batch SAM": "#9467bd"}
LOSS_LABEL = "full-data loss (cross-entropy, nats)"
EIG_LABEL = "top Hessian eigenvalue λmax (nats per squared parameter unit)"
DIR_LABEL = "filter-normalized random direction (units of each filter's norm)"


def _color(name: str) -> str:
    return COLORS.get(str(name), "#555555")


def _label(res: FlatnessResult, i: int) -> str:
    name = str(res.names[i])
    lam = f", λmax {res.top_eig[i]:.3g}" if i < len(res.top_eig) else ""
    return f"{name} (batch {int(res.batch[i])}{lam})"


def fig_eigenvalues(res: FlatnessResult) -> go.Figure:
    """The top Hessian eigenvalue of every minimum, one bar per run."""
    names = [str(n) for n in res.names[:len(res.top_eig)]]
    fig = go.Figure(go.Bar(x=names, y=res.top_eig, marker_color=[_color(n) for n in names],
                           text=[f"{v:.3g}" for v in res.top_eig], textposition="outside"))
    fig.update_layout(title="Sharpness: the top Hessian eigenvalue at each minimum",
                      xaxis_title="run (batch size and optimizer)", yaxis_title=EIG_LABEL,
                      yaxis_rangemode="tozero", showlegend=False)
    return fig


def fig_interpolation(res: FlatnessResult, log: bool = True) -> go.Figure:
    """The loss on the line ``(1 - t) A + t B`` between two minima (Keskar et al. 2017, Fig. 3)."""
    fig = go.Figure()
    dash = ["solid", "dash", "dot"]
    for k, (name, ys) in enumerate(zip(res.interp_names, res.interp)):
        fig.add_trace(go.Scatter(x=res.interp_t, y=ys, mode="lines", name=str(name),
                                 line={"width": 3, "dash": dash[k % 3]}))
    for t in (0, 1):
        fig.add_vline(x=t, line={"color": "grey", "width": 1, "dash": "dot"})
    fig.update_layout(title="1-D linear interpolation between minima",
                      xaxis_title="t (0 = first model: small batch / SGD; 1 = second: large batch / SAM)",
                      yaxis_title=LOSS_LABEL, legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(type="log" if log else "linear")
    return fig


def fig_slices(res: FlatnessResult, log: bool = True) -> go.Figure:
    """The loss along one filter-normalized random direction through each minimum."""
    fig = go.Figure()
    for i, ys in enumerate(res.slices):
        fig.add_trace(go.Scatter(x=res.slice_x, y=ys, mode="lines", name=_label(res, i),
                                 line={"color": _color(res.names[i]), "width": 3}))
    fig.update_layout(title="1-D slices through each minimum (same random direction, Li et al. 2018)",
                      xaxis_title=DIR_LABEL, yaxis_title=LOSS_LABEL, legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(type="log" if log else "linear")
    return fig


def surface_range(res: FlatnessResult, log: bool = True) -> tuple[float, float]:
    """One colour scale for all surfaces: min and max of (log10) loss over all of them."""
    z = np.log10(np.maximum(res.surfaces, 1e-12)) if log else res.surfaces
    return float(np.nanmin(z)), float(np.nanmax(z))


def fig_surfaces(res: FlatnessResult, log: bool = True, cols: int = 2) -> go.Figure:
    """The 2-D surfaces side by side on one colour scale, λmax in each title."""
    M = len(res.surfaces)
    cols = max(1, min(cols, M))
    rows = int(np.ceil(M / cols)) if M else 1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_label(res, i) for i in range(M)],
                        horizontal_spacing=0.08, vertical_spacing=0.14)
    if not M:
        return fig.update_layout(title="2-D surfaces (not computed)")
    lo, hi = surface_range(res, log)
    for i, z in enumerate(res.surfaces):
        zz = np.log10(np.maximum(z, 1e-12)) if log else z
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Contour(x=res.surf_x, y=res.surf_x, z=zz, zmin=lo, zmax=hi, colorscale="Viridis",
                                 ncontours=25, showscale=i == 0, name=str(res.names[i]),
                                 colorbar={"title": {"text": ("log10 " if log else "") + LOSS_LABEL,
                                                     "side": "right"}},
                                 hovertemplate="x=%{x:.2f}<br>y=%{y:.2f}<br>z=%{z:.3f}<extra></extra>"), r, c)
        fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", showlegend=False,
                                 marker={"symbol": "x", "size": 10, "color": "red"}), r, c)
        fig.update_xaxes(title_text="direction x (filter-normalized)", row=r, col=c)
        if c == 1:  # one y title per row: the next column's would overlap this one's plot
            fig.update_yaxes(title_text="direction y (filter-normalized)", row=r, col=c)
    fig.update_layout(title="2-D loss surfaces around each minimum, one colour scale",
                      height=380 * rows + 80, showlegend=False)
    return fig


def fig_training(res: FlatnessResult, smooth: int = 25) -> go.Figure:
    """Batch loss over training (running mean over ``smooth`` updates), one line per run."""
    fig = go.Figure()
    for i, h in enumerate(res.train_loss):
        h = np.asarray(h, float)
        h = h[np.isfinite(h)]
        if not len(h):
            continue
        k = max(1, min(int(smooth), len(h)))
        m = np.convolve(h, np.ones(k) / k, mode="valid")
        fig.add_trace(go.Scatter(x=np.arange(k, len(h) + 1), y=m, mode="lines", name=str(res.names[i]),
                                 line={"color": _color(res.names[i]), "width": 2}))
    fig.update_layout(title=f"Training: batch loss (running mean over {smooth} updates)",
                      xaxis_title="optimizer step", yaxis_title="batch loss (cross-entropy, nats)",
                      legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(type="log")
    return fig
