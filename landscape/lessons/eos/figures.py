"""Figures of the edge-of-stability lesson (plotly): loss and sharpness against the threshold,
curvature along the gradient and the update, the loss along ``u_1``, the 1-D quadratic.

Axes carry units: steps are full-batch updates, eigenvalues and curvatures loss per squared
parameter unit, distances along ``u_1`` parameter units.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from landscape.core.style import styled
from landscape.lessons.eos.quadratic import QuadraticResult
from landscape.lessons.eos.result import EosResult
from landscape.lessons.eos.slice import SliceResult

STEP_LABEL = "step (full-batch updates)"
CURV_UNITS = "loss / parameter unit^2"


def _sharp_name(res: EosResult) -> str:
    return "preconditioned sharpness lambda_1(P^-1 H)" if res.optimizer == "adam" else \
        "sharpness lambda_1(H)"


@styled
def fig_loss_sharpness(res: EosResult, title: str | None = None) -> go.Figure:
    """Loss (top, log axis) and sharpness with the threshold line (bottom) on one step axis."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.45, 0.55])
    fig.add_trace(go.Scatter(x=res.loss_steps, y=np.maximum(res.loss, 1e-300), mode="lines",
                             name="training loss", line={"color": "#1f77b4"}), row=1, col=1)
    thr = res.threshold
    adam = res.optimizer == "adam"
    if len(res.eig_steps):
        if adam:
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.precond[:, 0], mode="lines+markers",
                                     name="lambda_1(P^-1 H)", line={"color": "#d62728"},
                                     marker={"size": 4}), row=2, col=1)
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 0], mode="lines",
                                     name="lambda_1(H) (raw, no threshold)",
                                     line={"color": "#7f7f7f", "dash": "dot"}), row=2, col=1)
        else:
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 0], mode="lines+markers",
                                     name="lambda_1(H)", line={"color": "#d62728"},
                                     marker={"size": 4}), row=2, col=1)
            if res.eigenvalues.shape[1] > 1:
                fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 1], mode="lines",
                                         name="lambda_2(H)", line={"color": "#ff9896", "dash": "dash"}),
                              row=2, col=1)
    formula = res.meta.get("threshold_formula", "")
    fig.add_hline(y=thr, line={"color": "black", "dash": "dash"}, row=2, col=1,
                  annotation_text=f"threshold {formula} = {thr:.3g}", annotation_position="top left")
    c = res.crossing_step
    if c is not None:
        fig.add_vline(x=c, line={"color": "grey", "dash": "dot"})
    label = res.meta.get("hessian_label", "Hessian")
    warn = "" if res.meta.get("twice_differentiable", True) else " (a.e. Hessian: not twice differentiable)"
    cfg = res.meta["config"]
    fig.update_yaxes(type="log", dtick=1, exponentformat="power",
                     title_text="loss, 0.5 ||f - y||^2 mean (output units^2)"
                     if cfg["loss"] == "mse" else "loss, cross-entropy mean (nats)", row=1, col=1)
    fig.update_yaxes(title_text=f"eigenvalue ({CURV_UNITS})", row=2, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=2, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=1, col=1)
    head = (f"{cfg['optimizer']} eta = {cfg['lr']:g}: loss and {_sharp_name(res)} vs threshold "
            f"{thr:.3g}" + (f"; crosses 0.95x at step {c}" if c is not None else ""))
    fig.update_layout(title=title or (head + warn), legend={"orientation": "h", "y": -0.15},
                      meta={"hessian_label": label})
    return fig


