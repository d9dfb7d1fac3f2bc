"""The "Make a movie" box of the Live training and Loss surface pages: the movie that
``landscape movie`` writes (the trajectory over its PCA loss surface, the loss curve beside it;
:mod:`landscape.surface.movie`), made in a background job with progress and Cancel, then
offered as a download.

    ui.movie.movie_box("surface", source, stem="digits-mlp")

``source(cancel)`` runs inside the job and returns ``{"model", "data", "loss", "trajectory",
"history"}`` (a preset's cached run, or a live run's copy). The box's settings (format, frames,
view) are widgets bound to the URL, so neither Cancel nor an error loses them; an error is one
line.
"""

from __future__ import annotations

import time

import streamlit as st

from landscape.core.jobs import BackgroundJob
from landscape.core.queue import shared
from landscape.surface import movie
from ui import settings, state
from ui.jobs import job_panel

FORMATS = {"HTML (standalone, plays offline)": ".html", "GIF": ".gif", "MP4": ".mp4"}
MIME = {".html": "text/html", ".gif": "image/gif", ".mp4": "video/mp4"}
FRAMES = [2, 12, 30, 60, 120, 240]
VIEWS = {"contour": "contour", "3-D": "3d"}  # label -> the view of landscape.surface.movie
GRID = 21  # the movie's surface: grid x grid points on the PCA plane
FPS = 10


def make(source, fmt: str, frames: int, view: str, title: str, grid: int = GRID, fps: float = FPS,
         progress=None, cancel=None) -> dict:
    """Run in the job: the source, the movie's PCA surface (``grid`` x ``grid`` points), then
    ``frames`` frames; returns ``{"bytes", "format", "frames", "seconds", ...}``. Progress
    counts surface points then frames, with a text partial saying which."""
    t0 = time.perf_counter()
    movie.check_options(f"movie{fmt}", frames, fps, view)  # a bad option fails before any work
    report = progress or (lambda *a: None)
    report(0, 1, "getting the trained model and its trajectory")
    src = source(cancel)
    n_points = int(grid) ** 2
    total = n_points + int(frames)

    def on_point(done, _total=None, *_partial):
        report(int(done), total, f"movie surface: {int(done)} of {n_points} points")

    def on_frame(done, _total=None):
        report(n_points + int(done), total, f"movie frames: {int(done)} of {frames}")

    data = movie.movie_data(src["model"], src["data"], src["trajectory"], src["loss"],
                            history=src.get("history"), grid=int(grid), workers=1, title=title,
                            progress=on_point, cancel=cancel)
    blob, info = movie.movie_bytes(data, fmt, frames=int(frames), fps=fps, view=view,
                                   progress=on_frame, cancel=cancel)
    return {**info, "size": len(blob), "bytes": blob, "suffix": fmt, "view": view, "grid": int(grid),
            "n_snapshots": data.meta["n_snapshots"], "seconds": time.perf_counter() - t0}


def movie_box(name: str, source, stem: str, title: str, note: str | None = None) -> None:
    """Draw the "Make a movie" expander of page ``name``: format, frames, view, the Make button;
    while the job runs its progress and Cancel; then the download button (the finished movie
    is kept for the tab until the next one is made)."""
    # the job, stopped when the tab goes (not paused on another page: it finishes meanwhile)
    h = state.holder(f"{name}_movie")
    with st.expander("Make a movie", icon=":material/movie:",
                     expanded=h.get("job") is not None or h.get("open", False)):
        if note:
            st.caption(note)
        c1, c2, c3, c4 = st.columns([2.2, 1, 1.2, 1.2], vertical_alignment="bottom")
        label = c1.selectbox("Format", list(FORMATS), key=f"{name}_movie_format", bind="query-params")
        frames = c2.select_slider("Frames", FRAMES, value=60, key=f"{name}_movie_frames",
                                  bind="query-params")
        shown = c3.segmented_control("View", list(VIEWS), default="contour", key=f"{name}_movie_view",
                                     bind="query-params")  # the link holds the label: 3-D
        view = VIEWS.get(shown, "contour")
        if c4.button("Make a movie", key=f"{name}_movie_make", icon=":material/movie:",
                     type="primary", width="stretch"):
            if h.get("job") is not None:
                h["job"].cancel()
            fmt = FORMATS[label]
            threads = settings.compute_settings()[0]
            h["job"] = BackgroundJob(make, source, fmt, int(frames), view, title, label="movie",
                                     threads=threads, queue=shared().queue)
            h["stem"], h["error"], h["open"] = stem, None, True
            h.pop("result", None)
        _panel(name, h)


def _panel(name: str, h: dict) -> None:
    job = h.get("job")

    @st.fragment(run_every=0.4 if job is not None else None)
    def panel():
        job = h.get("job")
        if job is not None:
            s = job_panel(job, f"{name}_movie")
            if not s.finished:
                return
            h["job"] = None
            if s.state == "done":
                h["result"] = s.result
            else:
                h["error"] = s.error or "Cancelled: no movie was made"
            st.rerun()
        if h.get("error"):
            st.error(f"{h['error']}. Your settings are kept; change one, or make it again.")
        res = h.get("result")
        if res is not None:
            size = "" if res.get("width") is None else f", {res['width']}x{res['height']} px"
            st.download_button(
                f"Download the movie ({res['suffix'][1:].upper()}, {res['size'] / 1e6:.1f} MB)",
                res["bytes"],
                file_name=f"{h.get('stem', 'movie')}-movie{res['suffix']}", mime=MIME[res["suffix"]],
                key=f"{name}_movie_download", icon=":material/download:", on_click="ignore")
            shown = "3-D" if res["view"] == "3d" else "contour"
            st.caption(f"{res['frames']} frames ({shown}{size}) over {res['n_snapshots']} snapshots, "
                       f"{res['grid']}x{res['grid']} surface, made in "
                       f"{res['seconds']:.1f} s.")

    panel()
