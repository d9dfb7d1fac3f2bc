"""Figures of an opposing-signals result (plotly): the overview (overall loss with spikes,
sharpness against ``2 / lr``, the two groups' mean loss inside the band of matched random
subsets), a step-by-step zoom, galleries of the top-moving examples and of the groups'
members (8x8 images for digits, feature bars otherwise), the pair against its matched
controls, the planted examples' logit margin and the plant's part of it, and the loss
without the detected set. Loss in ``0.5 ||f(x) - onehot(y)||^2`` units, steps in
full-batch updates; ``*`` marks planted examples.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from landscape.core.style import styled
from landscape.lessons.opposing.result import OpposingResult

STEP_LABEL = "step (full-batch gradient-descent updates)"
LOSS_LABEL = "loss, 0.5 ||f(x) - onehot(y)||^2"
COLORS = {"a": "#1f77b4", "b": "#d62728", "all": "#444444", "sharp": "#2ca02c"}


def _cursor(res: OpposingResult, step: int | None) -> int:
    T = res.steps_done
    return T if step is None else int(min(max(int(step), 0), T))


def _band(fig, steps, band, color, name, row=None, col=None):
    if band.shape[1] == 0:
        return
    kw = {"row": row, "col": col} if row else {}
    fig.add_trace(go.Scatter(x=steps, y=band[1], mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip", name=name), **kw)
    fig.add_trace(go.Scatter(x=steps, y=band[0], mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=color, name=name, hoverinfo="skip"), **kw)


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


@styled
def fig_overview(res: OpposingResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """One step axis, three panels: overall loss with spikes marked; sharpness with ``2/lr``;
    the two groups' mean loss with the 5-95% band of matched random subsets. A dotted line
    marks the cursor ``step``."""
    from plotly.subplots import make_subplots

    t = _cursor(res, step)
    steps = np.arange(len(res.loss))
    m = res.metrics
    la, lb = m.get("label_a"), m.get("label_b")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.36, 0.26, 0.38],
                        subplot_titles=("Overall training loss (spikes marked)",
                                        "Sharpness (top eigenvalue) and 2/lr",
                                        "Mean loss of the two opposing groups"))
    fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss, 1e-12), mode="lines", name="all examples",
                             line={"color": COLORS["all"]}), row=1, col=1)
    if len(res.spikes):
        fig.add_trace(go.Scatter(x=res.spikes, y=res.loss[res.spikes], mode="markers", name="spike",
                                 marker={"symbol": "triangle-down", "size": 9, "color": "orange"}),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=res.sharpness_steps, y=res.sharpness, mode="lines+markers",
                             name="sharpness", marker={"size": 4}, line={"color": COLORS["sharp"]}),
                  row=2, col=1)
    thr = 2.0 / res.lr
    fig.add_trace(go.Scatter(x=[0, max(1, res.steps_done)], y=[thr, thr], mode="lines", name="2 / lr",
                             line={"dash": "dash", "color": "black"}), row=2, col=1)
    if len(res.loss_a):
        _band(fig, steps, res.band_a, "rgba(31,119,180,0.18)",
              f"matched random {la}s, 5-95%", row=3, col=1)
        _band(fig, steps, res.band_b, "rgba(214,39,40,0.18)",
              f"matched random {lb}s, 5-95%", row=3, col=1)
        fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss_a, 1e-12), mode="lines",
                                 name=f"group A: {len(res.group_a)} detected {la}s",
                                 line={"color": COLORS["a"], "width": 1}), row=3, col=1)
        fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss_b, 1e-12), mode="lines",
                                 name=f"group B: {len(res.group_b)} detected {lb}s",
                                 line={"color": COLORS["b"], "width": 1}), row=3, col=1)
    W = m.get("window")
    for r in (1, 2, 3):
        fig.add_vline(x=t, line={"dash": "dot", "color": "grey"}, row=r, col=1)
        if W:
            fig.add_vrect(x0=res.steps_done - W, x1=res.steps_done, fillcolor="rgba(0,0,0,0.04)",
                          line_width=0, row=r, col=1)
    # short axis titles (each panel is a third of the height); the loss is defined in the
    # legend's first entry and on the page
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue", row=2, col=1)
    fig.update_yaxes(type="log", title_text="group loss", row=3, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=3, col=1)
    fig.update_layout(title=title or f"Loss, sharpness and groups: cursor at step {t}; "
                      f"shaded, the last {W} steps (the statistics)", height=515,
                      legend={"x": 1.02, "y": 1, "xanchor": "left", "yanchor": "top"})
    fig.data[0].name = "all examples, 0.5 ||f(x) - onehot(y)||^2"
    return fig


@styled
def fig_zoom(res: OpposingResult, step: int | None = None, half: int = 15, title: str | None = None) -> go.Figure:
    """The two groups' mean loss and the overall loss, step by step around the cursor."""
    t = _cursor(res, step)
    lo, hi = max(0, t - half), min(res.steps_done, t + half)
    s = np.arange(lo, hi + 1)
    fig = go.Figure()
    m = res.metrics
    if len(res.loss_a):
        fig.add_trace(go.Scatter(x=s, y=res.loss_a[s], mode="lines+markers",
                                 name=f"group A ({m.get('label_a')}s)", line={"color": COLORS["a"]}))
        fig.add_trace(go.Scatter(x=s, y=res.loss_b[s], mode="lines+markers",
                                 name=f"group B ({m.get('label_b')}s)", line={"color": COLORS["b"]}))
    fig.add_trace(go.Scatter(x=s, y=res.loss[s], mode="lines+markers", name="all examples",
                             line={"color": COLORS["all"], "dash": "dot"}))
    fig.add_vline(x=t, line={"dash": "dot", "color": "grey"})
    fig.update_layout(title=title or f"Group losses step by step around step {t}", xaxis_title=STEP_LABEL,
                      yaxis_title=f"mean {LOSS_LABEL}", legend={"orientation": "h", "y": -0.25})
    return fig


