"""Edge-of-stability page: full-batch training drives the sharpness up to the stability
threshold 2/eta, where it hovers while the loss keeps falling, non-monotonically (Cohen et
al. 2021); the 1-D quadratic shows where the threshold comes from."""

import copy

import streamlit as st

from landscape.core.device import available_devices
from landscape.core.errors import LandscapeError
from landscape.lessons import eos
from ui import steps as lesson_steps
from ui.about import data_line
from ui.nav import compute_settings, ensure_app
from ui.settings import lecture

ensure_app()  # before anything is drawn: see ui/nav.py

# The app's sidebar chooses threads, device and seed; on its own the page uses one thread
# (a small model on a few cores) and the recipe's device.
THREADS, DEVICE = compute_settings()  # the sidebar's threads and device
SEED = int(st.session_state.get("seed", 0))
DEFAULT = "eos-tanh-fast"
LR_GD = [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0]
LR_ADAM = [5e-4, 1e-3, 2e-3, 3e-3, 4e-3, 6e-3, 8e-3, 1e-2, 2e-2]

st.title("Edge of stability")
st.caption("Full-batch gradient descent raises the sharpness (the top Hessian eigenvalue) until "
           "it reaches the stability threshold 2/η, then hovers there while the loss keeps "
           "falling, no longer monotonically (Cohen et al. 2021; Adam: Cohen et al. 2022).")
lesson_steps.render("eos")  # the lesson's guided steps (?step=k)


@st.cache_resource(scope="session", show_spinner=False,
                   on_release=lambda h: h["job"].cancel() if h.get("job") else None)
def holder() -> dict:
    """This tab's run: {"job": a background job (eos.start_job) or None}; its job is cancelled
    when the tab goes."""
    return {"job": None}


H = holder()

# --------------------------------------------------------------------------- the 1-D lesson

st.subheader("Why 2/η: gradient descent on a parabola")
PRESENTING = lecture()


def controls(label: str):
    """Where a group of controls goes: in place, or folded away in the presenter view."""
    return st.expander(label, expanded=False) if PRESENTING else st.container()


with controls("Parabola settings: curvature, learning rate, steps"):
    q1, q2, q3 = st.columns(3)
    q_lam = q1.slider("Curvature λ (loss / parameter unit²)", 0.5, 20.0, 4.0, step=0.5,
                      key="q_lam", bind="query-params")
    q_eta = q2.slider("Learning rate η", 0.01, 1.0, 0.3, step=0.01, key="q_eta", bind="query-params")
    q_steps = q3.slider("Steps", 5, 60, 25, key="q_steps", bind="query-params")
try:
    quad = eos.quadratic_iterates(q_lam, q_eta, steps=int(q_steps))
    st.plotly_chart(eos.fig_quadratic(quad), width="stretch", key="quad_fig")
    st.caption(f"f(x) = λ x² / 2 and x_(t+1) = (1 - η λ) x_t with η λ = "
               f"{q_eta * q_lam:.3g}: monotone convergence below η = 1/λ = {1 / q_lam:.3g}, "
               f"oscillating convergence up to η = 2/λ = {2 / q_lam:.3g}, divergence above. "
               f"Here: **{quad.regime}**. Turned around: for a fixed η, any direction whose "
               f"curvature exceeds 2/η is unstable.")
except LandscapeError as e:
    st.error(f"{e}. Change the settings and try again.")

# --------------------------------------------------------------------------- the run's settings

st.subheader("A network at the edge")
presets = [p for p in eos.PRESETS if p != "eos-cnn-gpu" or "cuda" in available_devices()]


def apply_preset(name: str) -> None:
    p = eos.PRESETS[name]
    st.session_state["eos_preset"] = name
    st.session_state["eos_opt"] = p.optimizer
    if p.optimizer == "adam":
        st.session_state["eos_lr_adam"] = p.lr
    else:
        st.session_state["eos_lr"] = p.lr
    st.session_state["eos_steps"] = p.steps
    st.session_state["eos_every"] = p.eig_every
    st.session_state["eos_mom"] = p.momentum
    st.session_state["eos_act"] = p.model.get("args", {}).get("activation", "tanh")


