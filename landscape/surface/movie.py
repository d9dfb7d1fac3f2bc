"""A training movie: the trajectory moving over its PCA loss surface, the loss curve beside it.

Computing and drawing are kept apart. :func:`movie_data` computes everything once: the loss
on a ``grid x grid`` plane spanned by the top two PCA directions of the trajectory (Li et al.
2018; :func:`landscape.surface.compute.compute` with ``directions="pca"``), every snapshot's
plane coordinates ``coords`` [T, 2] (parameter-space distance along PC1, PC2) and its real
full-data loss ``snap_loss`` [T]. The drawing functions only read that :class:`MovieData`.

Frame ``k`` of ``n`` sits at the fractional snapshot index ``f_k = k (T - 1) / (n - 1)``;
positions and losses between two snapshots are linearly interpolated, so every frame moves
even when ``n > T``. Three outputs (:data:`FORMATS`):

- ``.html``: one standalone file (plotly.js embedded, works offline) with ``n`` Plotly
  animation frames, Play/Pause and a step slider (:func:`html_figure`);
- ``.gif`` / ``.mp4``: raster frames drawn with Pillow (:func:`draw_frames`; kaleido needs
  seconds per image, Pillow about 5 ms), written by imageio and imageio-ffmpeg, ``width``
  pixels wide (default 1024, at least 800).

Colours are ``log10`` of the loss (cross-entropy in nats, or the squared loss), because a
surface around a trained network spans orders of magnitude.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.core.errors import Cancelled, LandscapeError

FORMATS = (".html", ".gif", ".mp4")
VIEWS = ("contour", "3d")
MIN_WIDTH = 800
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
           "#6ece58", "#b5de2b", "#fde725"]


@dataclass
class MovieData:
    """What a movie shows. ``x`` [nx], ``y`` [ny] plane coordinates (parameter distance);
    ``loss`` [ny, nx] the loss at ``(x_i, y_j)`` as ``loss[j, i]``; ``coords`` [T, 2],
    ``steps`` [T], ``snap_loss`` [T] the snapshots (real full-data loss); ``curve_steps``
    [S], ``curve_loss`` [S] the per-step batch loss (may be empty)."""

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    coords: np.ndarray
    steps: np.ndarray
    snap_loss: np.ndarray
    curve_steps: np.ndarray
    curve_loss: np.ndarray
    xtitle: str = "PC1, parameter distance"
    ytitle: str = "PC2, parameter distance"
    loss_label: str = "cross-entropy loss (nats)"
    title: str = "Training on the loss surface"
    meta: dict = field(default_factory=dict)


def movie_data(model, data, trajectory, loss_kind: str = "cross_entropy", history=None,
               grid: int = 31, samples: int | None = None, workers: int | None = None,
               title: str | None = None, progress=None, cancel=None) -> MovieData:
    """Compute a movie's contents: the PCA surface of ``trajectory = (steps [T], snapshots
    [T, P])`` (its last snapshot is ``model``) and each snapshot's real loss on ``data``.
    ``history`` is a list of ``(step, loss, accuracy)`` (batch loss per step) or None."""
    from landscape.surface.compute import compute, trajectory_losses
    from landscape.surface.plan import SurfaceConfig

    if trajectory is None:
        raise LandscapeError("a movie needs a training trajectory (train first, or give a saved run)")
    if not (5 <= int(grid) <= 201):
        raise LandscapeError(f"the movie's surface grid must be 5..201 points a side, got {grid}")
    steps, snaps = trajectory
    if len(steps) < 3:
        raise LandscapeError(f"a movie needs at least 3 trajectory snapshots, got {len(steps)}")
    cfg = SurfaceConfig(directions="pca", grid=(int(grid), int(grid)), loss=loss_kind,
                        samples=samples, workers=workers)
    res = compute(model, data, cfg, trajectory=(steps, snaps), progress=progress, cancel=cancel)
    snap_loss = np.asarray(trajectory_losses(model, data, snaps, loss_kind), float)
    hist = np.asarray(history if history is not None and len(history) else np.zeros((0, 3)), float)
    ev = res.meta.get("explained_variance", [float("nan")] * 2)
    label = "cross-entropy loss (nats)" if loss_kind == "cross_entropy" else "squared loss"
    return MovieData(
        x=np.asarray(res.x, float), y=np.asarray(res.y, float), loss=np.asarray(res.loss, float),
        coords=np.asarray(res.trajectory["coords"], float), steps=np.asarray(steps, float),
        snap_loss=snap_loss, curve_steps=hist[:, 0].copy(), curve_loss=hist[:, 1].copy(),
        xtitle=f"PC1 ({100 * ev[0]:.0f}% of variance), parameter distance",
        ytitle=f"PC2 ({100 * ev[1]:.0f}% of variance), parameter distance",
        loss_label=label, title=title or "Training on the loss surface",
        meta={"explained_variance": list(ev), "grid": int(grid), "n_snapshots": int(len(steps)),
              "surface_seconds": res.meta.get("seconds"), "loss_min": res.meta.get("loss_min"),
              "loss_max": res.meta.get("loss_max")})


# ---------------------------------------------------------------------------------------
# The frame schedule


def check_options(path, frames: int, fps: float, view: str, width: int = 1024) -> str:
    """The output format (``.html``, ``.gif``, ``.mp4``) of ``path``, after checking every
    option; a one-line :class:`LandscapeError` for anything that cannot be written."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise LandscapeError(f"cannot write a movie as {suffix or 'a file without a suffix'}; "
                             f"use {', '.join(FORMATS)}")
    if not (2 <= int(frames) <= 2000):
        raise LandscapeError(f"--frames must be 2..2000, got {frames}")
    if not (0 < float(fps) <= 60):
        raise LandscapeError(f"--fps must be in (0, 60], got {fps}")
    if view not in VIEWS:
        raise LandscapeError(f"unknown view {view!r}; choose one of {VIEWS}")
    if int(width) < MIN_WIDTH:
        raise LandscapeError(f"the movie must be at least {MIN_WIDTH} px wide, got {width}")
    if suffix in (".gif", ".mp4"):
        try:
            import imageio  # noqa: F401
        except ImportError:
            raise LandscapeError("GIF and MP4 movies need imageio: pip install imageio "
                                 "imageio-ffmpeg (or write .html)") from None
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:
            raise LandscapeError("MP4 movies need ffmpeg: pip install imageio-ffmpeg "
                                 "(or write .gif or .html)") from None
    return suffix


