"""Inspect a checkpoint: upload a model (and data, and a second model), then look at its
loss surface, its Hessian spectrum and its worst-fit examples. Uploads never run code."""

import hashlib
import json
from pathlib import Path

import numpy as np
import streamlit as st

from landscape import surface
from landscape.core import data
from landscape.core.errors import LandscapeError
from landscape.hessian import NOTES as hs_notes
from landscape.hessian import OPERATOR_NAMES, OPERATORS
from landscape.hessian import figures as hessian_plots
from landscape.hessian import report as spectrum
from landscape.io import uploads
from landscape.surface import figures as plots
from ui import jobs as ui_jobs
from ui.export import figure_exports
from ui.nav import ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
EXAMPLE_MODEL = EXAMPLES / "digits-cnn-bn.pt2"
BUILTIN = ["digits", "moons", "circles", "spirals", "gaussians"]

st.title("Inspect a checkpoint")
st.caption("Upload a `.pt2` (torch.export, any architecture), a `.safetensors` written by this "
           "app or the CLI, or a `.pt`/`.pth` state_dict of a zoo model. Files are read "
           "without running any code from them.")

c1, c2 = st.columns([3, 2])
up_model = c1.file_uploader("Model", type=list(uploads.MODEL_TYPES), key="up_model",
                            max_upload_size=uploads.MAX_MODEL_MB)
if c2.button("Try the example (CNN with BatchNorm, torch.export)", key="use_example",
             icon=":material/science:"):
    st.session_state["inspect_example"] = True
use_example = up_model is None and st.session_state.get("inspect_example", False)
arch = None
if up_model is not None and Path(up_model.name).suffix.lower() in (".pt", ".pth"):
    arch = c1.text_input("Architecture (zoo spec JSON) for this state_dict", key="up_arch",
                         placeholder='{"name": "mlp", "args": {"in_dim": 64, "out_dim": 10}}')
with st.expander("Data and a second model", expanded=up_model is not None):
    d1, d2 = st.columns(2)
    data_kind = d1.radio("Data", ["Built-in", "Upload"], horizontal=True, key="data_kind", bind="query-params")
    builtin = d1.selectbox("Built-in data", BUILTIN, key="data_builtin", bind="query-params",
                           disabled=data_kind != "Built-in")
    up_data = d1.file_uploader("Data (.npz with X, y; .csv with the label last)",
                               type=list(uploads.DATA_TYPES), key="up_data",
                               max_upload_size=uploads.MAX_DATA_MB,
                               disabled=data_kind != "Upload")
    up_model_b = d2.file_uploader("Second model (for interpolation)",
                                  type=list(uploads.MODEL_TYPES), key="up_model_b",
                                  max_upload_size=uploads.MAX_MODEL_MB)

if up_model is None and not use_example:
    st.info("Upload a model, or try the example.")
    st.stop()


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


FIELD = "Architecture (zoo spec JSON)"


def in_page_terms(message: str) -> str:
    """The loader's message with its command-line flag named as this page's field."""
    return (message.replace("pass a zoo spec with --arch", f'fill the "{FIELD}" field with a zoo spec')
            .replace("--arch is not a JSON zoo spec", f'the "{FIELD}" field is not a JSON zoo spec')
            .replace("--arch", f'the "{FIELD}" field'))


@st.cache_resource(show_spinner="Reading the model...", max_entries=8)
def read_model(raw: bytes, name: str, arch_text: str | None, _key: str):
    return uploads.load_model_bytes(raw, name, arch=arch_text or None)


@st.cache_data(show_spinner=False, max_entries=8)
def read_data(raw: bytes | None, name: str):
    return data.load_builtin(name) if raw is None else uploads.load_data_bytes(raw, name)


try:
    if up_model is not None:
        raw_model, model_name = up_model.getvalue(), up_model.name
    else:
        raw_model, model_name = EXAMPLE_MODEL.read_bytes(), EXAMPLE_MODEL.name
    model_key = digest(raw_model) + (arch or "")
    loaded = read_model(raw_model, model_name, arch, model_key)
    if data_kind == "Upload":
        if up_data is None:
            st.info("Upload a data file, or choose built-in data.")
            st.stop()
        d = read_data(up_data.getvalue(), up_data.name)
    else:
        d = read_data(None, builtin)
    n_out = uploads.check_compatible(loaded.model, d, f"{model_name}")
    model_b = None
    if up_model_b is not None:
        raw_b = up_model_b.getvalue()
        model_b = read_model(raw_b, up_model_b.name, arch, digest(raw_b) + (arch or "")).model
        uploads.check_compatible(model_b, d, up_model_b.name)
        if sum(p.numel() for p in model_b.parameters()) != loaded.meta["n_params"]:
            raise LandscapeError("the second model has a different number of parameters; "
                                 "interpolation needs the same architecture")
except LandscapeError as e:
    st.error(f"{in_page_terms(str(e))}. Nothing was computed; fix the file or the choice above.")
    st.stop()

loss_kind = "cross_entropy" if d.is_classification else "mse"
st.success(f"{model_name}: {loaded.format}, {loaded.meta['n_params']:,} parameters, "
           f"{n_out} outputs; data: {d.name}, {d.n} examples of shape {list(d.input_shape)}.")
analysis = st.segmented_control("Analysis", ["Surface", "Hessian", "Per-example losses"],
                                default="Surface", key="analysis", bind="query-params")
ident = json.dumps([model_key, d.fingerprint(), model_b is not None])

