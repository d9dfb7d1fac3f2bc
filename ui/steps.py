"""Guided lesson steps: each lesson page walks through three to five steps, each saying what to
look at, the one control to change and what should happen.

    ui.steps.render("eos")   # one line on the lesson page, after its title

The box shows "Step k of n", the step's text and Back / Next: at the top of the sidebar, or, in
the presenter view (no sidebar), in a bar floating above the page title, the step's text one
click away, so the page's figures stay where they are. The step is the page's ``?step=k``
query parameter, so a link (or a slide) can open a lesson at its third step; Back and Next
change that parameter and keep every other one (the page's settings are bound to the URL).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

PARAM = "step"


@dataclass(frozen=True)
class Step:
    title: str
    look: str  # what to look at
    change: str  # the one control to change (or "nothing" for a first look)
    expect: str  # what should happen


LESSON_STEPS: dict[str, list[Step]] = {
    "eos": [
        Step("Why the limit is 2/η",
             "the parabola figure: gradient descent on f(x) = λ x² / 2, one dot per step.",
             "raise the parabola's **Learning rate η** until η λ passes 2 (with λ = 4: above 0.5).",
             "the iterates jump from side to side ever further: a direction whose curvature "
             "exceeds 2/η is unstable."),
        Step("Sharpness climbs to the edge",
             "the loss and sharpness figure of the network (recipe eos-tanh-fast, GD).",
             "press **Start**.",
             "the sharpness (top Hessian eigenvalue) rises while the loss falls, until it "
             "reaches the threshold line 2/η."),
        Step("It hovers at the edge",
             "the second half of the run and the metric **Sharpness / threshold, second half**.",
             "raise **Steps** and press Start again.",
             "the ratio stays near 1: the sharpness hovers at 2/η instead of growing past it, "
             "and the loss keeps falling, though no longer at every step."),
        Step("A smaller step, a higher edge",
             "the threshold line and the **Stability threshold** metric.",
             "halve the network's **Learning rate η** (0.4 to 0.2), raise **Steps** to 1,500 and "
             "press Start.",
             "the threshold 2/η doubles; the sharpness climbs higher and later, and stops at the "
             "new edge."),
        Step("Momentum moves the edge",
             "the **Stability threshold** metric and the threshold line.",
             "choose the **eos-momentum** recipe (heavy ball, β = 0.8, η = 0.2) and press Start.",
             "the edge becomes (2 + 2β)/η = 18 instead of 2/η = 10, and the sharpness settles at "
             "that higher threshold."),
    ],
    "spectral": [
        Step("Low frequencies first",
             "the heat map: each row one frequency k, its learned share of the target amplitude "
             "over training.",
             "nothing yet (raw x input, equal amplitudes).",
             "the low rows turn bright first, the high rows last; the Spearman correlation "
             "between k and the step at half amplitude is close to 1."),
        Step("The fit early on",
             "the network's function against the target.",
             "move **Step to show** back to an early step.",
             "a smooth curve that follows the slow sines and misses the fast wiggles."),
        Step("Fourier features remove the lag",
             "the heat map and the Spearman metric.",
             "set **Input encoding** to Fourier features.",
             "every frequency is learned at about the same time: the lag between low and high "
             "frequencies is gone and the correlation drops towards 0."),
        Step("The scale of the features",
             "the heat map and the fitted function.",
             "lower the **Fourier-feature sigma** to 1.",
             "features that are too smooth bring the lag back: the high frequencies are again "
             "learned last, or not at all."),
        Step("Order by frequency, not by size",
             "the heat map with raw x input.",
             "set **Input encoding** to raw x and **Amplitudes** to rising.",
             "the high frequencies now carry the largest amplitudes, yet they are still learned "
             "last."),
    ],
    "opposing": [
        Step("Two groups in anti-phase",
             "the overview: the training loss and the losses of the two groups found.",
             "nothing yet (recipe opposing-planted).",
             "the overall loss stays low while the two groups' losses swing in anti-phase: when "
             "one rises the other falls (the group-loss correlation is negative)."),
        Step("Found without labels",
             "**Precision@m** and the gallery of the examples whose loss moved most.",
             "change the **Run seed**.",
             "the examples found are again mostly the planted 3s and 8s: the detector never "
             "saw the labels or the patch."),
        Step("The control",
             "the same metrics and the overview.",
             "set **Recipe** to opposing-control (the same examples, a 16x weaker patch).",
             "the weak patch is fitted without oscillating: precision falls to about 0 and "
             "the planted groups swing barely more than random subsets."),
        Step("The edge drives the swings",
             "the **Sharpness / (2/lr)** metric and the overview.",
             "lower the **Step size** to 0.1 (recipe opposing-planted).",
             "the sharpness stays well below 2/lr, far from the edge of stability, and the "
             "anti-phase swings shrink."),
    ],
    "flatness": [
        Step("Large batches, sharp minima",
             "the λmax metrics: the top Hessian eigenvalue at each trained minimum.",
             "nothing yet (recipe lesson).",
             "large-batch SGD ends in a minimum about two to three times sharper than "
             "small-batch SGD (Keskar et al. 2017)."),
        Step("The pictures agree",
             "the four loss surfaces on one colour scale (filter-normalized directions).",
             "turn **Log loss scale** off.",
             "the large-batch SGD basin is the narrowest; the small-batch and SAM basins are "
             "wider."),
        Step("SAM looks for flat minima",
             "the λmax of each SAM run against the SGD run with the same batch.",
             "raise the **SAM radius ρ** to 0.1.",
             "each SAM minimum is flatter than its SGD twin, most of all at full batch (at ρ = 0.05 "
             "the top eigenvalue about halves there); a larger ρ asks for a low loss over a wider "
             "neighbourhood (Foret et al. 2021)."),
        Step("Narrow the gap",
             "the caption 'Large-batch SGD is ... x sharper'.",
             "set **Large batch** from full to 256.",
             "a smaller large batch ends in a flatter minimum: the gap between the two narrows."),
    ],
}


def current(lesson: str) -> int:
    """The step shown (1-based): the ``?step=`` parameter, clamped to the lesson's steps."""
    n = len(LESSON_STEPS[lesson])
    try:
        k = int(st.query_params.get(PARAM, 1))
    except (TypeError, ValueError):
        k = 1
    return min(max(k, 1), n)