def _tag(res: OpposingResult, i: int, delta: float | None = None) -> str:
    star = "*" if i in set(res.planted.tolist()) else ""
    d = "" if delta is None else f"<br>{delta:+.3g}"
    return f"y={int(res.y[i])}{star} #{i}{d}"


def _examples_figure(res: OpposingResult, rows: list[tuple[str, np.ndarray, np.ndarray | None]],
                     title: str, cols: int) -> go.Figure:
    """A grid of examples: 8x8 images for digits, feature bars otherwise."""
    from plotly.subplots import make_subplots

    nrows = max(1, len(rows))
    titles = []
    for _, idx, delta in rows:
        for j in range(cols):
            if j < len(idx):
                titles.append(_tag(res, int(idx[j]), None if delta is None else float(delta[j])))
            else:
                titles.append("")
    images = res.images.size > 0
    row_h = (int(1000 / cols) + 70) if images else 210  # square 8x8 images at about 1,000 px wide
    height = row_h * nrows + 90
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=min(0.5, 75 / height) if nrows > 1 else 0.1)
    hot = set(res.meta.get("feature_index", []))
    for r, (_, idx, _) in enumerate(rows, start=1):
        for j, i in enumerate(idx[:cols], start=1):
            if images:
                fig.add_trace(go.Heatmap(z=res.images[int(i)].reshape(8, 8), zmin=0, zmax=1, colorscale="gray",
                                         showscale=False, hovertemplate="pixel value %{z:.2f}<extra></extra>"),
                              row=r, col=j)
                fig.update_yaxes(autorange="reversed", row=r, col=j)
            else:
                x = res.X[int(i)]
                fig.add_trace(go.Bar(x=np.arange(len(x)), y=x, showlegend=False,
                                     marker={"color": ["orange" if k in hot else "#777"
                                                       for k in range(len(x))]}), row=r, col=j)
    fig.update_xaxes(showticklabels=not images)
    fig.update_yaxes(showticklabels=not images)
    if images:  # square pixels in every panel
        for k in range(1, nrows * cols + 1):
            sfx = "" if k == 1 else str(k)
            fig.layout[f"yaxis{sfx}"].update(scaleanchor=f"x{sfx}", constrain="domain")
            fig.layout[f"xaxis{sfx}"].update(constrain="domain")
    for r, (label, _, _) in enumerate(rows, start=1):
        fig.update_yaxes(title_text=label, row=r, col=1)
        fig.update_xaxes(title_text="8x8 pixels" if images else "feature index", row=r, col=1)
    for ann in fig.layout.annotations:
        ann.font.size = 10
    fig.update_layout(title=title, height=height, margin={"t": 80},
                      xaxis_title="8x8 pixels" if images else "feature index",
                      yaxis_title=rows[0][0] if rows else "example")
    return fig


