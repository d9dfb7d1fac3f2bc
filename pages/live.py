"""Live training: Play / Pause / Step / Reset, live curves, the trajectory on the landscape."""

import json

import numpy as np
import streamlit as st

from landscape import presets
from landscape.core import data, models
from landscape.core.device import choose_device
from landscape.core.errors import LandscapeError
from landscape.core.train import TrainConfig
from landscape.io import checkpoints as checkpoint
from landscape.surface import figures as plots
from landscape.surface.live import LiveConfig, LiveRun
from ui import settings, state
from ui.about import data_line
from ui.movie import movie_box
from ui.nav import ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

lecture = settings.lecture()
st.title("Live training")

SPEEDS = [2, 5, 10, 20, 60, 200, 1000]
CUSTOM_DATA = ["digits", "moons", "circles", "spirals", "gaussians"]


# One live run per browser tab: paused while another page is shown, closed when the tab goes.
holder = state.holder("live", page="live")

with st.expander("Setup: model, directions, speed, grid", expanded=False):
    c1, c2, c3 = st.columns(3)
    mode = c1.radio("Model", ["Preset", "Custom"], horizontal=True, key="mode",
                    bind="query-params")
    preset_name = c1.selectbox("Preset", list(presets.PRESETS), key="preset",
                               bind="query-params", disabled=mode != "Preset")
    dirs_kind = c2.radio("Surface directions", ["pca", "random"], horizontal=True,
                         key="live_dirs", bind="query-params",
                         help="pca: fixed once enough snapshots exist; random: filter-normalized")
    speed = c2.select_slider("Speed (steps per second)", SPEEDS, value=60, key="speed",
                             bind="query-params")
    grid = c3.select_slider("Surface grid", [11, 15, 21, 31], value=21, key="live_grid",
                            bind="query-params")
    live_log = c3.toggle("Log scale", value=True, key="live_log", bind="query-params")
    if mode == "Custom":
        k1, k2, k3, k4 = st.columns(4)
        data_name = k1.selectbox("Data", CUSTOM_DATA, key="c_data", bind="query-params")
        widths = k1.text_input("Hidden widths", "64,64", key="c_widths", bind="query-params")
        act = k2.selectbox("Activation", ["relu", "tanh", "gelu"], key="c_act", bind="query-params")
        opt = k2.selectbox("Optimizer", ["sgd", "momentum", "gd", "adam"], key="c_opt",
                           bind="query-params")
        lr = k3.number_input("Learning rate", 1e-5, 10.0, 0.05, format="%.4f", key="c_lr",
                             bind="query-params")
        batch = k3.number_input("Batch size (0 = full)", 0, 4096, 128, key="c_batch",
                                bind="query-params")
        steps = k4.number_input("Steps", 10, 20000, 600, step=10, key="c_steps",
                                bind="query-params")


