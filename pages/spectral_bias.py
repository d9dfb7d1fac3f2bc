"""Spectral-bias page: which frequencies a coordinate MLP learns first, and what random
networks compute before any training (Neural Redshift)."""

import dataclasses

import streamlit as st

from landscape.core.device import available_devices
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons import redshift as rs
from landscape.lessons import spectral_bias as sb
from ui import steps as lesson_steps
from ui.about import sines_line
from ui.nav import compute_settings, ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

LIVE_ABOVE = 2500  # longer runs train on a thread and draw as they go
THREADS, DEVICE = compute_settings()  # the sidebar's threads and device

st.title("Spectral bias")
st.caption("A coordinate MLP fits a sum of sines; low frequencies are learned first "
           "(Rahaman et al. 2019) unless the input is encoded (Tancik et al. 2020).")
lesson_steps.render("spectral")  # the lesson's guided steps (?step=k)


@st.cache_data(show_spinner=False, max_entries=16)
def run_spectral(cfg: dict) -> sb.SpectralResult:
    return sb.train(sb.SpectralConfig.from_dict(cfg), threads=THREADS)


@st.cache_resource(scope="session", max_entries=2, show_spinner=False,
                   on_release=lambda job: job.cancel())
def live_job(cfg: dict):
    return sb.spectral_job(sb.SpectralConfig.from_dict(cfg), threads=THREADS)


@st.cache_data(show_spinner=False, max_entries=32)
def run_redshift(cfg: dict) -> rs.RedshiftResult:
    return rs.compute(rs.RedshiftConfig(**cfg))


@st.cache_data(show_spinner=False, max_entries=8)
def run_sweep(init_scale: float, bias_std: float) -> dict:
    return rs.sweep(rs.RedshiftConfig(grid=32, bias_std=bias_std), depths=(1, 2, 4, 8),
                    init_scales=(init_scale,), seeds=(0, 1))


presets = [p for p in sb.PRESETS if p != "gpu" or "cuda" in available_devices()]
with st.sidebar:
    name = st.selectbox("Recipe", presets, key="sb_preset", bind="query-params")
    st.caption(sb.PRESET_NOTES[name])
    base = sb.PRESETS[name]
    encoding = st.radio("Input encoding", list(sb.ENCODINGS), horizontal=True, key="sb_encoding",
                        bind="query-params",
                        format_func={"none": "raw x", "pe": "positional", "rff": "Fourier features"}.get)
    sigma = st.slider("Fourier-feature sigma (cycles per unit x)", 0.5, 40.0, 10.0, step=0.5,
                      key="sb_sigma", bind="query-params", disabled=encoding != "rff")
    levels = st.slider("Positional-encoding levels L", 1, 12, 8, key="sb_levels", bind="query-params",
                       disabled=encoding != "pe")
    steps = st.slider("Steps", 100, max(base.steps, 6000), base.steps, step=100, key="sb_steps",
                      bind="query-params")
    seed = st.number_input("Run seed (phases, init)", 0, 10_000, 0, key="sb_seed", bind="query-params")
    amplitudes = st.radio("Amplitudes", ["equal", "rising"], horizontal=True, key="sb_amplitudes",
                          bind="query-params")

cfg = dataclasses.replace(base, encoding=encoding, sigma=float(sigma), levels=int(levels),
                          steps=int(steps), seed=int(seed), amplitudes=amplitudes,
                          device=DEVICE or base.device).to_dict()


def show(res: sb.SpectralResult) -> None:
    left, right = st.columns(2)
    left.plotly_chart(sb.fig_heatmap(res), width="stretch")
    right.plotly_chart(sb.fig_error_curves(res), width="stretch")
    last = int(res.steps[-1])
    every = int(res.meta["config"]["record_every"])
    step = st.slider("Step to show", 0, last, last, step=every, key=f"show_step_{last}_{every}") if last > 0 else 0
    left, right = st.columns(2)
    left.plotly_chart(sb.fig_function(res, step), width="stretch")
    right.plotly_chart(sb.fig_loss(res), width="stretch")
    if len(res.n_regions) and res.meta["config"]["encoding"] == "none":
        st.plotly_chart(sb.fig_regions(res, step), width="stretch")
    c1, c2, c3 = st.columns(3)
    rho = res.spearman
    c1.metric("Spearman(half-amplitude step, k)", "n/a" if rho is None else f"{rho:.2f}")
    reached = sum(h is not None for h in res.half_amplitude_step)
    c2.metric("Frequencies at half amplitude", f"{reached} of {len(res.frequencies)}")
    c3.metric("Training seconds", f"{res.meta['seconds']:.1f}")
    conf = res.meta["config"]
    st.caption(sines_line(conf["n"], conf["frequencies"], conf["amplitudes"]))


try:
    if cfg["steps"] <= LIVE_ABOVE:
        with st.spinner(f"Training {cfg['steps']:,} steps..."):
            result = run_spectral(cfg)
        show(result)
    else:
        job = live_job(cfg)

        @st.fragment(run_every=0.5 if job.running else None)
        def live():
            status = job.poll()
            if job.running:
                st.progress(min(1.0, status.done / cfg["steps"]),
                            text=f"Training: step {status.done:,} of {cfg['steps']:,}")
                if st.button("Stop", key="stop"):
                    job.cancel()
                    job.join(5.0)
                    st.rerun()
                if status.partial:
                    st.plotly_chart(sb.fig_heatmap(status.partial[0]), width="stretch", key="live_heatmap")
            elif not st.session_state.get("live_done"):
                st.session_state["live_done"] = True
                st.rerun()

        st.session_state["live_done"] = not job.running
        live()
        status = job.poll()
        if status.error:
            st.error(f"{status.error}. Change the settings and try again.")
        elif status.finished:
            result = status.result
            if result is not None and len(result.steps):
                if not result.meta["complete"]:
                    st.info(f"Stopped at step {result.meta['steps_done']:,}.")
                show(result)
except (LandscapeError, Cancelled) as e:
    st.error(f"{e}. Change the settings and try again.")

st.divider()
st.subheader("Neural Redshift: random networks before training")
st.caption("The function of a randomly initialised network on [-1, 1)^2 and its spectrum "
           "(Teney et al. 2024). ReLU networks stay low-frequency at any depth or weight scale; "
           "tanh and sine networks turn high-frequency as the weights grow.")
c1, c2, c3, c4 = st.columns(4)
act = c1.selectbox("Activation", list(rs.ACTIVATIONS), key="rs_activation", bind="query-params")
depth = c2.slider("Depth (hidden layers)", 1, 16, 4, key="rs_depth", bind="query-params")
scale = c3.slider("Init scale (weight std multiplier)", 0.25, 8.0, 1.0, step=0.25, key="rs_scale",
                  bind="query-params")
rs_seed = c4.number_input("Network seed", 0, 10_000, 0, key="rs_seed", bind="query-params")
try:
    rcfg = rs.RedshiftConfig(activation=act, depth=int(depth), init_scale=float(scale), seed=int(rs_seed))
    rres = run_redshift(rcfg.to_dict())
    left, right = st.columns(2)
    left.plotly_chart(rs.fig_redshift_image(rres), width="stretch")
    right.plotly_chart(rs.fig_redshift_spectrum(rres), width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(rs.fig_redshift_radial(rres), width="stretch")
    right.plotly_chart(rs.fig_redshift_sweep(run_sweep(float(scale), rcfg.bias_std)), width="stretch")
    st.metric("Mean frequency (cycles per unit input)", f"{rres.mean_frequency:.2f}")
except LandscapeError as e:
    st.error(f"{e}. Change the settings and try again.")