@styled
def fig_gallery(res: OpposingResult, step: int | None = None, k: int = 8, title: str | None = None) -> go.Figure:
    """The ``k`` examples whose loss rises most and falls most from ``step`` to ``step + 1``
    (``*``: planted; the number after the label is the loss change)."""
    t = min(_cursor(res, step), res.steps_done - 1)
    rise, fall = res.movers(t, k)
    d = res.loss_matrix[t + 1].astype(np.float64) - res.loss_matrix[t]
    rows = [("largest rise", rise, d[rise]), ("largest fall", fall, d[fall])]
    what = "images, pixel value in [0, 1]" if res.images.size else "input features"
    return _examples_figure(res, rows, title or f"Top-moving examples from step {t} to {t + 1} "
                            f"({what}; * planted; loss change under the label)", k)


@styled
def fig_members(res: OpposingResult, k: int = 12, title: str | None = None) -> go.Figure:
    """The most-moving members of the two detected groups (``*``: planted)."""
    m = res.metrics
    rows = [(f"group A ({m.get('label_a')}s)", res.group_a[:k], None),
            (f"group B ({m.get('label_b')}s)", res.group_b[:k], None)]
    rows = [r for r in rows if len(r[1])]
    return _examples_figure(res, rows, title or "Members of the detected groups, most-moving first "
                            f"(* planted; {len(res.group_a)} + {len(res.group_b)} of the top "
                            f"{len(res.detected)})", k)


@styled
def fig_controls(res: OpposingResult, title: str | None = None) -> go.Figure:
    """The detected pair's loss-change correlation and oscillation amplitude next to those of
    the matched random pairs (same classes, same sizes)."""
    from plotly.subplots import make_subplots

    m = res.metrics
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Correlation of the two groups' loss changes", "Oscillation amplitude (std of mean-loss change)"))
    if len(res.control_corrs):
        fig.add_trace(go.Histogram(x=res.control_corrs, nbinsx=40, name="matched random pairs",
                                   marker={"color": "#999"}), row=1, col=1)
        fig.add_vline(x=m["group_loss_corr"], line={"color": "black", "width": 2}, row=1, col=1)
        med = float(np.median(res.control_amplitudes))
        if med > 0:
            rel = np.log10(np.maximum(res.control_amplitudes, 1e-300) / med)
            fig.add_trace(go.Histogram(x=rel, nbinsx=40, name="matched random pairs",
                                       marker={"color": "#999"}, showlegend=False), row=1, col=2)
            fig.add_vline(x=math.log10(max(m["amplitude"], 1e-300) / med),
                          line={"color": "black", "width": 2}, row=1, col=2)
    fig.update_xaxes(title_text="correlation over the window (dimensionless)", row=1, col=1)
    fig.update_xaxes(title_text="log10(amplitude / controls' median amplitude)", row=1, col=2)
    fig.update_yaxes(title_text="matched random pairs (count)", row=1, col=1)
    fig.update_yaxes(title_text="matched random pairs (count)", row=1, col=2)
    corr, ratio = m.get("group_loss_corr"), m.get("amplitude_ratio")
    fig.update_layout(
        title=title or (f"Detected pair (black line) vs {len(res.control_corrs)} matched random pairs: "
                        f"corr {_fmt(corr)} (controls' median {_fmt(m.get('control_corr_median'))}), "
                        f"amplitude {_fmt(ratio, '.1f')}x the controls' median"),
        xaxis_title="correlation over the window (dimensionless)",
        yaxis_title="matched random pairs (count)", showlegend=False)
    return fig


