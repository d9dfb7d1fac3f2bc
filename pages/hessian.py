"""Hessian spectrum: top eigenvalues, trace, density, the bulk/outlier split, per layer,
and how the spectrum changed during training. Computed in a background job with progress
and Cancel; results kept per recipe for the session."""

import json

import streamlit as st

from landscape import presets
from landscape.hessian import figures as hp
from landscape.hessian import report as spectrum
from ui import jobs as ui_jobs
from ui.export import figure_exports
from ui.nav import ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

lecture = st.query_params.get("lecture") == "1"
st.title("Hessian spectrum")
st.caption("Curvature of the full-batch training loss: top eigenvalues by Lanczos, trace by "
           "Hutch++, density by stochastic Lanczos quadrature, and the outliers that line up "
           "with the class-mean gradients (Papyan).")

names = list(presets.PRESETS)
with st.expander("Setup", expanded=not lecture):
    c1, c2, c3 = st.columns(3)
    name = c1.selectbox("Preset", names, key="h_preset", bind="query-params")
    samples = c1.select_slider("Examples", ["200", "500", "1000", "all"], value="500",
                               key="h_samples", bind="query-params")
    backend = c2.radio("Backend", list(spectrum.BACKENDS), horizontal=True, key="h_backend",
                       bind="query-params",
                       help="landscape: Lanczos + Hutch++; pyhessian: power iteration + "
                            "early-stopping Hutchinson (the reference)")
    trace_kind = c2.selectbox("Trace estimator", ["hutchpp", "hutchinson"], key="h_trace",
                              bind="query-params", disabled=backend == "pyhessian")
    probes = c2.select_slider("Trace probes (HVPs)", [30, 60, 100, 200], value=60,
                              key="h_probes", bind="query-params")
    dens = c3.toggle("Density (SLQ)", value=True, key="h_density", bind="query-params",
                     disabled=backend == "pyhessian")
    layers = c3.toggle("Per layer", value=False, key="h_layers", bind="query-params",
                       disabled=backend == "pyhessian")
    during = c3.toggle("During training (init, middle, end)", value=False, key="h_during",
                       bind="query-params", disabled=backend == "pyhessian")

seed = int(st.session_state.get("seed", 0))
cfg = {"preset": name, "samples": None if samples == "all" else int(samples),
       "backend": backend, "trace": trace_kind, "probes": int(probes), "density": dens,
       "layers": layers, "during": during, "seed": seed}
key = json.dumps(cfg, sort_keys=True)


def run_report(cfg, progress=None, cancel=None):
    progress(0, 1, "training the preset (cached after the first time)")
    run = presets.train_preset(cfg["preset"], cancel=cancel)
    loss = presets.get(cfg["preset"]).train.loss
    pyh = cfg["backend"] == "pyhessian"
    rep = spectrum.compute_report(
        run.model, run.data, loss, backend=cfg["backend"], trace=cfg["trace"],
        probes=cfg["probes"], density=cfg["density"] and not pyh,
        layers=cfg["layers"] and not pyh, samples=cfg["samples"], seed=cfg["seed"],
        progress=progress, cancel=cancel)
    during = None
    if cfg["during"] and not pyh and run.trajectory is not None:
        during = spectrum.spectrum_over_training(
            run.model, run.data, loss, run.trajectory, samples=cfg["samples"], seed=cfg["seed"],
            progress=progress, cancel=cancel)
    return rep, during


result = ui_jobs.keyed_result("hessian", key, run_report, cfg)
if result is None:
    st.stop()
rep, during = result

m1, m2, m3, m4 = st.columns(4)
m1.metric("λ1 (sharpness)", f"{rep.eig.eigenvalues[0]:.4g}")
m2.metric("Trace", f"{rep.trace.trace:.4g} ± {2 * rep.trace.stderr:.2g}" if rep.trace else "-")
m3.metric("Outliers", str(rep.split.n_outliers) if rep.split is not None else "-")
m4.metric("HVPs", f"{rep.meta['hvps']}")
if rep.split is not None:
    st.info(rep.split.message)
left, right = st.columns(2)
left.plotly_chart(hp.top_eigenvalues(rep), width="stretch", key="h_top")
if rep.split is not None:
    right.plotly_chart(hp.overlaps(rep), width="stretch", key="h_rho")
elif rep.trace is not None:
    right.plotly_chart(hp.trace(rep), width="stretch", key="h_trace_fig")
if rep.density is not None:
    st.plotly_chart(hp.density(rep), width="stretch", key="h_density_fig")
if rep.layers is not None:
    st.plotly_chart(hp.per_layer(rep), width="stretch", key="h_layers_fig")
if during is not None:
    st.plotly_chart(hp.over_training(during), width="stretch", key="h_during_fig")
e1, e2 = st.columns(2)
figure_exports(hp.density(rep) if rep.density is not None else hp.top_eigenvalues(rep),
               f"{name}-hessian", e1, e2)
st.caption(f"{rep.meta['n_params']:,} parameters, {rep.meta['n_examples']} examples, "
           f"{rep.meta['dtype']}, backend {rep.meta['backend']}, {rep.meta['hvps']} HVPs, "
           f"{rep.meta['seconds']:.2f} s.")
