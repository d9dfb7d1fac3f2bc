"""The one figure style of the app and the CLI, defined once.

Every figure builder is wrapped in :func:`styled`, which calls :func:`apply` on the figure it
returns: axis titles at least 16 px in a dark colour, tick labels at least 13 px, log axes
labelled with powers of ten (never SI prefixes such as "100µ"), Greek names written as
symbols (λ, η), and titles that wrap onto a second line instead of being clipped.
Plotting only: nothing here computes.

In the presenter view (a lecture on a projector) everything is larger: axis titles at least
19 px, tick labels at least 15 px, titles 18 px and wrapped sooner. Whether a figure is built
for the presenter view is asked of :func:`presenter`: inside ``with presenter_view(True):``
that answer holds; otherwise a source installed by :func:`set_presenter_source` is asked (the
app installs one that reads the page's ``?lecture=1``); without one the answer is no.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import textwrap

DARK = "#1f2430"
AXIS_TITLE_PX = 16
TICK_PX = 13
TITLE_PX = 17
TITLE_CHARS = 46  # a title longer than this wraps: a half-width figure at 1280 px holds about 48
SUBTITLE_CHARS = 40  # subplot titles share the width
# The presenter view: larger type for a projector, titles wrapped to the same width in pixels.
PRESENTER_AXIS_TITLE_PX = 19
PRESENTER_TICK_PX = 15
PRESENTER_TITLE_PX = 18
PRESENTER_TITLE_CHARS = 44
PRESENTER_SUBTITLE_CHARS = 37

_forced: contextvars.ContextVar = contextvars.ContextVar("presenter_view", default=None)
_source = None  # a function answering whether the figure being built is for the presenter view


def set_presenter_source(fn) -> None:
    """Install ``fn() -> bool``, asked by :func:`presenter` for every figure (None removes it)."""
    global _source
    _source = fn


def presenter() -> bool:
    """Whether figures built now are for the presenter view."""
    forced = _forced.get()
    if forced is not None:
        return bool(forced)
    if _source is None:
        return False
    try:
        return bool(_source())
    except Exception:  # a source that cannot answer (no page running) means no
        return False


@contextlib.contextmanager
def presenter_view(on: bool = True):
    """Build the figures inside this block for the presenter view (``on``) or not."""
    token = _forced.set(bool(on))
    try:
        yield
    finally:
        _forced.reset(token)


def sizes(on: bool | None = None) -> dict:
    """The type sizes in px (``axis_title``, ``tick``, ``title``, ``colorbar_title``,
    ``annotation``) and wrap widths in characters (``title_chars``, ``subtitle_chars``) of the
    normal view, or of the presenter view when ``on`` (default: :func:`presenter`)."""
    if on is None:
        on = presenter()
    if on:
        return {"axis_title": PRESENTER_AXIS_TITLE_PX, "tick": PRESENTER_TICK_PX,
                "title": PRESENTER_TITLE_PX, "colorbar_title": 16, "annotation": 15,
                "title_chars": PRESENTER_TITLE_CHARS, "subtitle_chars": PRESENTER_SUBTITLE_CHARS,
                "title_line_px": 25}
    return {"axis_title": AXIS_TITLE_PX, "tick": TICK_PX, "title": TITLE_PX, "colorbar_title": 14,
            "annotation": 14, "title_chars": TITLE_CHARS, "subtitle_chars": SUBTITLE_CHARS,
            "title_line_px": 24}

# Plain-text Greek as symbols: whole words only ("lambda", "eta", "lam"), never inside another
# word ("beta" stays "beta" only if it is not a known name: it becomes β as well).
_GREEK = [(r"\blambda(?=_|\b)", "λ"), (r"\blam\b", "λ"),
          (r"\beta\b", "η"), (r"\bbeta1\b", "β₁"), (r"\bbeta\b", "β"), (r"\brho\b", "ρ"),
          (r"\^2\b", "²")]


def symbols(text: str | None) -> str | None:
    """``text`` with Greek names as symbols (``2/eta`` → ``2/η``, ``lambda x^2`` → ``λ x²``)."""
    if not text or not isinstance(text, str):
        return text
    for pattern, sym in _GREEK:
        text = re.sub(pattern, sym, text)
    return text


def wrap(text: str | None, width: int = TITLE_CHARS) -> str | None:
    """Break a long plain title into lines of at most ``width`` characters (``<br>`` between
    them), cutting at phrase boundaries (before " (", after ": ", "; ", ", ") where it can and
    at spaces otherwise; never clipped. A title already holding ``<br>`` is left alone."""
    if not text or not isinstance(text, str) or "<br>" in text or len(text) <= width:
        return text
    pieces = [p for p in re.split(r"(?<=: )|(?<=; )|(?<=, )|(?= \()", text) if p]
    words = []
    for p in pieces:
        words.extend([p] if len(p) <= width else textwrap.wrap(p, width, break_long_words=False))
    lines = [""]
    for w in words:
        if lines[-1] and len(lines[-1]) + len(w) > width:
            lines.append(w.lstrip())
        else:
            lines[-1] += w
    return "<br>".join(line.strip() for line in lines if line.strip())


def _axes(layout):
    for name in dir(layout):
        if re.fullmatch(r"(x|y)axis\d*", name) or name.startswith("coloraxis"):
            yield name, getattr(layout, name)


def apply(fig, presenter_view: bool | None = None):
    """Apply the app's style to ``fig`` in place and return it; ``presenter_view``: the larger
    presenter sizes (default: :func:`presenter`)."""
    z = sizes(presenter_view)
    tick, axis_title = z["tick"], z["axis_title"]
    lay = fig.layout
    fig.update_layout(font={"color": DARK, "size": tick}, title_font={"size": z["title"], "color": DARK})
    title = lay.title.text
    if title:
        text = wrap(symbols(title), z["title_chars"])
        n_lines = (text or "").count("<br>") + 1
        fig.update_layout(title_text=text)
        top = lay.margin.t if lay.margin.t is not None else 0
        subtitles = any(a.yref == "paper" and (a.y or 0) >= 0.99 for a in lay.annotations or ())
        fig.update_layout(margin={"t": max(top, 36 + z["title_line_px"] * n_lines + (26 if subtitles else 0))})
    for name, ax in _axes(lay):
        if name.startswith("coloraxis"):
            if ax.colorbar is not None:
                ax.colorbar.update(tickfont={"size": tick, "color": DARK})
            continue
        ax.update(tickfont={"size": max(tick, ax.tickfont.size or 0), "color": DARK},
                  title_font={"size": max(axis_title, ax.title.font.size or 0), "color": DARK})
        if ax.title.text:
            ax.title.text = symbols(ax.title.text)
        if ax.type == "log":
            ax.update(exponentformat="power", showexponent="all")
            if ax.dtick is None:
                ax.update(dtick=1)  # one tick per decade: minor ticks overlap at 13 px
        else:
            ax.update(exponentformat="power")
    if lay.scene is not None:
        for a in ("xaxis", "yaxis", "zaxis"):
            sa = getattr(lay.scene, a)
            sa.update(tickfont={"size": tick, "color": DARK}, title_font={"size": axis_title, "color": DARK})
            if sa.title.text:
                sa.title.text = symbols(sa.title.text)
    for ann in lay.annotations or ():  # subplot titles and labels
        if ann.text and not ann.text.startswith("<"):
            ann.text = wrap(symbols(ann.text), z["subtitle_chars"])
        # a builder's smaller size (tiles) stays
        ann.font = {"size": ann.font.size or z["annotation"], "color": DARK}
    for tr in fig.data:
        cb = getattr(tr, "colorbar", None)
        if cb is not None:
            cb.update(tickfont={"size": tick, "color": DARK}, exponentformat="power")
            if cb.title is not None and cb.title.text:
                cb.title.update(text=symbols(cb.title.text), font={"size": z["colorbar_title"], "color": DARK})
        if getattr(tr, "name", None):
            tr.name = symbols(tr.name)
    fig.update_layout(legend={"font": {"size": tick, "color": DARK}})
    return fig


def styled(builder):
    """Decorator for a figure builder: style the figure it returns."""
    @functools.wraps(builder)
    def build(*args, **kwargs):
        fig = builder(*args, **kwargs)
        return apply(fig) if fig is not None and hasattr(fig, "layout") else fig
    return build