def _go(k: int) -> None:
    st.query_params[PARAM] = str(k)


# The box's style (the app puts it in the page's one style element: no extra space in the page).
CSS = """<style>
    .st-key-lesson_steps p {font-size: 0.9rem; line-height: 1.35; margin-bottom: 0.15rem;}
    .st-key-lesson_steps_bar {position: fixed !important; top: 0.35rem; left: 4.5rem; right: 17.5rem;
        z-index: 1000005; background: rgba(255, 255, 255, 0.97); border: 1px solid #d6d8de;
        border-radius: 0.5rem; padding: 0.2rem 0.6rem !important; width: auto !important;}
    .st-key-lesson_steps_bar [data-testid="stMarkdownContainer"] {margin-bottom: 0 !important;}
    .st-key-lesson_steps_bar p {font-size: 1rem; margin: 0 !important; line-height: 2rem;
        white-space: nowrap; overflow: hidden; text-overflow: ellipsis;}
    .st-key-lesson_steps_bar button {min-height: 2rem; padding: 0.1rem 0.6rem;}
    </style>"""


def slot():
    """Where the step box goes: the slot the app keeps at the top of the sidebar (the sidebar
    itself when the page runs without it)."""
    return st.session_state.get("_lesson_slot") or st.sidebar


def _buttons(back, nxt, k: int, n: int, suffix: str = "") -> None:
    back.button("Back", key=f"step_back{suffix}", icon=":material/arrow_back:", disabled=k <= 1,
                on_click=_go, args=(k - 1,), width="stretch")
    nxt.button("Next", key=f"step_next{suffix}", icon=":material/arrow_forward:", disabled=k >= n,
               on_click=_go, args=(k + 1,), width="stretch", type="primary")


def render(lesson: str) -> None:
    """Draw the lesson's step box (nothing for a page without steps): in the sidebar, or, in
    the presenter view (no sidebar), as a bar floating above the page title with the step's
    text one click away, so the page's figures do not move."""
    from ui.settings import lecture

    steps = LESSON_STEPS.get(lesson)
    if not steps:
        return
    k, n = current(lesson), len(steps)
    s = steps[k - 1]
    text = f"**Look at** {s.look}  \n**Change** {s.change}  \n**Expect** {s.expect}"
    if lecture():
        bar = st.container(key="lesson_steps_bar")
        head, more, back, nxt = bar.columns([6.5, 1.4, 1.1, 1.1], vertical_alignment="center")
        head.markdown(f"**Step {k} of {n}: {s.title}**")
        with more.popover("Details", icon=":material/school:", width="stretch"):
            st.markdown(text)
        _buttons(back, nxt, k, n)
        return
    box = slot().container(border=True, key="lesson_steps")
    box.markdown(f"**Step {k} of {n}: {s.title}**  \n{text}")
    back, nxt = box.columns(2)
    _buttons(back, nxt, k, n)
