"""Figure builders for Hessian results (pure: results in, plotly Figures out).

Eigenvalues are in loss units per squared parameter unit; densities in eigenvalues per
unit eigenvalue (normalised to integrate to 1).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from landscape.core.style import styled
from landscape.hessian.report import SpectrumReport, TrainingSpectra

EIG_UNIT = "eigenvalue (loss / parameter²)"


@styled
def density(rep: SpectrumReport, title: str | None = None) -> go.Figure:
    """SLQ density on a log y-axis; outlier eigenvalues marked and counted."""
    d = rep.density
    fig = go.Figure(go.Scatter(x=d.grid, y=np.maximum(d.density, 1e-12), mode="lines",
                               name="density (SLQ)", fill="tozeroy"))
    n_out = 0
    if rep.split is not None and rep.split.n_outliers:
        n_out = rep.split.n_outliers
        for i, lam in enumerate(rep.eig.eigenvalues[:n_out]):
            label = {"annotation_text": f"λ{i + 1}"} if i < 3 else {}  # the top three named
            fig.add_vline(x=float(lam), line={"color": "crimson", "dash": "dash"}, **label)
    count = f"{n_out} outlier{'s' if n_out != 1 else ''}" if rep.split is not None else \
        "outliers not computed"
    fig.update_layout(title=title or f"Eigenvalue density: bulk and {count} "
                                     f"(σ = {d.sigma:.2g})",
                      xaxis_title=EIG_UNIT, yaxis_title="density (per unit eigenvalue)",
                      yaxis_type="log")
    peak = float(np.max(d.density)) if np.size(d.density) else 0.0
    if peak > 0:  # six decades under the peak: the smoothing's far tails are not information
        fig.update_yaxes(range=[np.log10(peak) - 6, np.log10(peak) + 0.3])
    return fig


def _outlier_count(rep: SpectrumReport) -> str:
    if rep.split is None:
        return ""
    n = rep.split.n_outliers
    return "no outliers" if n == 0 else f"{n} outlier{'s' if n != 1 else ''} (red)"


@styled
def top_eigenvalues(rep: SpectrumReport, title: str | None = None) -> go.Figure:
    """Top eigenvalues as bars (outliers in red; the gap to the bulk's edge marked), residuals
    ||Hu - λu|| in the hover."""
    vals = rep.eig.eigenvalues
    n_out = rep.split.n_outliers if rep.split is not None else 0
    colors = ["crimson" if i < n_out else "steelblue" for i in range(len(vals))]
    res = rep.eig.residuals
    text = [f"residual {r:.1e}" if np.isfinite(r) else "residual not reported" for r in res]
    fig = go.Figure(go.Bar(x=[f"λ{i + 1}" for i in range(len(vals))], y=vals,
                           marker_color=colors, customdata=text,
                           hovertemplate="%{x} = %{y:.5g}<br>%{customdata}<extra></extra>"))
    if 0 < n_out < len(vals):
        ratio = vals[n_out - 1] / vals[n_out] if vals[n_out] > 0 else float("nan")
        fig.add_hline(y=float(vals[n_out]), line={"color": "gray", "dash": "dot"},
                      annotation_text=f"top of the bulk; λ{n_out} is {ratio:.2g}x higher",
                      annotation_position="top right")
    what = "" if rep.split is None else f": {_outlier_count(rep)}"
    fig.update_layout(title=title or f"Top {len(vals)} eigenvalues{what}",
                      xaxis_title="eigenvalue index", yaxis_title=EIG_UNIT, showlegend=False,
                      xaxis={"dtick": 2, "tickangle": 0})  # every other index, upright
    return fig


@styled
def overlaps(rep: SpectrumReport, title: str | None = None) -> go.Figure:
    """rho_i = ||Q^T u_i||^2, each eigenvector's overlap with the class-mean gradients."""
    rho = rep.split.rho
    fig = go.Figure(go.Bar(x=[f"u{i + 1}" for i in range(len(rho))], y=rho,
                           marker_color=["crimson" if i < rep.split.n_outliers else "steelblue"
                                         for i in range(len(rho))]))
    fig.add_hline(y=0.5, line={"dash": "dash"}, annotation_text="outliers: ρ ≥ 0.5")
    fig.add_hline(y=0.1, line={"dash": "dot"}, annotation_text="bulk: ρ < 0.1")
    fig.update_layout(title=title or "Overlap ρ with the class-mean gradients",
                      xaxis_title="eigenvector", yaxis_title="ρ (fraction of the eigenvector)",
                      yaxis_range=[0, 1.05], showlegend=False,
                      xaxis={"dtick": 2, "tickangle": 0})
    return fig


@styled
def trace(rep: SpectrumReport, title: str | None = None) -> go.Figure:
    """The trace estimate with ±2 standard errors."""
    t = rep.trace
    fig = go.Figure(go.Bar(x=[t.method], y=[t.trace],
                           error_y={"type": "data", "array": [2 * t.stderr], "visible": True}))
    fig.update_layout(title=title or f"Trace = {t.trace:.4g} ± {2 * t.stderr:.2g} "
                                     f"(2 s.e., {t.hvps} HVPs)",
                      xaxis_title="estimator", yaxis_title="trace (loss / parameter²)")
    return fig


@styled
def per_layer(rep: SpectrumReport, title: str | None = None) -> go.Figure:
    """Top eigenvalue and trace of each parameter tensor's diagonal Hessian block."""
    lay = rep.layers
    fig = go.Figure([
        go.Bar(x=lay.names, y=lay.top_eigenvalue, name="top eigenvalue"),
        go.Bar(x=lay.names, y=lay.trace, name="trace",
               error_y={"type": "data", "array": 2 * lay.trace_stderr, "visible": True}),
    ])
    fig.update_layout(title=title or "Per-layer curvature (diagonal blocks of H)",
                      barmode="group", xaxis_title="parameter tensor", yaxis_title=EIG_UNIT,
                      yaxis_type="log")
    return fig


@styled
def over_training(ts: TrainingSpectra, title: str | None = None) -> go.Figure:
    """Densities at a few snapshots (initialisation, middle, end), log y-axis."""
    fig = go.Figure()
    for step, d, top in zip(ts.steps, ts.densities, ts.top):
        if d is None:
            continue
        fig.add_trace(go.Scatter(x=d.grid, y=np.maximum(d.density, 1e-12), mode="lines",
                                 name=f"step {step} (λ1 = {top[0]:.3g})"))
    fig.update_layout(title=title or "How the spectrum changed during training",
                      xaxis_title=EIG_UNIT, yaxis_title="density (per unit eigenvalue)",
                      yaxis_type="log")
    return fig


@styled
def decomposition(dec, title: str | None = None) -> go.Figure:
    """Densities of H, G and R = H - G on one eigenvalue axis (log y), top eigenvalues of H
    and G marked."""
    fig = go.Figure()
    for name, d, color in (("H (Hessian)", dec.density_h, "black"),
                           ("G (Gauss-Newton)", dec.density_g, "steelblue"),
                           ("R = H − G (residual)", dec.density_r, "darkorange")):
        fig.add_trace(go.Scatter(x=dec.grid, y=np.maximum(d, 1e-12), mode="lines", name=name,
                                 line={"color": color}))
    for lam in dec.top_g:
        fig.add_vline(x=float(lam), line={"color": "steelblue", "dash": "dot", "width": 1})
    fig.update_layout(title=title or f"Why C outliers? Densities of H, G and R (σ = "
                                     f"{dec.sigma:.2g}); top-{dec.overlap_k} overlap of H and "
                                     f"G {dec.overlap:.3f}",
                      xaxis_title=EIG_UNIT, yaxis_title="density (per unit eigenvalue)",
                      yaxis_type="log", legend={"orientation": "h", "y": -0.25}, height=400)
    return fig


@styled
def papyan_parts(dec, title: str | None = None) -> go.Figure:
    """Papyan's split of G: each part's measured rank against its bound, trace in the hover."""
    parts = [p for p in ("class_means", "cross_class", "within_class") if p in dec.papyan]
    names = [p.replace("_", " ") for p in parts]
    ranks = [dec.papyan[p]["rank"] for p in parts]
    bounds = [dec.papyan[p]["rank_bound"] for p in parts]
    traces = [dec.papyan[p]["trace"] for p in parts]
    tops = [dec.papyan[p]["top_eigenvalue"] for p in parts]
    text = [f"trace {t:.3g}, top eigenvalue {e:.3g}" for t, e in zip(traces, tops)]
    fig = go.Figure([
        go.Bar(x=names, y=ranks, name="measured rank", text=ranks, textposition="outside",
               hovertext=text),
        go.Bar(x=names, y=bounds, name="rank bound", marker_color="lightgray"),
    ])
    fig.update_layout(title=title or f"Papyan's split of G on {dec.papyan.get('n_examples')} "
                                     "examples: class means, cross-class, within-class",
                      barmode="group", xaxis_title="part of G", yaxis_title="rank (dimensions)",
                      yaxis_type="log", height=340)
    return fig


@styled
def flatness_slice(fl, title: str | None = None) -> go.Figure:
    """The loss along the top eigenvector with the basin level L + delta and its edges."""
    fig = go.Figure(go.Scatter(x=fl.ts, y=fl.losses, mode="lines", name="loss along u1"))
    fig.add_hline(y=fl.loss + fl.delta, line={"dash": "dash"},
                  annotation_text=f"loss + {fl.delta}")
    for t in (-fl.basin_left, fl.basin_right):
        if np.isfinite(t):
            fig.add_vline(x=float(t), line={"color": "crimson", "dash": "dot"})
    fig.update_layout(title=title or f"Basin along the top eigenvector: width "
                                     f"{fl.basin_width:.3g} (quadratic {fl.basin_quadratic:.3g})",
                      xaxis_title="distance along u1 (parameter units)", yaxis_title="loss")
    return fig