def frame_state(d: MovieData, f: float) -> dict:
    """The state at fractional snapshot index ``f`` in ``[0, T - 1]``: ``trail`` [m, 2] (the
    path so far, ending at the current point), ``point`` [2], ``step`` and ``loss``."""
    T = len(d.steps)
    f = float(np.clip(f, 0, T - 1))
    i = min(int(np.floor(f)), T - 2)
    a = f - i
    point = (1 - a) * d.coords[i] + a * d.coords[i + 1]
    trail = np.vstack([d.coords[:i + 1], point[None]])
    step = (1 - a) * d.steps[i] + a * d.steps[i + 1]
    loss = float(np.exp((1 - a) * np.log(max(d.snap_loss[i], 1e-12))
                        + a * np.log(max(d.snap_loss[i + 1], 1e-12))))
    return {"trail": trail, "point": point, "step": float(step), "loss": loss, "index": i + a}


def frame_positions(d: MovieData, frames: int) -> np.ndarray:
    """Fractional snapshot indices of ``frames`` frames, evenly spaced from first to last."""
    return np.linspace(0.0, len(d.steps) - 1, int(frames))


def _bilinear(d: MovieData, pts: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``z`` [ny, nx] on the grid, bilinearly interpolated at ``pts`` [m, 2] (clipped)."""
    px = np.clip(pts[:, 0], d.x[0], d.x[-1])
    py = np.clip(pts[:, 1], d.y[0], d.y[-1])
    i = np.clip(np.searchsorted(d.x, px) - 1, 0, len(d.x) - 2)
    j = np.clip(np.searchsorted(d.y, py) - 1, 0, len(d.y) - 2)
    ax = (px - d.x[i]) / (d.x[i + 1] - d.x[i])
    ay = (py - d.y[j]) / (d.y[j + 1] - d.y[j])
    return ((1 - ax) * (1 - ay) * z[j, i] + ax * (1 - ay) * z[j, i + 1]
            + (1 - ax) * ay * z[j + 1, i] + ax * ay * z[j + 1, i + 1])


def _logz(d: MovieData) -> np.ndarray:
    return np.log10(np.maximum(np.nan_to_num(d.loss, nan=np.nanmax(d.loss)), 1e-12))


def _step_text(s: float) -> str:
    return f"step {int(round(s))}"


# ---------------------------------------------------------------------------------------
# HTML: Plotly animation frames


def html_figure(d: MovieData, frames: int = 60, fps: float = 10, view: str = "contour"):
    """A Plotly figure with ``frames`` animation frames, Play/Pause and a step slider."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    z = _logz(d)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.12,
                        specs=[[{"type": "scene" if view == "3d" else "xy"}, {"type": "xy"}]],
                        subplot_titles=("Trajectory on the PCA loss surface", "Loss over training"))
    cbar = {"title": {"text": f"log10 {d.loss_label}", "side": "right"}, "x": 0.47, "len": 0.9}
    s0 = frame_state(d, 0.0)
    if view == "3d":
        fig.add_trace(go.Surface(x=d.x, y=d.y, z=z, colorscale="Viridis", colorbar=cbar,
                                 opacity=0.95, name="surface"), 1, 1)
    else:
        fig.add_trace(go.Contour(x=d.x, y=d.y, z=z, colorscale="Viridis", ncontours=25,
                                 colorbar=cbar, name="surface",
                                 hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>log10 loss=%{z:.3f}"
                                               "<extra></extra>"), 1, 1)
    fig.add_traces(_path_traces(d, s0, view, z), rows=[1, 1], cols=[1, 1])
    fig.add_trace(go.Scatter(x=d.curve_steps, y=d.curve_loss, mode="lines", name="batch loss",
                             line={"color": "rgba(120,120,120,0.35)", "width": 1}), 1, 2)
    fig.add_trace(go.Scatter(x=d.steps, y=d.snap_loss, mode="lines", name="full-data loss (all)",
                             line={"color": "rgba(31,119,180,0.25)", "width": 2},
                             showlegend=False), 1, 2)
    fig.add_traces(_curve_traces(d, s0), rows=[1, 1], cols=[2, 2])
    pos = frame_positions(d, frames)
    states = [frame_state(d, f) for f in pos]
    fig.frames = [go.Frame(name=f"frame{k}", traces=[1, 2, 5, 6],
                           data=[*_path_traces(d, s, view, z), *_curve_traces(d, s)])
                  for k, s in enumerate(states)]
    ms = 1000.0 / float(fps)
    play = {"frame": {"duration": ms, "redraw": True}, "fromcurrent": True,
            "transition": {"duration": 0}, "mode": "immediate"}
    fig.update_layout(
        title={"text": d.title, "x": 0.02}, height=620, margin={"t": 80, "b": 120},
        legend={"orientation": "h", "y": -0.32, "x": 0.55},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.2,
                      "xanchor": "left", "yanchor": "top", "showactive": False,
                      "buttons": [{"label": "Play", "method": "animate", "args": [None, play]},
                                  {"label": "Pause", "method": "animate",
                                   "args": [[None], {"frame": {"duration": 0, "redraw": False},
                                                     "mode": "immediate"}]}]}],
        sliders=[{"active": 0, "x": 0.12, "y": -0.14, "len": 0.85,
                  "currentvalue": {"prefix": "optimizer ", "font": {"size": 14}},
                  "steps": [{"label": _step_text(s["step"]), "method": "animate",
                             "args": [[f"frame{k}"], {"frame": {"duration": 0, "redraw": True},
                                                      "mode": "immediate",
                                                      "transition": {"duration": 0}}]}
                            for k, s in enumerate(states)]}])
    if view == "3d":
        fig.update_scenes(xaxis_title="PC1 distance", yaxis_title="PC2 distance",
                          zaxis_title="log10 loss")
    else:
        fig.update_xaxes(title_text=d.xtitle, range=[d.x[0], d.x[-1]], row=1, col=1)
        fig.update_yaxes(title_text=d.ytitle, range=[d.y[0], d.y[-1]], row=1, col=1)
    fig.update_xaxes(title_text="optimizer step", row=1, col=2,
                     range=[float(d.steps[0]), float(d.steps[-1])])
    fig.update_yaxes(title_text=d.loss_label, type="log", row=1, col=2)
    return fig


