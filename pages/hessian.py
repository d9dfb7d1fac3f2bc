"""Hessian spectrum: top eigenvalues, trace, density, the bulk/outlier split, per layer,
and how the spectrum changed during training. Two background jobs with progress and Cancel:
the top eigenvalues and the outlier split first (drawn as soon as they are in), then the
trace, density and the rest. Both are kept by their settings in the server's shared cache,
so a revisit or a second tab with the same settings is answered at once."""

import copy
import json

import streamlit as st
import torch

from landscape import presets
from landscape.hessian import OPERATOR_NAMES, OPERATORS
from landscape.hessian import figures as hp
from landscape.hessian import report as spectrum
from landscape.hessian.flatness import NOTES
from ui import jobs as ui_jobs
from ui.about import data_line
from ui.export import figure_exports
from ui.nav import page_header

lecture = page_header(
    "Hessian spectrum",
    "Curvature of the training loss: the top eigenvalues (Lanczos) and the outliers whose "
    "eigenvectors lie in the span of the class-mean gradients (Papyan), then the trace, the "
    "density and flatness readouts; for H, the Gauss-Newton matrix G or the empirical Fisher.")

#: The page's default: the digits MLP stopped early, whose C - 1 = 9 outliers stand clear.
DEFAULT = "digits-mlp-papyan"
names = [DEFAULT, *(n for n in presets.PRESETS if n != DEFAULT)]
with st.expander("Setup: model, what to compute, budget", expanded=False):
    c1, c2, c3 = st.columns(3)
    name = c1.selectbox("Preset", names, key="h_preset", bind="query-params")
    samples = c1.select_slider("Examples", ["200", "500", "1000", "all"], value="1000",
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
    c4, c5, c6 = st.columns(3)
    operator = c4.radio("Operator", list(OPERATORS), horizontal=True, key="h_operator",
                        bind="query-params",
                        disabled=backend == "pyhessian",
                        help="For cross-entropy and the squared loss the true Fisher equals "
                             "the Gauss-Newton matrix G; the empirical Fisher uses the "
                             "observed labels and can differ badly (Kunstner et al. 2019).")
    decompose = c5.toggle("Why C outliers? (H = G + R)", value=False, key="h_decompose",
                          bind="query-params", disabled=backend == "pyhessian")
    point = c6.radio("Point", ["trained", "initialisation"], horizontal=True, key="h_point",
                     bind="query-params", disabled=backend == "pyhessian",
                     help="the trained model, or the first snapshot of its training run")

seed = int(st.session_state.get("seed", 0))
cfg = {"preset": name, "samples": None if samples == "all" else int(samples),
       "backend": backend, "trace": trace_kind, "probes": int(probes), "density": dens,
       "layers": layers, "during": during, "seed": seed}
if backend != "pyhessian":  # added settings (older links keep their keys)
    cfg.update(operator=operator, decompose=decompose, point=point)
pyh = backend == "pyhessian"
# The jobs' fingerprints: the model and data (the preset's recipe hash) and the settings; the
# first job depends on these settings only, the second on all of them.
TOP = ("preset", "samples", "backend", "seed", "operator", "point")
recipe = {"recipe": presets.get(name).key()}
key_top = json.dumps({k: cfg[k] for k in TOP if k in cfg} | (cfg if pyh else {}) | recipe,
                     sort_keys=True)
key = json.dumps(cfg | recipe, sort_keys=True)


def model_for(cfg, cancel=None):
    """The preset's trained model (read from the disk cache after the first time), or the
    first snapshot of its run; with its run and loss."""
    run = presets.train_preset(cfg["preset"], cancel=cancel)
    model = run.model
    if cfg.get("point") == "initialisation" and run.trajectory is not None:
        model = copy.deepcopy(run.model)
        theta = torch.as_tensor(run.trajectory[1][0])
        torch.nn.utils.vector_to_parameters(
            theta.to(next(model.parameters()).dtype),
            [p for p in model.parameters() if p.requires_grad])
    return model, run, presets.get(cfg["preset"]).train.loss


def run_top(cfg, progress=None, cancel=None):
    """First job: train (or read) the preset, then the top eigenpairs and the outlier split
    (with PyHessian: its whole report, which has nothing more to add)."""
    progress(0, 1, "training the preset (cached after the first time)")
    model, run, loss = model_for(cfg, cancel)
    if cfg["backend"] == "pyhessian":
        return spectrum.compute_report(model, run.data, loss, backend="pyhessian",
                                       samples=cfg["samples"], seed=cfg["seed"],
                                       progress=progress, cancel=cancel)
    return spectrum.compute_top(model, run.data, loss, samples=cfg["samples"], seed=cfg["seed"],
                                progress=progress, cancel=cancel,
                                operator=cfg.get("operator", "hessian"))


def run_rest(cfg, top, progress=None, cancel=None):
    """Second job: the trace, density, per-layer spectra, flatness readouts, H = G + R and the
    spectra during training, added to the first job's report."""
    progress(0, 1, "reading the model")
    model, run, loss = model_for(cfg, cancel)
    rep = spectrum.complete_report(
        top, model, run.data, loss, trace=cfg["trace"], probes=cfg["probes"],
        density=cfg["density"], layers=cfg["layers"], samples=cfg["samples"], seed=cfg["seed"],
        progress=progress, cancel=cancel, decomposition=bool(cfg.get("decompose")))
    during = None
    if cfg["during"] and run.trajectory is not None:
        during = spectrum.spectrum_over_training(
            run.model, run.data, loss, run.trajectory, samples=cfg["samples"], seed=cfg["seed"],
            progress=progress, cancel=cancel, operator=cfg.get("operator", "hessian"))
    return rep, during


top = ui_jobs.keyed_result("hessian", key_top, run_top, cfg)
if top is None:
    st.stop()

TALL = 420  # the two figures under the title, whole at 1280x720
left, right = st.columns(2)
left.plotly_chart(hp.top_eigenvalues(top).update_layout(height=TALL), width="stretch",
                  key="h_top")
if top.split is not None:
    right.plotly_chart(hp.overlaps(top).update_layout(height=TALL), width="stretch", key="h_rho")
elif top.trace is not None:
    right.plotly_chart(hp.trace(top).update_layout(height=TALL), width="stretch",
                       key="h_trace_fig")
n_text = "all" if samples == "all" else f"a fixed random {int(samples):,}"
st.caption(f"{data_line(presets.get(name).data)} The curvature is measured on {n_text} of "
           "them, in float64.")

if pyh:
    rep, during = top, None
else:
    done = ui_jobs.keyed_result("hessian_rest", key, run_rest, cfg, top)
    if done is None:  # the trace and density are on their way (or stopped): the verdict now
        if top.split is not None:
            st.info(top.split.message)
        st.stop()
    rep, during = done


def bulk_ratio(split) -> str:
    r = split.meta.get("edge_ratio") if split is not None else None
    return "-" if r is None or r != r else f"{r:.2f}"


m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("λ1 (sharpness)", f"{rep.eig.eigenvalues[0]:.4g}")
m2.metric("Outliers", str(rep.split.n_outliers) if rep.split is not None else "-",
          help="Eigenvalues above the bulk whose eigenvectors lie in the span of the "
               "class-mean gradients (Papyan)")
m3.metric("Last outlier / top of the bulk", bulk_ratio(rep.split),
          help="λk / λk+1 for k outliers: how far the outliers stand above the bulk")
m4.metric("Trace", f"{rep.trace.trace:.4g} ± {2 * rep.trace.stderr:.2g}" if rep.trace else "-")
m5.metric("HVPs", f"{rep.meta['hvps']}")
if rep.split is not None:
    st.info(rep.split.message)
op_name = OPERATOR_NAMES[rep.meta.get("operator", "hessian")]
if rep.meta.get("operator", "hessian") != "hessian":
    st.info(f"Operator: {op_name}. For cross-entropy and the squared loss the true Fisher "
            "equals the Gauss-Newton matrix G; the empirical Fisher (per-example gradients at "
            "the observed labels) is not a curvature matrix and its spectrum can differ badly "
            "from G's (Kunstner et al. 2019).")
if rep.density is not None:
    st.plotly_chart(hp.density(rep), width="stretch", key="h_density_fig")
if rep.flatness is not None:
    fl = rep.flatness
    st.subheader("Flatness readouts")
    f1, f2, f3, f4 = st.columns(4)
    f1.metric("Top eigenvalue λ1", f"{fl.top_eigenvalue:.4g}", help=NOTES["top_eigenvalue"])
    f1.caption(NOTES["top_eigenvalue"])
    f2.metric("Trace", "-" if fl.trace is None else f"{fl.trace:.4g}", help=NOTES["trace"])
    f2.caption(NOTES["trace"])
    f3.metric("Adaptive sharpness λ1(|θ|A|θ|)", f"{fl.adaptive_sharpness:.4g}",
              help=NOTES["adaptive_sharpness"])
    f3.caption(NOTES["adaptive_sharpness"])
    f4.metric(f"Basin width at loss + {fl.delta}", f"{fl.basin_width:.4g}",
              help=NOTES["basin_width"])
    f4.caption(NOTES["basin_width"])
if rep.layers is not None:
    st.plotly_chart(hp.per_layer(rep), width="stretch", key="h_layers_fig")
if during is not None:
    st.plotly_chart(hp.over_training(during), width="stretch", key="h_during_fig")
if rep.flatness is not None:
    st.plotly_chart(hp.flatness_slice(rep.flatness), width="stretch", key="h_flat_fig")
if rep.decompose is not None:
    dec = rep.decompose
    st.subheader("Why C outliers?")
    st.caption("H = G + R: the Gauss-Newton matrix G (positive semi-definite) plus a residual R "
               "weighted by the loss's slope in the outputs. After training R is small and "
               "feeds the bulk and the negative eigenvalues; the outliers are G's, and G's "
               "come from its class means (Sagun et al. 2017; Papyan 2019, 2020).")
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Largest |eigenvalue| of R", f"{dec.residual_top_eigenvalue:.4g}",
              help=f"signed {dec.residual_top_signed:.4g}; residual "
                   f"{dec.residual_residual:.1e}")
    d2.metric("λ1(H) / λ1(G)", f"{dec.top_h[0]:.3g} / {dec.top_g[0]:.3g}")
    d3.metric(f"Top-{dec.overlap_k} overlap of H and G", f"{dec.overlap:.3f}",
              help="||U_H U_Gᵀ||²_F / k: 1 when the top subspaces agree")
    d4.metric("|R| / λ1(H)", f"{dec.residual_top_eigenvalue / max(dec.top_h[0], 1e-300):.3f}")
    st.plotly_chart(hp.decomposition(dec), width="stretch", key="h_decompose_fig")
    if dec.papyan:
        st.plotly_chart(hp.papyan_parts(dec), width="stretch", key="h_papyan_fig")
        st.caption("Class means: rank ≤ C, the C outliers. Cross-class: rank ≤ C(C−1), the "
                   "mini-outliers. Within-class: the bulk. Ranks measured on the examples "
                   "named in the title.")
e1, e2 = st.columns(2)
figure_exports(hp.density(rep) if rep.density is not None else hp.top_eigenvalues(rep),
               f"{name}-hessian", e1, e2)
st.caption(f"{rep.meta['n_params']:,} parameters, {rep.meta['n_examples']} examples, "
           f"{rep.meta['dtype']}, backend {rep.meta['backend']}, operator "
           f"{rep.meta.get('operator', 'hessian')}, point {cfg.get('point', 'trained')}, "
           f"{rep.meta['hvps']} HVPs, "
           f"{rep.meta['seconds']:.2f} s.")
