"""The one figure style of the app and the CLI, defined once.

Every figure builder is wrapped in :func:`styled`, which calls :func:`apply` on the figure it
returns: axis titles at least 16 px in a dark colour, tick labels at least 13 px, log axes
labelled with powers of ten (never SI prefixes such as "100µ"), Greek names written as
symbols (λ, η), and titles that wrap onto a second line instead of being clipped.
Plotting only: nothing here computes.
"""

from __future__ import annotations

import functools
import re
import textwrap

DARK = "#1f2430"
AXIS_TITLE_PX = 16
TICK_PX = 13
TITLE_PX = 17
TITLE_CHARS = 46  # a title longer than this wraps: a half-width figure at 1280 px holds about 48
SUBTITLE_CHARS = 40  # subplot titles share the width

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


def apply(fig):
    """Apply the app's style to ``fig`` in place and return it."""
    lay = fig.layout
    fig.update_layout(font={"color": DARK, "size": TICK_PX}, title_font={"size": TITLE_PX, "color": DARK})
    title = lay.title.text
    if title:
        n_lines = (wrap(symbols(title)) or "").count("<br>") + 1
        fig.update_layout(title_text=wrap(symbols(title)))
        top = lay.margin.t if lay.margin.t is not None else 0
        subtitles = any(a.yref == "paper" and (a.y or 0) >= 0.99 for a in lay.annotations or ())
        fig.update_layout(margin={"t": max(top, 36 + 24 * n_lines + (26 if subtitles else 0))})
    for name, ax in _axes(lay):
        if name.startswith("coloraxis"):
            if ax.colorbar is not None:
                ax.colorbar.update(tickfont={"size": TICK_PX, "color": DARK})
            continue
        ax.update(tickfont={"size": max(TICK_PX, ax.tickfont.size or 0), "color": DARK},
                  title_font={"size": max(AXIS_TITLE_PX, ax.title.font.size or 0), "color": DARK})
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
            sa.update(tickfont={"size": TICK_PX, "color": DARK}, title_font={"size": AXIS_TITLE_PX, "color": DARK})
            if sa.title.text:
                sa.title.text = symbols(sa.title.text)
    for ann in lay.annotations or ():  # subplot titles and labels
        if ann.text and not ann.text.startswith("<"):
            ann.text = wrap(symbols(ann.text), SUBTITLE_CHARS)
        ann.font = {"size": ann.font.size or 14, "color": DARK}  # a builder's smaller size (tiles) stays
    for tr in fig.data:
        cb = getattr(tr, "colorbar", None)
        if cb is not None:
            cb.update(tickfont={"size": TICK_PX, "color": DARK}, exponentformat="power")
            if cb.title is not None and cb.title.text:
                cb.title.update(text=symbols(cb.title.text), font={"size": 14, "color": DARK})
        if getattr(tr, "name", None):
            tr.name = symbols(tr.name)
    fig.update_layout(legend={"font": {"size": TICK_PX, "color": DARK}})
    return fig


def styled(builder):
    """Decorator for a figure builder: style the figure it returns."""
    @functools.wraps(builder)
    def build(*args, **kwargs):
        fig = builder(*args, **kwargs)
        return apply(fig) if fig is not None and hasattr(fig, "layout") else fig
    return build