@styled
def fig_curvature(res: EosResult, title: str | None = None) -> go.Figure:
    """Curvature along the gradient and along the update, with the sharpness and threshold."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=res.eig_steps, y=res.hessian_sharpness, mode="lines",
                             name="lambda_1(H)", line={"color": "#d62728"}))
    fig.add_trace(go.Scatter(x=res.eig_steps, y=res.grad_curvature, mode="lines+markers",
                             name="g^T H g / ||g||^2", line={"color": "#2ca02c"}, marker={"size": 4}))
    if res.optimizer != "gd":
        fig.add_trace(go.Scatter(x=res.eig_steps, y=res.update_curvature, mode="lines",
                                 name="d^T H d / ||d||^2 (update)", line={"color": "#9467bd"}))
    if res.optimizer != "adam":
        fig.add_hline(y=res.threshold, line={"color": "black", "dash": "dash"},
                      annotation_text=f"threshold {res.threshold:.3g}")
    fig.update_layout(title=title or "Curvature along the gradient (and the update) vs the sharpness",
                      xaxis_title=STEP_LABEL, yaxis_title=f"curvature ({CURV_UNITS})",
                      legend={"orientation": "h", "y": -0.2})
    return fig


@styled
def fig_slice(sl: SliceResult, title: str | None = None) -> go.Figure:
    """Loss along the top eigenvector at each chosen step, the current point (t = 0) and where
    the update moved along u_1."""
    fig = go.Figure()
    n = len(sl.steps)
    from plotly.colors import sample_colorscale

    for j, s in enumerate(sl.steps):
        color = sample_colorscale("Viridis", [0.85 * j / max(1, n - 1)])[0]
        fig.add_trace(go.Scatter(x=sl.t, y=sl.loss[j], mode="lines", line={"color": color},
                                 name=f"step {int(s)} (lambda_1 = {sl.sharpness[j]:.3g})"))
        mid = len(sl.t) // 2
        fig.add_trace(go.Scatter(x=[0.0], y=[sl.loss[j][mid]], mode="markers", showlegend=False,
                                 marker={"color": color, "size": 9, "symbol": "circle"},
                                 hovertext=f"theta at step {int(s)}"))
        if sl.next_t[j] != 0 and abs(sl.next_t[j]) <= sl.t[-1]:
            yn = float(np.interp(sl.next_t[j], sl.t, sl.loss[j]))
            fig.add_trace(go.Scatter(x=[sl.next_t[j]], y=[yn], mode="markers", showlegend=False,
                                     marker={"color": color, "size": 9, "symbol": "x"},
                                     hovertext="where the update moved along u_1"))
    fig.update_layout(title=title or "Loss along the top Hessian eigenvector u_1 "
                      "(circle: the iterate; x: its next step along u_1)",
                      xaxis_title="t, distance along u_1 (parameter units)",
                      yaxis_title="loss L(theta_s + t u_1) (loss units)",
                      legend={"orientation": "h", "y": -0.2})
    return fig


@styled
def fig_quadratic(q: QuadraticResult, title: str | None = None) -> go.Figure:
    """The 1-D lesson: iterates over time (left) and on the parabola (right)."""
    from plotly.subplots import make_subplots

    x = q.x if q.x.ndim == 1 else q.x[:, int(np.argmax(q.lam))]
    lam = float(q.lam.max())
    shown = np.isfinite(x) & (np.abs(x) < 1e6)
    x = np.where(shown, x, np.nan)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45],
                        subplot_titles=("iterate x_t over steps", "f(x) = lambda x^2 / 2 with the iterates"))
    fig.add_trace(go.Scatter(x=q.t, y=x, mode="lines+markers", name="x_t", marker={"size": 5}),
                  row=1, col=1)
    span = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 1.0
    span = max(span, 1e-6) * 1.1
    xs = np.linspace(-span, span, 201)
    fig.add_trace(go.Scatter(x=xs, y=0.5 * lam * xs ** 2, mode="lines", name="f(x)",
                             line={"color": "#7f7f7f"}), row=1, col=2)
    fig.add_trace(go.Scatter(x=x, y=0.5 * lam * x ** 2, mode="lines+markers", name="iterates",
                             line={"color": "#d62728", "width": 1}, marker={"size": 6}),
                  row=1, col=2)
    fig.update_xaxes(title_text="step t (updates)", row=1, col=1)
    fig.update_yaxes(title_text="x_t (parameter units)", row=1, col=1)
    fig.update_xaxes(title_text="x (parameter units)", row=1, col=2)
    fig.update_yaxes(title_text="f(x) (loss units)", row=1, col=2)
    fig.update_layout(title=title or (f"{q.optimizer} on f(x) = lambda x^2/2, lambda = {lam:g}, "
                                      f"eta = {q.lr:g} (eta lambda = {q.lr * lam:.3g}; threshold "
                                      f"{q.threshold:.3g}): {q.regime}"),
                      showlegend=False, height=370)
    return fig