def _path_traces(d: MovieData, s: dict, view: str, z: np.ndarray):
    import plotly.graph_objects as go

    trail, pt = s["trail"], s["point"][None]
    if view == "3d":
        lift = 0.01 * (np.nanmax(z) - np.nanmin(z))
        zt, zp = _bilinear(d, trail, z) + lift, _bilinear(d, pt, z) + lift
        return [go.Scatter3d(x=trail[:, 0], y=trail[:, 1], z=zt, mode="lines", name="trajectory",
                             line={"color": "white", "width": 6}),
                go.Scatter3d(x=pt[:, 0], y=pt[:, 1], z=zp, mode="markers", name="now",
                             marker={"size": 7, "color": "red"})]
    return [go.Scatter(x=trail[:, 0], y=trail[:, 1], mode="lines", name="trajectory",
                       line={"color": "white", "width": 3}),
            go.Scatter(x=pt[:, 0], y=pt[:, 1], mode="markers", name="now",
                       marker={"size": 14, "color": "red", "line": {"color": "white", "width": 2}})]


def _curve_traces(d: MovieData, s: dict):
    import plotly.graph_objects as go

    n = int(np.floor(s["index"])) + 1
    xs = np.append(d.steps[:n], s["step"])
    ys = np.append(d.snap_loss[:n], s["loss"])
    return [go.Scatter(x=xs, y=ys, mode="lines", name="full-data loss",
                       line={"color": "#1f77b4", "width": 3}),
            go.Scatter(x=[s["step"]], y=[s["loss"]], mode="markers", name="current loss",
                       marker={"size": 12, "color": "red"}, showlegend=False)]


