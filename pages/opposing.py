"""Opposing-signals page: examples whose losses swing in anti-phase at the edge of stability
(Rosenfeld & Risteski 2023), found label-free on digits with a planted feature and checked
against matched random controls. The run is the one background job (progress and Cancel);
finished runs are kept per settings for every session."""

import collections
import dataclasses
import json

import streamlit as st

import ui.jobs as ui_jobs
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons import opposing as opp
from ui import steps as lesson_steps
from ui.nav import compute_settings, ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

THREADS, DEVICE = compute_settings()  # the sidebar's threads and device

st.title("Opposing signals")
st.caption("At the edge of stability, groups of examples that share a strong feature but carry "
           "different labels swing in anti-phase while the overall loss stays low (Rosenfeld & Risteski "
           "2023). Data: UCI handwritten digits (8x8 images, each pixel standardized, then divided by 8) "
           "with a 2x2 patch planted on 10% of the 3s and 8s, so the answer is known.")
lesson_steps.render("opposing")  # the lesson's guided steps (?step=k)


FINISHED = 8  # finished runs kept for all sessions


@st.cache_resource(show_spinner=False)
def finished_runs() -> collections.OrderedDict:
    """Finished results by settings, shared by the sessions (the last ``FINISHED``)."""
    return collections.OrderedDict()


def run_opposing(cfg: dict, progress=None, cancel=None):
    """The run for ``cfg`` in the background job: its result, or ``("cancelled" | "error",
    message)`` (returned, not raised, so the page keeps the settings and does not restart)."""
    try:
        return opp.train(opp.OpposingConfig.from_dict(cfg), cancel=cancel, progress=progress)
    except Cancelled as e:
        return "cancelled", str(e)
    except LandscapeError as e:
        return "error", str(e)


with st.sidebar:
    name = st.selectbox("Recipe", list(opp.PRESETS), key="op_preset", bind="query-params")
    st.caption(opp.PRESET_NOTES[name])
    base = opp.PRESETS[name]
    steps = st.slider("Steps", 200, 3000, base.steps, step=100, key="op_steps", bind="query-params")
    window = st.slider("Statistics window (last steps)", 50, 1000, base.window, step=50, key="op_window",
                       bind="query-params")
    lr_factor = st.slider("Step size (x 2 / sharpness at init)", 0.1, 2.5, float(base.lr_factor), step=0.05,
                          key="op_lr_factor", bind="query-params")
    alpha = st.slider("Planted feature strength alpha (0 = none)", 0.0, 32.0, float(base.alpha), step=0.5,
                      key="op_alpha", bind="query-params")
    seed = st.number_input("Run seed (plant, init, controls)", 0, 10_000, 0, key="op_seed",
                           bind="query-params")
    retrain = st.checkbox("Also remove the detected examples and retrain (doubles the time)",
                          key="op_retrain")

cfg = dataclasses.replace(base, steps=int(steps), window=int(window), lr_factor=float(lr_factor),
                          alpha=float(alpha), seed=int(seed), retrain=bool(retrain),
                          device=DEVICE or base.device).to_dict()