if analysis == "Surface":
    s1, s2, s3 = st.columns(3)
    choices = ["random", "hessian"] + (["interpolate"] if model_b is not None else [])
    kind = s1.radio("Directions", choices, horizontal=True, key="i_dirs", bind="query-params")
    n = s2.select_slider("Grid", [11, 15, 21, 31, 41], value=21, key="i_grid", bind="query-params")
    samples = s3.select_slider("Examples", ["200", "500", "all"], value="500", key="i_samples", bind="query-params")
    cfg = {"directions": kind, "grid": (n,) if kind == "interpolate" else (n, n),
           "samples": None if samples == "all" else int(samples), "loss": loss_kind,
           "seed": int(st.session_state.get("seed", 0)),
           "xrange": (-1.0, 1.0) if kind != "hessian" else (-0.5, 0.5)}

    def compute(cfg, progress=None, cancel=None):
        hvecs = None
        if cfg["directions"] == "hessian":
            hvecs = spectrum.top_directions(loaded.model, d, loss_kind, cfg["samples"])
        return surface.compute(loaded.model, d, surface.SurfaceConfig(**cfg), model_b=model_b,
                               hessian_vectors=hvecs, progress=progress, cancel=cancel)

    res = ui_jobs.keyed_result("inspect_surface", ident + json.dumps(cfg), compute, cfg)
    if res is None:
        st.stop()
    fig = plots.slice1d(res) if res.dims == 1 else plots.contour(res, log=True)
    st.plotly_chart(fig, width="stretch", key="inspect_surface_fig")
    st.caption(plots.recipe_text(res))
    e1, e2 = st.columns(2)
    figure_exports(fig, f"{Path(model_name).stem}-surface", e1, e2)
    m1, m2, m3 = st.columns(3)
    m1.metric("Loss at the model", f"{res.meta['loss_center']:.4g}")
    m2.metric("Lowest loss on the grid", f"{res.meta['loss_min']:.4g}")
    if "barrier_height" in res.meta:
        m3.metric("Barrier height (A to B)", f"{res.meta['barrier_height']:.4g}")
elif analysis == "Hessian":
    h1, h2 = st.columns(2)
    samples = h1.select_slider("Examples", ["200", "500", "all"], value="500", key="ih_samples", bind="query-params")
    operator = h2.radio("Operator", list(OPERATORS), horizontal=True, key="ih_operator",
                        bind="query-params",
                        help="For cross-entropy and the squared loss the true Fisher equals "
                             "the Gauss-Newton matrix G; the empirical Fisher uses the "
                             "observed labels and can differ badly (Kunstner et al. 2019).")
    hcfg = {"samples": None if samples == "all" else int(samples)}
    if operator != "hessian":  # the Hessian keeps its old job key
        hcfg["operator"] = operator

    def hessian_report(hcfg, progress=None, cancel=None):
        return spectrum.compute_report(loaded.model, d, loss_kind, samples=hcfg["samples"],
                                       progress=progress, cancel=cancel,
                                       operator=hcfg.get("operator", "hessian"))

    rep = ui_jobs.keyed_result("inspect_hessian", ident + json.dumps(hcfg), hessian_report, hcfg)
    if rep is None:
        st.stop()
    m1, m2, m3 = st.columns(3)
    m1.metric("λ1 (sharpness)", f"{rep.eig.eigenvalues[0]:.4g}")
    m2.metric("Trace", f"{rep.trace.trace:.4g} ± {2 * rep.trace.stderr:.2g}")
    m3.metric("Outliers", str(rep.split.n_outliers) if rep.split else "-")
    if operator != "hessian":
        st.caption(f"Operator: {OPERATOR_NAMES[operator]}. For cross-entropy and the squared "
                   "loss the true Fisher equals the Gauss-Newton matrix G.")
    if rep.flatness is not None:
        fl = rep.flatness
        f1, f2 = st.columns(2)
        f1.metric("Adaptive sharpness λ1(|θ|A|θ|)", f"{fl.adaptive_sharpness:.4g}",
                  help=hs_notes["adaptive_sharpness"])
        f2.metric(f"Basin width at loss + {fl.delta}", f"{fl.basin_width:.4g}",
                  help=hs_notes["basin_width"])
        st.caption(" ".join(f"{k.replace('_', ' ').capitalize()}: {v}"
                            for k, v in hs_notes.items()))
    st.plotly_chart(hessian_plots.top_eigenvalues(rep), width="stretch", key="ih_top")
    st.plotly_chart(hessian_plots.density(rep), width="stretch", key="ih_density")
else:
    pe = uploads.per_example(loaded.model, d, loss_kind)
    m1, m2 = st.columns(2)
    m1.metric("Mean loss", f"{pe.loss.mean():.4g}")
    if d.is_classification:
        m2.metric("Accuracy", f"{100 * np.mean(pe.correct):.1f} %")
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=pe.loss, nbinsx=60))
    fig.update_layout(title="Per-example loss at the model", xaxis_title="loss (nats)"
                      if d.is_classification else "squared loss", yaxis_title="examples",
                      yaxis_type="log")
    st.plotly_chart(fig, width="stretch", key="pe_hist")
    top = pe.order[:12]
    st.subheader("The 12 worst-fit examples")
    if d.input_shape == (64,):
        imgs = [np.clip(d.X[i].numpy().reshape(8, 8), 0, None) for i in top]
        imgs = [im / im.max() if im.max() > 0 else im for im in imgs]
        st.image(imgs, width=72, caption=[f"#{i} y={int(d.y[i])} → {int(pe.prediction[i])}, "
                                          f"loss {pe.loss[i]:.2f}" for i in top])
    else:
        st.dataframe([{"index": int(i), "label": d.y[i].tolist(), "prediction":
                       pe.prediction[i].tolist(), "loss": float(pe.loss[i])} for i in top],
                     hide_index=True)