def write_html(d: MovieData, path, frames: int = 60, fps: float = 10, view: str = "contour") -> Path:
    """One standalone HTML file (plotly.js embedded: opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html_figure(d, frames, fps, view).write_html(str(path), include_plotlyjs=True, full_html=True,
                                                 auto_play=False)
    return path


# ---------------------------------------------------------------------------------------
# Raster frames with Pillow


def _lut() -> np.ndarray:
    """Viridis as a 256 x 3 uint8 table."""
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in VIRIDIS], float)
    t = np.linspace(0, 1, 256)
    s = np.linspace(0, 1, len(stops))
    return np.stack([np.interp(t, s, stops[:, c]) for c in range(3)], 1).astype(np.uint8)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.array([lo])
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = mag * min((m for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10)
    return np.arange(np.ceil(lo / step) * step, hi + 1e-9 * step, step)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"


class _Canvas:
    """The static background of every raster frame and the pixel mapping of its panels.

    Frame ``W x H`` (``H = W * 9 / 16``, both multiples of 16 for H.264); left panel: the
    surface (contour image or a 3-D mesh drawn back to front); right panel: the loss curve
    on a log axis."""

    def __init__(self, d: MovieData, width: int, view: str):
        from PIL import Image, ImageDraw, ImageFont

        self.d, self.view = d, view
        W = int(np.ceil(width / 16) * 16)
        H = int(np.ceil(W * 9 / 16 / 16) * 16)
        self.W, self.H, u = W, H, W / 1024
        self.font = ImageFont.load_default(size=max(12, int(15 * u)))
        self.small = ImageFont.load_default(size=max(11, int(13 * u)))
        self.big = ImageFont.load_default(size=max(14, int(20 * u)))
        self.left = (int(90 * u), int(60 * u), int(500 * u), int(H - 80 * u))
        self.right = (int(730 * u), int(60 * u), int(W - 30 * u), int(H - 80 * u))
        self.u = u
        self.lut = _lut()
        self.z = _logz(d)
        self.zlo, self.zhi = float(np.nanmin(self.z)), float(np.nanmax(self.z))
        img = Image.new("RGB", (W, H), "white")
        self._img = img
        draw = ImageDraw.Draw(img)
        (self._contour if view == "contour" else self._mesh)(img, draw)
        self._colorbar(draw)
        self._curve_axes(draw)
        self.background = img

    # --- left panel
    def _xy_px(self, pts: np.ndarray) -> np.ndarray:
        """Plane coordinates [m, 2] -> pixels [m, 2] in the left panel."""
        d, (x0, y0, x1, y1) = self.d, self.left
        if self.view == "3d":
            return self._project(pts[:, 0], pts[:, 1], _bilinear(d, pts, self.z))[0]
        px = x0 + (pts[:, 0] - d.x[0]) / (d.x[-1] - d.x[0]) * (x1 - x0)
        py = y1 - (pts[:, 1] - d.y[0]) / (d.y[-1] - d.y[0]) * (y1 - y0)
        return np.stack([px, py], 1)

    def _contour(self, img, draw) -> None:
        from PIL import Image

        d, (x0, y0, x1, y1) = self.d, self.left
        t = (self.z - self.zlo) / max(self.zhi - self.zlo, 1e-12)
        big = Image.fromarray(t[::-1].astype(np.float32), mode="F").resize((x1 - x0, y1 - y0),
                                                                           Image.BILINEAR)
        t = np.clip(np.asarray(big), 0, 1)
        rgb = self.lut[(t * 255).astype(int)].astype(float)
        lev = np.floor(t * 20)
        edge = np.zeros_like(t, bool)
        edge[:, 1:] |= lev[:, 1:] != lev[:, :-1]
        edge[1:, :] |= lev[1:, :] != lev[:-1, :]
        rgb[edge] = 0.55 * rgb[edge] + 0.45 * 255
        img.paste(Image.fromarray(rgb.astype(np.uint8)), (x0, y0))
        draw.rectangle(self.left, outline="black")
        for v in _nice_ticks(d.x[0], d.x[-1]):
            px = self._xy_px(np.array([[v, d.y[0]]]))[0, 0]
            draw.line([(px, y1), (px, y1 + 5)], fill="black")
            draw.text((px, y1 + 8), _fmt(v), fill="black", font=self.small, anchor="mt")
        for v in _nice_ticks(d.y[0], d.y[-1]):
            py = self._xy_px(np.array([[d.x[0], v]]))[0, 1]
            draw.line([(x0 - 5, py), (x0, py)], fill="black")
            draw.text((x0 - 8, py), _fmt(v), fill="black", font=self.small, anchor="rm")
        draw.text(((x0 + x1) / 2, y1 + 30 * self.u), self.d.xtitle, fill="black", font=self.font,
                  anchor="mt")
        self._vertical_text(img, self.d.ytitle, (int(x0 - 72 * self.u), (y0 + y1) // 2))

    def _project(self, x, y, z):
        """3-D camera (azimuth -55 deg, elevation 35 deg): pixels [m, 2] and depth [m]."""
        d, (x0, y0, x1, y1) = self.d, self.left
        u = (np.asarray(x) - d.x.mean()) / (d.x[-1] - d.x[0])
        v = (np.asarray(y) - d.y.mean()) / (d.y[-1] - d.y[0])
        w = 0.8 * (np.asarray(z) - self.zlo) / max(self.zhi - self.zlo, 1e-12)
        a, e = np.radians(-55), np.radians(35)
        xr, yr = u * np.cos(a) - v * np.sin(a), u * np.sin(a) + v * np.cos(a)
        up = w * np.cos(e) + yr * np.sin(e)
        depth = yr * np.cos(e) - w * np.sin(e)
        s = (x1 - x0) / 1.3
        return np.stack([(x0 + x1) / 2 + s * xr, (y0 + y1) / 2 + 0.3 * s - s * up], 1), depth

    def _mesh(self, img, draw) -> None:
        d = self.d
        X, Y = np.meshgrid(d.x, d.y)
        P, depth = self._project(X.ravel(), Y.ravel(), self.z.ravel())
        ny, nx = self.z.shape
        P = P.reshape(ny, nx, 2)
        depth = depth.reshape(ny, nx)
        quads = [(j, i) for j in range(ny - 1) for i in range(nx - 1)]
        qd = [depth[j:j + 2, i:i + 2].mean() for j, i in quads]
        t = (self.z - self.zlo) / max(self.zhi - self.zlo, 1e-12)
        for k in np.argsort(qd)[::-1]:  # far to near
            j, i = quads[k]
            poly = [tuple(P[j, i]), tuple(P[j, i + 1]), tuple(P[j + 1, i + 1]), tuple(P[j + 1, i])]
            c = self.lut[int(255 * np.clip(t[j:j + 2, i:i + 2].mean(), 0, 1))]
            draw.polygon(poly, fill=tuple(int(v) for v in c), outline=tuple(int(0.7 * v) for v in c))
        x0, _, x1, y1 = self.left
        draw.text(((x0 + x1) / 2, y1 + 30 * self.u),
                  "3-D view: PC1 and PC2 (parameter distance), height log10 loss",
                  fill="black", font=self.font, anchor="mt")

    def _colorbar(self, draw) -> None:
        x0, y0, x1, y1 = self.left
        cx = x1 + int(14 * self.u)
        wbar = int(14 * self.u)
        for r in range(y0, y1):
            t = 1 - (r - y0) / max(y1 - y0 - 1, 1)
            draw.line([(cx, r), (cx + wbar, r)], fill=tuple(int(v) for v in self.lut[int(255 * t)]))
        draw.rectangle((cx, y0, cx + wbar, y1), outline="black")
        for v in _nice_ticks(self.zlo, self.zhi, 5):
            r = y1 - (v - self.zlo) / max(self.zhi - self.zlo, 1e-12) * (y1 - y0)
            draw.line([(cx + wbar, r), (cx + wbar + 4, r)], fill="black")
            draw.text((cx + wbar + 7, r), _fmt(v), fill="black", font=self.small, anchor="lm")
        self._vertical_text(self._img, f"log10 {self.d.loss_label}", (int(cx + 70 * self.u), (y0 + y1) // 2))

    # --- right panel
    def _curve_range(self):
        d = self.d
        vals = np.concatenate([d.snap_loss, d.curve_loss])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        lo, hi = np.log10(vals.min()), np.log10(vals.max())
        pad = 0.05 * max(hi - lo, 0.1)
        return lo - pad, hi + pad, float(d.steps[0]), float(max(d.steps[-1], d.steps[0] + 1))

    def curve_px(self, steps, loss) -> list[tuple[float, float]]:
        x0, y0, x1, y1 = self.right
        lo, hi, s0, s1 = self.crange
        px = x0 + (np.asarray(steps, float) - s0) / (s1 - s0) * (x1 - x0)
        py = y1 - (np.log10(np.maximum(np.asarray(loss, float), 1e-12)) - lo) / (hi - lo) * (y1 - y0)
        return list(zip(px.tolist(), np.clip(py, y0, y1).tolist()))

    def _curve_axes(self, draw) -> None:
        d = self.d
        self.crange = lo, hi, s0, s1 = self._curve_range()
        x0, y0, x1, y1 = self.right
        draw.rectangle(self.right, outline="black")
        decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
        ticks = [m * 10 ** e for e in decades for m in ((1, 2, 5) if hi - lo < 2.5 else (1,))]
        for v in ticks:
            lv = np.log10(v)
            if lo <= lv <= hi:
                py = y1 - (lv - lo) / (hi - lo) * (y1 - y0)
                draw.line([(x0, py), (x1, py)], fill=(225, 225, 225))
                draw.text((x0 - 8, py), _fmt(v), fill="black", font=self.small, anchor="rm")
        for v in _nice_ticks(s0, s1):
            px = x0 + (v - s0) / (s1 - s0) * (x1 - x0)
            draw.line([(px, y1), (px, y1 + 5)], fill="black")
            draw.text((px, y1 + 8), _fmt(v), fill="black", font=self.small, anchor="mt")
        draw.text(((x0 + x1) / 2, y1 + 30 * self.u), "optimizer step", fill="black", font=self.font,
                  anchor="mt")
        if len(d.curve_steps) > 1:
            draw.line(self.curve_px(d.curve_steps, d.curve_loss), fill=(200, 200, 200), width=1)
        draw.line(self.curve_px(d.steps, d.snap_loss), fill=(190, 210, 235), width=max(2, int(2 * self.u)))
        self._vertical_text(self._img, f"{d.loss_label}, log scale", (int(x0 - 62 * self.u), (y0 + y1) // 2))
        draw.text((x1, y0 - 6 * self.u), "full data (blue), batch (grey)" if len(d.curve_steps) > 1
                  else "full data", fill="black", font=self.small, anchor="rd")

    def _vertical_text(self, img, text, center) -> None:
        from PIL import Image, ImageDraw

        w = int(self.font.getlength(text)) + 4
        h = int(self.font.size * 1.4)
        tile = Image.new("RGB", (w, h), "white")
        ImageDraw.Draw(tile).text((2, 0), text, fill="black", font=self.font)
        tile = tile.rotate(90, expand=True)
        img.paste(tile, (center[0] - tile.width // 2, center[1] - tile.height // 2))

    def frame(self, s: dict) -> np.ndarray:
        """One frame [H, W, 3] uint8 for the state ``s`` of :func:`frame_state`."""
        from PIL import ImageDraw

        img = self.background.copy()
        draw = ImageDraw.Draw(img)
        u = self.u
        trail = self._xy_px(s["trail"])
        if len(trail) > 1:
            draw.line([tuple(p) for p in trail], fill="white", width=max(2, int(3 * u)), joint="curve")
        px, py = self._xy_px(s["point"][None])[0]
        r = 8 * u
        draw.ellipse((px - r, py - r, px + r, py + r), fill="red", outline="white", width=2)
        n = int(np.floor(s["index"])) + 1
        pts = self.curve_px(np.append(self.d.steps[:n], s["step"]), np.append(self.d.snap_loss[:n], s["loss"]))
        if len(pts) > 1:
            draw.line(pts, fill=(31, 119, 180), width=max(3, int(3 * u)))
        cx, cy = pts[-1]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill="red", outline="white", width=2)
        draw.text((int(20 * u), int(12 * u)), self.d.title, fill="black", font=self.big)
        draw.text((self.W - int(20 * u), int(14 * u)),
                  f"{_step_text(s['step'])}   loss {s['loss']:.4g}", fill="black", font=self.big,
                  anchor="ra")
        return np.asarray(img)


def _check_cancel(cancel, done: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"movie stopped after {done} of {total} frames")


def draw_frames(d: MovieData, frames: int = 60, view: str = "contour", width: int = 1024,
                progress=None, cancel=None):
    """Yield ``frames`` raster frames [H, W, 3] uint8 (``W`` = ``width`` rounded up to a
    multiple of 16); ``progress(done, total)`` after each; ``cancel.is_set()`` (checked before
    each frame) stops with :class:`Cancelled`."""
    canvas = _Canvas(d, width, view)
    pos = frame_positions(d, frames)
    for k, f in enumerate(pos):
        _check_cancel(cancel, k, len(pos))
        yield canvas.frame(frame_state(d, f))
        if progress is not None:
            progress(k + 1, len(pos))


def write_movie(d: MovieData, path, frames: int = 60, fps: float = 10, view: str = "contour",
                width: int = 1024, progress=None, cancel=None) -> dict:
    """Write the movie to ``path`` (.html, .gif or .mp4 by suffix); returns ``{"out",
    "format", "frames", "width", "height"}`` (``width``/``height`` None for HTML).
    ``cancel.is_set()`` between frames stops with :class:`Cancelled` (an MP4 written so far
    is closed)."""
    fmt = check_options(path, frames, fps, view, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".html":
        _check_cancel(cancel, 0, frames)
        write_html(d, path, frames, fps, view)
        if progress is not None:
            progress(frames, frames)
        return {"out": str(path), "format": "html", "frames": int(frames), "width": None, "height": None}
    import imageio.v2 as iio

    shape = None
    if fmt == ".gif":
        imgs = list(draw_frames(d, frames, view, width, progress, cancel))
        shape = imgs[0].shape
        iio.mimsave(str(path), imgs, format="GIF", duration=1000.0 / float(fps), loop=0)
    else:
        writer = iio.get_writer(str(path), format="FFMPEG", fps=float(fps), codec="libx264",
                                quality=8, pixelformat="yuv420p", macro_block_size=16)
        try:
            for img in draw_frames(d, frames, view, width, progress, cancel):
                shape = img.shape
                writer.append_data(img)
        finally:
            writer.close()
    return {"out": str(path), "format": fmt[1:], "frames": int(frames), "width": int(shape[1]),
            "height": int(shape[0])}


def movie_bytes(d: MovieData, suffix: str, frames: int = 60, fps: float = 10, view: str = "contour",
                width: int = 1024, progress=None, cancel=None) -> tuple[bytes, dict]:
    """The movie as bytes (written to a temporary file and read back) and :func:`write_movie`'s
    info without ``out``; ``suffix`` is ``.html``, ``.gif`` or ``.mp4``."""
    with tempfile.TemporaryDirectory(prefix="landscape-movie-") as tmp:
        path = Path(tmp) / f"movie{suffix}"
        info = write_movie(d, path, frames=frames, fps=fps, view=view, width=width,
                           progress=progress, cancel=cancel)
        blob = path.read_bytes()
    info.pop("out", None)
    return blob, {**info, "bytes": len(blob)}