if st.session_state.get("eos_preset") not in presets:
    st.session_state["eos_preset"] = DEFAULT
with controls("Network run settings: recipe, optimizer, learning rate, steps"):
    cols = st.columns(len(presets))
    for col, name in zip(cols, presets):
        col.button(name, key=f"preset_{name}", on_click=apply_preset, args=(name,),
                   help=eos.PRESET_NOTES[name], width="stretch",
                   type="primary" if st.session_state["eos_preset"] == name else "secondary")
    base = eos.PRESETS[st.session_state["eos_preset"]]
    st.caption(f"Recipe **{st.session_state['eos_preset']}**: {eos.PRESET_NOTES[st.session_state['eos_preset']]}. "
               f"{data_line(base.data)}")

    c1, c2, c3, c4, c5 = st.columns(5)
    opt = c1.radio("Optimizer", list(eos.OPTIMIZERS), index=list(eos.OPTIMIZERS).index(base.optimizer),
                   key="eos_opt", bind="query-params", horizontal=True,
                   format_func={"gd": "GD", "momentum": "heavy ball", "adam": "Adam"}.get)
    if opt == "adam":
        lr = c2.select_slider("Learning rate η", LR_ADAM, value=4e-3, key="eos_lr_adam",
                              bind="query-params", format_func=lambda v: f"{v:g}")
    else:
        lr = c2.select_slider("Learning rate η", LR_GD, value=0.4, key="eos_lr", bind="query-params",
                              format_func=lambda v: f"{v:g}")
    mom = c3.slider("Momentum beta", 0.0, 0.99, 0.9, step=0.01, key="eos_mom", bind="query-params",
                    disabled=opt != "momentum")
    steps = c4.slider("Steps", 50, max(5000, base.steps), base.steps, step=50, key="eos_steps",
                      bind="query-params")
    every = c5.select_slider("Eigenvalues every", [5, 10, 25, 50, 100], value=base.eig_every,
                             key="eos_every", bind="query-params")
    act = "tanh"
    if base.model.get("name") == "mlp":
        act = st.radio("Activation", ["tanh", "gelu", "relu"], horizontal=True, key="eos_act",
                       bind="query-params", help="ReLU is not twice differentiable: its sharpness is "
                       "that of the Hessian almost everywhere")

model = copy.deepcopy(base.model)
if model.get("name") == "mlp":
    model.setdefault("args", {})["activation"] = act
cfg = eos.preset(st.session_state["eos_preset"], optimizer=opt, lr=float(lr), momentum=float(mom),
                 steps=int(steps), eig_every=int(every), seed=SEED, model=model,
                 device=DEVICE or base.device)
m1, m2 = st.columns(2)
try:
    m1.metric("Stability threshold (loss / parameter unit^2)", f"{cfg.threshold:.4g}",
              help={"gd": "2 / η", "momentum": "(2 + 2 β) / η",
                    "adam": "(2 + 2 β₁) / ((1 - β₁) η), for the preconditioned sharpness"}[opt])
except LandscapeError as e:
    st.error(f"{e}. Change the settings and try again.")
m2.metric("Parameter updates", f"{cfg.steps:,}")

# --------------------------------------------------------------------------- play / pause / stop


def stop(job) -> None:
    """Cancel the job and wait for its thread: its partial result is then its result."""
    job.cancel()
    job.join(10)


job = H["job"]
b1, b2, b3 = st.columns(3)
if b1.button("Start", key="start", type="primary", icon=":material/play_arrow:"):
    if job is not None:
        stop(job)
    try:
        job = H["job"] = eos.start_job(cfg, threads=THREADS)
        H["cfg"] = cfg.to_dict()
    except LandscapeError as e:
        job = H["job"] = None
        st.error(f"{e}. Change the settings and try again.")