def build_recipe():
    """(model, data, train config, description) for the current settings."""
    seed = int(st.session_state.get("seed", 0))
    if mode == "Preset":
        p = presets.get(preset_name)
        m, d = presets.make(preset_name)
        cfg = TrainConfig.from_dict({**p.train.to_dict(), "seed": seed})
        if seed:
            m = models.build(p.model, seed=seed)
        return m, d, cfg, {"preset": preset_name, "data": p.data, "model": p.model}
    try:
        ws = [int(w) for w in str(widths).replace(" ", "").split(",") if w]
    except ValueError:
        raise LandscapeError(f"hidden widths must be integers separated by commas, got {widths!r}") from None
    if not ws or any(w < 1 or w > 4096 for w in ws):
        raise LandscapeError("hidden widths must be between 1 and 4096")
    d = data.load_builtin(data_name)
    spec = {"name": "mlp", "args": {"in_dim": d.input_shape[0], "out_dim": d.n_classes,
                                    "widths": ws, "activation": act}}
    m = models.build(spec, seed=seed)
    cfg = TrainConfig(opt, lr=float(lr), steps=int(steps),
                      batch_size=None if int(batch) == 0 else int(batch), seed=seed,
                      snapshot_every=max(1, int(steps) // 60))
    return m, d, cfg, {"data": data_name, "model": spec}


def run_key() -> str:
    keys = ["device", "mode", "preset", "live_dirs", "live_grid", "seed", "c_data", "c_widths", "c_act",
            "c_opt", "c_lr", "c_batch", "c_steps"]
    return json.dumps({k: st.session_state.get(k) for k in keys}, sort_keys=True, default=str)


def device():
    """The sidebar's device; a GPU that is not there falls back to the CPU."""
    try:
        return choose_device(st.session_state.get("device", "auto"))
    except LandscapeError:
        return choose_device("cpu")


def new_run():
    if holder.get("run") is not None:
        holder["run"].close()
    holder["run"] = None
    m, d, cfg, recipe = build_recipe()
    holder["run"] = LiveRun(m, d, cfg, LiveConfig(directions=dirs_kind, grid=int(grid),
                                                  steps_per_second=float(speed),
                                                  seed=int(st.session_state.get("seed", 0))),
                            device=device())
    holder["key"], holder["recipe"] = run_key(), {**recipe, "train": cfg.to_dict()}


try:
    if holder.get("run") is None or holder.get("key") != run_key():
        new_run()
except LandscapeError as e:
    st.error(f"{e}. Fix the setting above; nothing else was changed.")
    st.stop()

run: LiveRun = holder["run"]
run.set_speed(float(speed))

b1, b2, b3, b4, b5 = st.columns([1, 1, 1, 1, 3])
if b1.button("Play", icon=":material/play_arrow:", type="primary", key="btn_play"):
    run.play()
if b2.button("Pause", icon=":material/pause:", key="btn_pause"):
    run.pause()
if b3.button("Step", icon=":material/skip_next:", key="btn_step"):
    run.step(1)
if b4.button("Reset", icon=":material/restart_alt:", key="btn_reset"):
    new_run()
    run = holder["run"]


def model_bytes() -> bytes:
    r = holder["recipe"]
    return checkpoint.to_bytes(holder["run"].model_copy(), data=r.get("data"), recipe=r)


b5.download_button("Download model (.safetensors)", model_bytes,
                   file_name=f"{holder['recipe'].get('preset', 'custom')}-model.safetensors",
                   mime="application/octet-stream", key="btn_download_model",
                   icon=":material/download:", on_click="ignore")


def busy() -> bool:
    """Poll while training plays or the surface is still being computed."""
    return run.playing or run.state().surface_done < 1


@st.fragment(run_every=0.5 if busy() else None)
def live_view():
    s = run.state()
    left, right = st.columns([3, 2])
    if s.plane_kind == "pca" and s.explained:
        xt = f"PC1 ({100 * s.explained[0]:.0f}% of variance), parameter distance"
        yt = f"PC2 ({100 * s.explained[1]:.0f}% of variance), parameter distance"
        title = "Trajectory on the PCA plane of its first snapshots"
    else:
        xt, yt = "random direction x (filter-normalized)", "random direction y (filter-normalized)"
        title = "Trajectory on a random filter-normalized plane"
        if dirs_kind == "pca":
            title = "Random plane until 8 snapshots, then the PCA plane"
    fig = plots.trajectory_on_surface(s.surface_x, s.surface_y, s.surface_loss, s.traj_coords,
                                      s.traj_steps, s.off_plane, log=live_log, title=title,
                                      xtitle=xt, ytitle=yt)
    left.plotly_chart(fig, width="stretch", key="live_surface")
    if s.surface_done < 1:
        left.progress(s.surface_done, text=f"surface {100 * s.surface_done:.0f}% (coarse to fine)")
    if len(s.steps):
        right.plotly_chart(plots.training_curves(s.steps, np.maximum(s.loss, 1e-12), s.accuracy,
                                                 title="Loss and accuracy"),
                           width="stretch", key="live_curves")
    else:
        right.info("Press Play to train, or Step for one update at a time.")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Step", f"{s.step} / {s.total}")
    m2.metric("Loss", f"{s.loss[-1]:.4f}" if len(s.loss) else "-")
    m3.metric("Accuracy", f"{100 * s.accuracy[-1]:.1f} %" if len(s.accuracy) else "-")
    m4.metric("Status", s.status)
    if s.message:
        st.warning(s.message)
    if len(s.off_plane):
        n = len(s.traj_coords)
        st.caption(f"{n} snapshot{'s' if n != 1 else ''}; the latest sits {s.off_plane[-1]:.3g} "
                   "parameter-distance units (Euclidean norm in weight space) off the plane: the "
                   "contour is the loss on the plane, not at the snapshot.")
    st.caption(data_line(holder["recipe"].get("data")))
    if not busy() and st.session_state.get("_was_busy"):
        st.session_state["_was_busy"] = False
        st.rerun()  # stop polling: the page is idle
    st.session_state["_was_busy"] = busy()


live_view()


def live_movie_source(cancel, run=run, preset=preset_name if mode == "Preset" else None):
    """This run so far once it has three snapshots; before that, the preset's full run (as
    ``landscape movie --preset``)."""
    src = run.movie_source()
    if len(src["trajectory"][0]) >= 3:
        return src
    if preset is None:
        raise LandscapeError("a movie needs at least 3 snapshots of this run: press Play first")
    p = presets.train_preset(preset, cancel=cancel)
    return {"model": p.model, "data": p.data, "loss": presets.get(preset).train.loss,
            "trajectory": p.trajectory, "history": p.history}


movie_box("live", live_movie_source, stem=holder["recipe"].get("preset", "custom"),
          title=f"Training on the loss surface: {holder['recipe'].get('preset', 'custom model')}",
          note="This run so far, over the PCA surface of its own snapshots (before any training: "
               "the preset's full run, as `landscape movie --preset` writes it).")