@styled
def fig_vote(res: OpposingResult, last: int = 40, title: str | None = None) -> go.Figure:
    """The planted examples' class-c1-minus-c2 logit margin and the planted feature's part of
    it, averaged per planted class, over the last ``last`` steps."""
    c1, c2 = res.meta.get("plant_classes", [None, None])
    fig = go.Figure()
    if len(res.planted) and len(res.margin):
        T = len(res.margin) - 1
        s = np.arange(max(0, T - last), T + 1)
        yp = res.y[res.planted]
        for c, color in ((c1, COLORS["a"]), (c2, COLORS["b"])):
            sel = yp == c
            if not sel.any():
                continue
            tot = res.margin[s][:, sel].mean(1)
            part = (res.margin[s] - res.margin_clean[s])[:, sel].mean(1)
            fig.add_trace(go.Scatter(x=s, y=tot, mode="lines+markers", name=f"planted {c}s: margin",
                                     line={"color": color}))
            fig.add_trace(go.Scatter(x=s, y=part, mode="lines", name=f"planted {c}s: the feature's part",
                                     line={"color": color, "dash": "dash"}))
    vs = res.metrics.get("vote_share")
    fig.update_layout(title=title or f"Logit margin f_{c1} - f_{c2} of the planted examples and the planted "
                      f"feature's part (vote share {_fmt(vs, '.2f')})",
                      xaxis_title=STEP_LABEL, yaxis_title=f"logit margin f_{c1}(x) - f_{c2}(x) (output units)",
                      legend={"orientation": "h", "y": -0.25})
    return fig


@styled
def fig_retrain(res: OpposingResult, title: str | None = None) -> go.Figure:
    """Mean loss of the kept examples: the first run vs the run without the detected set."""
    fig = go.Figure()
    if len(res.retrain_loss):
        s = np.arange(len(res.retrain_loss))
        fig.add_trace(go.Scatter(x=s, y=np.maximum(res.kept_loss, 1e-12), mode="lines",
                                 name="first run (loss on the kept examples)", line={"color": COLORS["all"]}))
        fig.add_trace(go.Scatter(x=s, y=np.maximum(res.retrain_loss, 1e-12), mode="lines",
                                 name=f"retrained without the {len(res.detected)} detected examples",
                                 line={"color": COLORS["sharp"]}))
    fig.update_yaxes(type="log")
    fig.update_layout(title=title or "Remove the detected examples and retrain (same init, same lr)",
                      xaxis_title=STEP_LABEL, yaxis_title=f"mean {LOSS_LABEL} over the kept examples",
                      legend={"orientation": "h", "y": -0.25})
    return fig


@styled
def fig_progress(live: dict, title: str | None = None) -> go.Figure:
    """A run in progress (``live``: the preview dict of :func:`~.run.train`): the overall loss
    and the sharpness against ``2/lr`` over the steps done so far, on the whole run's axis."""
    from plotly.subplots import make_subplots

    loss = np.asarray(live.get("loss", ()), np.float64)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        row_heights=[0.55, 0.45],
                        subplot_titles=("Overall training loss so far",
                                        "Sharpness (top eigenvalue) and 2/lr"))
    fig.add_trace(go.Scatter(x=np.arange(len(loss)), y=np.maximum(loss, 1e-12), mode="lines",
                             name="all examples", line={"color": COLORS["all"]}), row=1, col=1)
    fig.add_trace(go.Scatter(x=live.get("sharpness_steps", ()), y=live.get("sharpness", ()),
                             mode="lines+markers", name="sharpness", marker={"size": 4},
                             line={"color": COLORS["sharp"]}), row=2, col=1)
    steps = int(live.get("steps") or max(1, len(loss)))
    if live.get("lr"):
        thr = 2.0 / float(live["lr"])
        fig.add_trace(go.Scatter(x=[0, steps], y=[thr, thr], mode="lines", name="2 / lr",
                                 line={"dash": "dash", "color": "black"}), row=2, col=1)
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="sharpness", row=2, col=1)
    fig.update_xaxes(range=[0, steps], row=1, col=1)
    fig.update_xaxes(range=[0, steps], title_text=STEP_LABEL, row=2, col=1)
    fig.update_layout(title=title or f"Training: step {max(0, len(loss))} of {steps}; the groups "
                                     "and statistics come at the end",
                      height=430, legend={"orientation": "h", "y": -0.22})
    return fig