if job is not None and job.poll().state == "paused":
    if b2.button("Resume", key="resume", icon=":material/play_arrow:"):
        job.resume()
    if b3.button("Stop", key="stop_paused", icon=":material/stop:"):
        stop(job)
        st.rerun()


def latest(status):
    """The result to show: the final (or, once stopped, partial) result, else the partial one."""
    if status.result is not None:
        return status.result
    return status.partial[0] if status.partial else None


@st.fragment(run_every=0.5 if job is not None and job.poll().state == "running" else None)
def live() -> None:
    job = H["job"]
    if job is None:
        st.info("Press Start: the loss and the sharpness are drawn as training goes.")
        return
    status = job.poll()
    if status.state == "running":
        total = status.total or H["cfg"]["steps"]
        st.progress(min(1.0, status.done / total), text=f"Training: step {status.done:,} of {total:,}")
        p1, p2 = st.columns(2)
        if p1.button("Pause", key="pause", icon=":material/pause:"):
            job.pause()
            st.rerun()
        if p2.button("Stop", key="stop", icon=":material/stop:"):
            stop(job)
            st.rerun()
        part = latest(status)
        if part is not None and len(part.eig_steps):
            st.plotly_chart(eos.fig_loss_sharpness(part), width="stretch", key="live_fig")
    elif st.session_state.get("eos_live_done") != (id(job), status.state):
        # one full rerun to draw the panels below (again after a resume)
        st.session_state["eos_live_done"] = (id(job), status.state)
        st.rerun()


live()


def show(res: eos.EosResult) -> None:
    if not res.meta.get("twice_differentiable", True):
        st.warning(res.meta["hessian_label"])
    st.plotly_chart(eos.fig_loss_sharpness(res), width="stretch", key="main_fig")
    k1, k2, k3, k4 = st.columns(4)
    c = res.crossing_step
    k1.metric("First step at 0.95 x threshold", "never" if c is None else f"{c:,}")
    rng = res.ratio_range()
    k2.metric("Sharpness / threshold, second half", "n/a" if rng is None else f"{rng[0]:.2f}-{rng[1]:.2f}")
    before, after = res.loss_up_share()
    k3.metric("Steps where the loss rose: before / after", " / ".join(
        "n/a" if v is None else f"{100 * v:.0f}%" for v in (before, after)))
    m = res.meta
    k4.metric("Seconds: training / eigenvalues", f"{m['train_seconds']:.1f} / {m['eig_seconds']:.1f}",
              help=f"{m['hvps']:,} Hessian-vector products in {m['measurements']} measurements")
    st.plotly_chart(eos.fig_curvature(res), width="stretch", key="curv_fig")
    if len(res.eig_steps) and res.params.size:
        st.markdown("**The loss along the top Hessian eigenvector** at chosen steps: at the edge the "
                    "iterate sits across a valley whose curvature is about the threshold and jumps "
                    "from side to side.")
        options = [int(s) for s in res.eig_steps]
        picks = {options[0], options[-1]}
        if c is not None:
            picks.add(c)
        chosen = st.multiselect("Steps", options, default=sorted(picks), key=f"slice_steps_{len(options)}")
        if chosen:
            sl = eos.eigen_slice(res, chosen)
            st.plotly_chart(eos.fig_slice(sl), width="stretch", key="slice_fig")


try:
    job = H["job"]
    status = job.poll() if job is not None else None
    if status is not None and status.state != "running":
        if status.error:
            st.error(f"{status.error}. Change the settings and try again.")
        else:
            result = latest(status)
            if result is not None and len(result.loss):
                if status.state == "paused":
                    st.info(f"Paused at step {status.done:,}.")
                elif not result.meta["complete"]:
                    st.info(f"Stopped at step {result.meta['steps_done']:,}.")
                show(result)
except LandscapeError as e:
    st.error(f"{e}. Change the settings and try again.")
