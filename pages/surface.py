"""Loss-surface page: pick a preset, compute a filter-normalized or PCA surface, look."""

import streamlit as st

from landscape import plots, presets, surface
from landscape.errors import Cancelled, LandscapeError

st.title("Loss surface")
st.caption("Filter-normalized loss surfaces (Li et al. 2018) around a trained model.")

@st.cache_resource(show_spinner="Training the preset (cached after the first time)...")
def trained(name: str):
    return presets.train_preset(name)

@st.cache_data(show_spinner=False, max_entries=16)
def compute_surface(name: str, cfg: dict):
    run = trained(name)
    config = surface.SurfaceConfig(**cfg)
    return surface.compute(run.model, run.data, config, trajectory=run.trajectory)

with st.sidebar:
    name = st.selectbox("Preset", list(presets.PRESETS), key="preset")
    st.caption(presets.get(name).description)
    kind = st.radio("Directions", ["random", "pca"], horizontal=True, key="directions")
    n = st.slider("Grid size", 5, 61, 21, step=2, key="grid")
    span = st.slider("Range (+/-)", 0.1, 3.0, 1.0, step=0.1, key="range",
                     disabled=kind == "pca")
    seed = st.number_input("Direction seed", 0, 10_000, 0, key="seed")
    log = st.toggle("Log scale", key="log")

cfg = {"directions": kind, "grid": (n, n), "seed": int(seed),
       "xrange": (-span, span) if kind == "random" else (-1.0, 1.0),
       "samples": presets.get(name).surface_samples,
       "loss": presets.get(name).train.loss}
try:
    with st.spinner("Computing the surface..."):
        res = compute_surface(name, cfg)
except (LandscapeError, Cancelled) as e:
    st.error(f"{e}. Change the settings and try again.")
    st.stop()

left, right = st.columns(2)
left.plotly_chart(plots.contour(res, log=log), width="stretch")
right.plotly_chart(plots.surface3d(res, log=log), width="stretch")
st.caption(plots.recipe_text(res))
c1, c2, c3 = st.columns(3)
c1.metric("Loss at the model", f"{res.meta['loss_center']:.4g}")
c2.metric("Lowest loss on the grid", f"{res.meta['loss_min']:.4g}")
c3.metric("Seconds", f"{res.meta['seconds']:.2f}")