def _num(v, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def show(res: opp.OpposingResult) -> None:
    m = res.metrics
    planted = len(res.planted) > 0
    T = res.steps_done
    chart = st.empty()  # the main figure first, its cursor right under it
    cursor = st.slider("Cursor step", 0, T - 1, T - 1, key=f"op_cursor_{T}")
    chart.plotly_chart(opp.fig_overview(res, cursor), width="stretch")
    c = st.columns(6)  # in one row under the main figure
    c[0].metric("Precision@m (planted found)", _num(m.get("precision_at_m")),
                help=f"Fraction of the top {len(res.planted)} movers that are planted; chance "
                     f"{_num(m.get('chance_precision'), '.3f')}" if planted else "Nothing planted")
    c[1].metric("Opposing groups", f"{m.get('label_a')}s vs {m.get('label_b')}s",
                help=f"Purity {_num(m.get('purity'))}: the share of the detected set in these two labels")
    c[2].metric("Amplitude ratio (planted groups)" if planted else "Amplitude ratio (detected)",
                _num(m.get("planted_amplitude_ratio" if planted else "amplitude_ratio"), ".1f"),
                help="Oscillation amplitude over the median of matched random subsets (same classes, "
                     "same sizes). The detected groups' ratio is inflated by selection (about 10x "
                     f"even in the control); theirs here: {_num(m.get('amplitude_ratio'), '.1f')}")
    c[3].metric("Vote share of the feature", _num(m.get("vote_share")),
                help="The planted feature's least-squares share of the planted examples' "
                     "class-3-vs-8 logit swing")
    c[4].metric("Sharpness / (2/lr)", _num(m.get("sharpness_ratio")),
                help=f"Mean over the window; lr = {res.lr:.3g}, 2/lr = {2 / res.lr:.3g}")
    c[5].metric("Group-loss correlation", _num(m.get("group_loss_corr")),
                help=f"Matched random pairs: median {_num(m.get('control_corr_median'))}. "
                     "Anti-correlation alone is not specific")
    st.plotly_chart(opp.fig_gallery(res, cursor), width="stretch")
    st.plotly_chart(opp.fig_zoom(res, cursor), width="stretch")
    if len(res.group_a):
        st.plotly_chart(opp.fig_members(res), width="stretch")
        st.plotly_chart(opp.fig_controls(res), width="stretch")
    if planted:
        st.plotly_chart(opp.fig_vote(res), width="stretch")
    if len(res.retrain_loss):
        st.plotly_chart(opp.fig_retrain(res), width="stretch")
    st.caption(f"{res.meta['data']}; {res.meta['n_params']:,} parameters; lr {res.lr:.4g} "
               f"(λ_0 = {res.meta['lambda_0']:.3g}); {res.meta['hvps']:,} Hessian-vector products; "
               f"{res.meta['seconds']:.1f} s.")


if base.data == "toy":
    st.info("Illustration only: the two-layer linear toy has no stable anti-phase regime. "
            "It converges up to about 2.1 x 2/lambda_0 and diverges from 2.2 x on, so nothing "
            "oscillates here; compare the digits recipes.")



def live_preview(status) -> None:
    """The run so far while it trains: the overall loss and the sharpness against 2/lr."""
    live = status.partial[1] if len(status.partial) > 1 else None
    if isinstance(live, dict) and len(live.get("loss", ())) > 1:
        n, fig = st.session_state.get("op_live_fig", (None, None))
        if n != len(live["loss"]):  # rebuilt only when the run has moved on
            fig = opp.fig_progress(live)
            st.session_state["op_live_fig"] = (len(live["loss"]), fig)
        st.plotly_chart(fig, width="stretch", key="op_live")


def result_for(cfg: dict):
    """The finished result for ``cfg``, or None after drawing the progress panel (with Cancel)
    or the message of a cancelled or failed run."""
    try:  # a setting that cannot run: one clear error, no job
        opp.OpposingConfig.from_dict(cfg).validate()
    except LandscapeError as e:
        st.error(f"{e}. Change the settings and try again.")
        return None
    key = json.dumps(cfg, sort_keys=True)
    done = finished_runs()
    if key in done:
        done.move_to_end(key)
        return done[key]
    attempt = st.session_state.get("op_attempt", 0)  # "Run again" after a cancel starts anew
    out = ui_jobs.keyed_result("opposing", json.dumps([key, attempt]), run_opposing, cfg, threads=THREADS,
                               preview=live_preview)
    if isinstance(out, opp.OpposingResult):
        done[key] = out
        while len(done) > FINISHED:
            done.popitem(last=False)
        return out
    if out is not None:
        kind, message = out
        if kind == "cancelled":
            st.warning(f"Run cancelled ({message} of {cfg['steps']:,}). Your settings are kept: press Run again, "
                       "or change a setting to start a new run.", icon=":material/cancel:")
            st.button("Run again", key="op_run_again", icon=":material/replay:",
                      on_click=lambda: st.session_state.update(op_attempt=attempt + 1))
        else:
            st.error(f"{message}. Change the settings and try again.")
    return None


result = result_for(cfg)
if result is not None:
    show(result)
