"""Pure figure builders: a result in, a plotly ``Figure`` out (no computing here).

Every figure has a title, axis labels and units. Loss is dimensionless (nats for
cross-entropy); coordinates are in units of the direction vectors (for filter-normalized
directions, 1.0 moves every filter by its own norm; for PCA directions, units of
parameter-space distance).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape.core.style import styled
from landscape.surface.result import SurfaceResult

COLORSCALE = "Viridis"


def _square(fig: go.Figure, x, y) -> go.Figure:
    """Draw a near-square domain with equal units on both axes (not stretched to the page)."""
    if x is not None and y is not None and len(x) > 1 and len(y) > 1:
        sx, sy = float(np.ptp(x)), float(np.ptp(y))
        if sx > 0 and sy > 0 and 0.5 <= sx / sy <= 2:
            fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
            fig.update_xaxes(constrain="domain")
    return fig


def _axis_titles(res: SurfaceResult) -> tuple[str, str]:
    m = res.meta
    kind = m.get("directions", m.get("recipe", {}).get("directions", "random"))
    if kind == "pca" and "explained_variance" in m:
        ev = m["explained_variance"]
        return (f"PC1 ({100 * ev[0]:.1f}% of variance), parameter distance",
                f"PC2 ({100 * ev[1]:.1f}% of variance), parameter distance")
    if kind == "interpolate":
        return "t (0 = model A, 1 = model B)", "random filter-normalized direction y"
    if kind == "hessian":
        ev = m.get("hessian_eigenvalues") or [float("nan")] * 2
        return (f"top Hessian eigenvector (λ1 = {ev[0]:.3g}), parameter distance",
                f"2nd eigenvector (λ2 = {ev[1]:.3g}), parameter distance")
    norm = m.get("recipe", {}).get("norm", "filter")
    return f"direction x ({norm}-normalized units)", f"direction y ({norm}-normalized units)"


def _z(res: SurfaceResult, log: bool):
    z = np.asarray(res.loss, float)
    return np.log10(np.maximum(z, 1e-12)) if log else z


def _loss_label(res: SurfaceResult, log: bool) -> str:
    kind = res.meta.get("recipe", {}).get("loss", "cross_entropy")
    base = "cross-entropy loss (nats)" if kind == "cross_entropy" else "squared loss"
    return f"log10 {base}" if log else base


@styled
def recipe_text(res: SurfaceResult) -> str:
    """One line describing how the surface was made (shown with every figure)."""
    m, r = res.meta, res.meta.get("recipe", {})
    grid = "x".join(str(g) for g in r.get("grid", []))
    cos = m.get("cos_dx_dy")
    parts = [f"directions: {m.get('directions', r.get('directions'))}",
             f"norm: {r.get('norm')}", f"ignore: {r.get('ignore')}", f"seed: {r.get('seed')}",
             f"grid: {grid}", f"data: {m.get('n_eval')} of {m.get('n_data')} examples",
             f"BN stats: {r.get('bn')}"]
    if cos is not None:
        parts.append(f"cos(dx, dy) = {cos:+.3f}")
    if "subset_max_rel_error" in m:
        parts.append(f"subset vs full data: <= {100 * m['subset_max_rel_error']:.1f}% "
                     f"(centre and corners)")
    return " | ".join(parts)


@styled
def contour(res: SurfaceResult, log: bool = False, title: str | None = None,
            zrange: tuple[float, float] | None = None, show_trajectory: bool = True) -> go.Figure:
    """2-D contour of the loss with the model at its centre and, if present, the trajectory."""
    xt, yt = _axis_titles(res)
    z = _z(res, log)
    fig = go.Figure(go.Contour(
        x=res.x, y=res.y, z=z, colorscale=COLORSCALE, ncontours=30,
        zmin=None if zrange is None else zrange[0], zmax=None if zrange is None else zrange[1],
        colorbar={"title": {"text": _loss_label(res, log), "side": "right"}},
        hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>loss=%{z:.4g}<extra></extra>"))
    if show_trajectory and res.trajectory is not None:
        c = np.asarray(res.trajectory["coords"])
        steps = res.trajectory.get("steps", list(range(len(c))))
        real = res.trajectory.get("loss")
        off = res.trajectory.get("off_plane")
        text = [f"step {s}" + (f"<br>real loss {real[i]:.4g}" if real is not None else "")
                + (f"<br>off-plane distance {off[i]:.3g}" if off is not None else "")
                for i, s in enumerate(steps)]
        fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], mode="lines+markers", name="trajectory",
                                 line={"color": "white", "width": 2},
                                 marker={"size": 5, "color": "white"}, text=text,
                                 hovertemplate="%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="model",
                             marker={"symbol": "x", "size": 12, "color": "red"}))
    fig.update_layout(title=title or "Loss surface (contour)", xaxis_title=xt, yaxis_title=yt,
                      legend={"orientation": "h", "y": -0.2})
    return _square(fig, res.x, res.y)


@styled
def surface3d(res: SurfaceResult, log: bool = False, title: str | None = None,
              zrange: tuple[float, float] | None = None) -> go.Figure:
    """Rotatable 3-D surface of the loss."""
    xt, yt = _axis_titles(res)
    fig = go.Figure(go.Surface(x=res.x, y=res.y, z=_z(res, log), colorscale=COLORSCALE,
                               cmin=None if zrange is None else zrange[0],
                               cmax=None if zrange is None else zrange[1],
                               colorbar={"title": {"text": _loss_label(res, log)}}))
    fig.update_layout(title=title or "Loss surface (3-D)",
                      scene={"xaxis_title": xt, "yaxis_title": yt,
                             "zaxis_title": _loss_label(res, log)})
    return fig


@styled
def slice1d(res: SurfaceResult, log: bool = False, title: str | None = None) -> go.Figure:
    """A 1-D slice: loss (left axis) and accuracy (right axis) along the direction."""
    xt, _ = _axis_titles(res)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=res.x, y=res.loss, name="loss", mode="lines"), secondary_y=False)
    if np.isfinite(res.acc).any():
        fig.add_trace(go.Scatter(x=res.x, y=100 * np.asarray(res.acc), name="accuracy",
                                 mode="lines", line={"dash": "dot"}), secondary_y=True)
    fig.update_yaxes(title_text=_loss_label(res, False), type="log" if log else "linear",
                     secondary_y=False)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], secondary_y=True, showgrid=False,
                     tickvals=[0, 25, 50, 75, 100])
    fig.update_xaxes(title_text=xt)
    fig.update_layout(title=title or "Loss along one direction")
    return fig


@styled
def training_curves(steps, losses, accuracies=None, title: str = "Training") -> go.Figure:
    """Loss (log axis) and accuracy over optimizer steps."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=steps, y=losses, name="loss", mode="lines"), secondary_y=False)
    if accuracies is not None:
        fig.add_trace(go.Scatter(x=steps, y=100 * np.asarray(accuracies), name="accuracy",
                                 mode="lines", line={"dash": "dot"}), secondary_y=True)
        fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], secondary_y=True,
                         showgrid=False, tickvals=[0, 25, 50, 75, 100])
    fig.update_yaxes(title_text="training loss (batch)", type="log", dtick="D2",
                     secondary_y=False)
    fig.update_xaxes(title_text="optimizer step")
    fig.update_layout(title=title)
    return fig


