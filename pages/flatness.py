"""Flatness page: small vs large batches and SGD vs SAM, their 1-D interpolations and 2-D
surfaces on one colour scale, with the top Hessian eigenvalue of each minimum. Computed in a
background job with progress and Cancel; results kept per recipe for the session."""

import dataclasses
import json

import streamlit as st

from landscape.lessons import flatness as fl
from landscape.lessons.flatness import figures as ff
from landscape.lessons.kit import run_to_end
from ui import jobs as ui_jobs
from ui.export import figure_exports
from ui.nav import page_header
from ui.steps import render as lesson_steps

lecture = page_header(
    "Flat and sharp minima",
    "The same network trained with small and large batches, with SGD and with SAM: large "
    "batches settle in sharper minima (Keskar et al. 2017), SAM looks for flat ones (Foret et "
    "al. 2021). Sharpness is the top Hessian eigenvalue; the pictures use filter-normalized "
    "directions so the four minima are comparable (Li et al. 2018).")
lesson_steps("flatness")

with st.expander("Setup", expanded=not lecture):
    c1, c2, c3 = st.columns(3)
    name = c1.selectbox("Recipe", list(fl.PRESETS), key="fl_preset", bind="query-params")
    c1.caption(fl.PRESET_NOTES[name])
    base = fl.PRESETS[name]
    steps = c1.select_slider("Updates per run", [250, 500, 1000, 2000], value=base.steps,
                             key="fl_steps", bind="query-params")
    small = c2.select_slider("Small batch", [8, 16, 32, 64], value=base.small_batch, key="fl_small",
                             bind="query-params")
    large = c2.select_slider("Large batch", ["256", "512", "1024", "full"], value="full",
                             key="fl_large", bind="query-params")
    use_sam = c3.toggle("Also train with SAM", value=base.sam, key="fl_sam", bind="query-params")
    rho = c3.select_slider("SAM radius ρ", [0.02, 0.05, 0.1, 0.2], value=base.rho, key="fl_rho",
                           bind="query-params", disabled=not use_sam)
    seed = c3.number_input("Seed (init, batch order)", 0, 1000, base.seed, key="fl_seed",
                           bind="query-params")
    log = c1.toggle("Log loss scale", value=True, key="fl_log", bind="query-params")

cfg = dataclasses.replace(base, steps=int(steps), small_batch=int(small),
                          large_batch=None if large == "full" else int(large), sam=bool(use_sam),
                          rho=float(rho), seed=int(seed))


def run_flatness(cfg: dict, progress=None, cancel=None):
    run = fl.FlatnessRun(fl.FlatnessConfig.from_dict(cfg))

    def on_event(ev):
        if progress is not None and (ev.phase == "measure" or ev.step % 20 == 0):  # cheap per step
            # the runs so far travel with the progress, so the page draws them while they train
            progress(ev.step, ev.total, f"{ev.run}: {'training' if ev.phase == 'train' else 'done'}",
                     run.result())

    return run_to_end(run, cancel, on_event).result()


def preview(status) -> None:
    """While the runs train: their batch losses so far (the surfaces come at the end)."""
    part = status.partial[1] if len(status.partial) > 1 else None
    if part is not None and part.train_loss.size:
        st.plotly_chart(ff.fig_training(part), width="stretch", key="fl_preview")


res = ui_jobs.keyed_result("flatness", json.dumps(cfg.to_dict(), sort_keys=True), run_flatness,
                           cfg.to_dict(), preview=preview)
if res is None:
    st.stop()

cols = st.columns(len(res.names))
for col, n, lam, loss in zip(cols, res.names, res.top_eig, res.final_loss):
    col.metric(f"λmax, {n}", f"{lam:.3g}", help=f"final full-data loss {loss:.3g} nats")
if len(res.top_eig) >= 2:
    st.caption(f"Large-batch SGD is {res.sharpness_ratio:.2f}x sharper than small-batch SGD.")

fig = ff.fig_surfaces(res, log=log, cols=len(res.surfaces) if lecture else 2)
st.plotly_chart(fig, width="stretch", key="fl_surfaces")
figure_exports(fig, "flatness-surfaces")
left, right = st.columns(2)
left.plotly_chart(ff.fig_interpolation(res, log=log), width="stretch", key="fl_interp")
right.plotly_chart(ff.fig_slices(res, log=log), width="stretch", key="fl_slices")
left, right = st.columns(2)
left.plotly_chart(ff.fig_eigenvalues(res), width="stretch", key="fl_eigs")
right.plotly_chart(ff.fig_training(res), width="stretch", key="fl_training")
st.caption(f"{res.meta['seconds']:.1f} s of compute · MLP 64-{'-'.join(map(str, cfg.widths))}-10 on "
           f"the 1,797 digits · lr {cfg.lr} · directions: {res.meta['directions']}")
