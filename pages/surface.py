"""Loss-surface explorer: contour with the trajectory, 3-D, 1-D slices, compare two models.

Surfaces are computed in a background job (coarse-to-fine, progress bar, Cancel); results
are kept per recipe for the session, so switching views never recomputes.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from landscape import presets, surface
from landscape.core import ray as cluster
from landscape.core.device import choose_device
from landscape.core.errors import LandscapeError
from landscape.surface import figures as plots
from landscape.surface.executors.ray import RayGridEvaluator
from ui import jobs as ui_jobs
from ui.about import data_line
from ui.export import figure_exports
from ui.movie import movie_box
from ui.nav import page_header

lecture = page_header("Loss surface",
                      "Filter-normalized loss surfaces (Li et al. 2018) around a trained model; "
                      "PCA directions follow the model's own training path.")

VIEWS = ["2-D", "3-D", "1-D", "Compare"]
names = list(presets.PRESETS)

# The setup sits beside the figure, in the sidebar (hidden with it in the presenter view), so
# the figure comes right under the title at 1280x720.
with st.sidebar.expander("Surface setup: view, model, directions, grid", expanded=True):
    view = st.segmented_control("View", VIEWS, default="2-D", key="view", bind="query-params")
    c1 = c2 = c3 = c4 = st.container()
    name = c1.selectbox("Preset", names, key="preset", bind="query-params")
    name_b = c1.selectbox("Compare with", names, index=names.index("digits-resnet-noskip"),
                          key="preset_b", bind="query-params", disabled=view != "Compare")
    kind = c2.radio("Directions", ["random", "pca", "hessian"], horizontal=True, key="dirs",
                    bind="query-params",
                    help="random: filter-normalized; pca: the training path's principal "
                         "directions; hessian: the top two eigenvectors (sharpest directions)")
    norm = c2.selectbox("Normalization", ["filter", "layer", "none"], key="norm",
                        bind="query-params")
    bn = c2.selectbox("BatchNorm statistics", ["keep", "recompute"], key="bn",
                      bind="query-params", help="recompute: one pass over the data per point")
    n = c3.select_slider("Grid", [11, 15, 21, 31, 41, 51], value=21, key="grid",
                         bind="query-params")
    span = c3.slider("Range (+/-)", 0.1, 3.0, 1.0, step=0.1, key="range", bind="query-params",
                     disabled=kind == "pca",
                     help="units of the directions: filter norms (random), parameter "
                          "distance (hessian)")
    samples = c4.select_slider("Evaluation examples", ["200", "500", "1000", "all"], value="500",
                               key="samples", bind="query-params")
    log = c4.toggle("Log scale", key="log", bind="query-params")
    ray_address = cluster.configured_address()
    use_ray = False
    if ray_address:
        ok, why = cluster.ray_available()
        use_ray = c4.toggle(f"Compute on the Ray cluster ({ray_address})", key="use_ray",
                            disabled=not ok, help=why)

seed = int(st.session_state.get("seed", 0))
try:
    device_name = choose_device(st.session_state.get("device", "auto")).type
except LandscapeError:
    device_name = "cpu"


def recipe(preset_name: str) -> dict:
    p = presets.get(preset_name)
    dims1 = view == "1-D"
    return {"directions": kind, "grid": (n,) if dims1 else (n, n), "seed": seed, "norm": norm,
            "device": device_name, "ray": bool(use_ray),
            "bn": bn, "xrange": (-span, span) if kind != "pca" else (-1.0, 1.0),
            "samples": None if samples == "all" else int(samples), "loss": p.train.loss}


def without_device(cfg: dict) -> dict:
    """The surface recipe proper (the device is part of the cache key, not the recipe)."""
    return {k: v for k, v in cfg.items() if k not in ("device", "ray")}


def compute(preset_name, cfg, device_name="cpu", ray_address=None, progress=None, cancel=None):
    """Train (or load) the preset, then its surface; run inside a background job."""
    progress(0, 1)
    run = presets.train_preset(preset_name, cancel=cancel)
    dev = choose_device(device_name)
    hvecs = None
    if cfg["directions"] == "hessian":
        from landscape.hessian.report import top_directions

        hvecs = top_directions(run.model, run.data, cfg["loss"], cfg["samples"], cfg["seed"])
    res = surface.compute(run.model, run.data, surface.SurfaceConfig(**cfg),
                          trajectory=run.trajectory, hessian_vectors=hvecs, progress=progress,
                          cancel=cancel, device=None if dev.type == "cpu" else dev,
                          grid_fn=RayGridEvaluator(ray_address) if ray_address
                          else None)
    if res.trajectory is not None:
        res.trajectory["loss"] = surface.trajectory_losses(run.model, run.data,
                                                           run.trajectory[1], cfg["loss"])
    return res


def progress_text(status):
    return ("training the preset (cached after the first time)" if status.total <= 1
            else f"{status.done} of {status.total} points, coarse to fine")


wanted = [name] + ([name_b] if view == "Compare" else [])
ready = []
for nm in wanted:
    cfg_nm = recipe(nm)

    def preview(status, nm=nm, cfg_nm=cfg_nm):
        if view in ("2-D", "Compare") and np.ndim(status.partial[0]) == 2:
            x, y = surface.SurfaceConfig(**without_device(cfg_nm)).coordinates()
            st.plotly_chart(plots.trajectory_on_surface(
                x, y, status.partial[0], [], title=f"{nm}: preview (coarse to fine)", log=log),
                width="stretch", key="preview")

    res_nm = ui_jobs.keyed_result("surface", json.dumps([nm, cfg_nm], sort_keys=True), compute,
                                  nm, without_device(cfg_nm), device_name,
                                  ray_address if use_ray else None, preview=preview,
                                  what=progress_text)
    if res_nm is None:
        st.stop()
    ready.append(res_nm)
res = ready[0]


def downloads(result, stem: str, fig):
    d1, d2, d3, d4 = st.columns(4)

    def file_bytes(suffix):
        with tempfile.TemporaryDirectory() as tmp:
            path = surface.save(result, Path(tmp) / f"surface{suffix}")
            return path.read_bytes()

    d1.download_button("Surface .h5", lambda: file_bytes(".h5"), f"{stem}.h5",
                       key=f"dl_h5_{stem}", on_click="ignore", icon=":material/download:",
                       help="The loss-landscape code's layout: its plot_2D/plot_1D and "
                            "h5_util.read_list read it as is (accuracies in percent)")
    d2.download_button("Surface .npz", lambda: file_bytes(".npz"), f"{stem}.npz",
                       key=f"dl_npz_{stem}", on_click="ignore", icon=":material/download:")
    figure_exports(fig, stem, d3, d4)


if view == "Compare":
    res_b = ready[1]
    zr = plots.shared_range(res, res_b, log=log)
    a, b = st.columns(2)
    fa = plots.contour(res, log=log, zrange=zr, title=f"{name}")
    fb = plots.contour(res_b, log=log, zrange=zr, title=f"{name_b}")
    a.plotly_chart(fa, width="stretch", key="cmp_a")
    b.plotly_chart(fb, width="stretch", key="cmp_b")
    a.metric("Loss at the model", f"{res.meta['loss_center']:.4g}")
    b.metric("Loss at the model", f"{res_b.meta['loss_center']:.4g}")
    st.caption("One colour scale for both. " + plots.recipe_text(res))
    downloads(res, f"{name}-surface", fa)
    st.stop()

if view == "1-D":
    fig = plots.slice1d(res, log=log, title=f"{name}: loss along one direction")
elif view == "3-D":
    fig = plots.surface3d(res, log=log, title=f"{name}: loss surface")
else:
    fig = plots.contour(res, log=log, title=f"{name}: loss surface")
left, right = st.columns([3, 2])  # a square domain drawn square-ish, the numbers beside it
left.plotly_chart(fig, width="stretch", key="main_fig")
m1, m2 = right.columns(2)
m3, m4 = right.columns(2)
m1.metric("Loss at the model", f"{res.meta['loss_center']:.4g}")
m2.metric("Lowest loss on the grid", f"{res.meta['loss_min']:.4g}")
m3.metric("Highest loss on the grid", f"{res.meta['loss_max']:.4g}")
m4.metric("Seconds", f"{res.meta['seconds']:.2f}")
right.caption(plots.recipe_text(res))
right.caption(data_line(presets.get(name).data) if name in presets.PRESETS else "")
if res.trajectory is not None and res.trajectory.get("loss") is not None and view == "2-D":
    with st.expander("Snapshots: real loss vs the plane's value under them"):
        rows = []
        for s_, (cx, cy), off, real in zip(res.trajectory["steps"], res.trajectory["coords"],
                                           res.trajectory["off_plane"], res.trajectory["loss"]):
            i = int(np.argmin(np.abs(res.x - cx)))
            j = int(np.argmin(np.abs(res.y - cy)))
            rows.append({"step": s_, "x": cx, "y": cy, "off-plane distance": off,
                         "real loss": real, "contour value under it": float(res.loss[j, i])})
        st.dataframe(rows, hide_index=True)
downloads(res, f"{name}-surface", fig)


def preset_movie_source(cancel, preset_name=name):
    """The preset's training run (cached after the first time), as ``landscape movie --preset``."""
    run = presets.train_preset(preset_name, cancel=cancel)
    return {"model": run.model, "data": run.data, "loss": presets.get(preset_name).train.loss,
            "trajectory": run.trajectory, "history": run.history}


movie_box("surface", preset_movie_source, stem=name, title=f"Training on the loss surface: {name}",
          note=f"{name}'s training path over its PCA loss surface, the loss curve beside it (the "
               "movie `landscape movie --preset` writes).")