@styled
def fill_pending(z: np.ndarray) -> np.ndarray:
    """A coarse-to-fine grid with NaN where not yet computed, filled from the nearest
    computed point, so a partial surface draws as a blocky preview."""
    z = np.asarray(z, float)
    ok = np.isfinite(z)
    if ok.all() or not ok.any():
        return z
    from scipy.interpolate import NearestNDInterpolator

    pts = np.argwhere(ok)
    f = NearestNDInterpolator(pts, z[ok])
    out = z.copy()
    out[~ok] = f(np.argwhere(~ok))
    return out


@styled
def trajectory_on_surface(x, y, loss, coords, steps=None, off_plane=None, log: bool = False,
                          title: str = "Trajectory on the loss surface",
                          xtitle: str = "direction x", ytitle: str = "direction y",
                          zrange=None) -> go.Figure:
    """Contour of a (possibly partial) surface with the trajectory ``coords`` [T, 2]."""
    fig = go.Figure()
    if loss is not None and np.isfinite(loss).any():
        z = fill_pending(loss)
        z = np.log10(np.maximum(z, 1e-12)) if log else z
        fig.add_trace(go.Contour(
            x=x, y=y, z=z, colorscale=COLORSCALE, ncontours=25,
            zmin=None if zrange is None else zrange[0], zmax=None if zrange is None else zrange[1],
            colorbar={"title": {"text": "log10 loss" if log else "loss", "side": "right"}},
            hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>loss=%{z:.4g}<extra></extra>"))
    coords = np.asarray(coords)
    if len(coords):
        text = None
        if steps is not None:
            text = [f"step {s}" + ("" if off_plane is None else
                                   f"<br>off-plane distance {off_plane[i]:.3g}")
                    for i, s in enumerate(steps)]
        fig.add_trace(go.Scatter(x=coords[:, 0], y=coords[:, 1], mode="lines+markers",
                                 name="trajectory", line={"color": "white", "width": 2},
                                 marker={"size": 4, "color": "white"}, text=text,
                                 hovertemplate="%{text}<extra></extra>"))
        fig.add_trace(go.Scatter(x=coords[-1:, 0], y=coords[-1:, 1], mode="markers",
                                 name="now", marker={"size": 13, "color": "red",
                                                     "line": {"color": "white", "width": 2}}))
    if x is not None and len(x):
        fig.update_xaxes(range=[float(x[0]), float(x[-1])])
        fig.update_yaxes(range=[float(y[0]), float(y[-1])])
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle,
                      legend={"orientation": "h", "y": -0.22}, margin={"t": 50})
    return _square(fig, x, y)


@styled
def shared_range(*results: SurfaceResult, log: bool = False) -> tuple[float, float]:
    """One colour scale for several surfaces: min and max over all of them."""
    zs = [_z(r, log) for r in results]
    return (float(min(np.nanmin(z) for z in zs)), float(max(np.nanmax(z) for z in zs)))
