"""Figure export buttons: interactive HTML (self-contained, works offline) and PNG (rendered
by kaleido with the system Chromium, on request, since it takes a few seconds)."""

from __future__ import annotations

import io

import streamlit as st


def figure_exports(fig, stem: str, html_col=None, png_col=None) -> None:
    """An HTML download and a "Render .png" button (then its download) for ``fig``."""
    html_col = html_col or st
    png_col = png_col or st
    html_col.download_button("Figure .html", lambda: fig.to_html(include_plotlyjs=True),
                             f"{stem}.html", key=f"dl_html_{stem}", on_click="ignore",
                             icon=":material/download:")
    png_key = f"png_{stem}"
    if png_col.button("Render .png", key=f"btn_{png_key}", icon=":material/image:",
                      help="Rendered by kaleido with the system Chromium (a few seconds)"):
        try:
            with st.spinner("Rendering the PNG..."):
                buf = io.BytesIO()
                fig.write_image(buf, format="png", width=1200, height=900)
            st.session_state[png_key] = buf.getvalue()
        except Exception as e:  # kaleido needs a Chromium on the machine
            st.error(f"PNG export failed ({type(e).__name__}: {str(e)[:120]}). Install "
                     "Chromium (e.g. apt-get install chromium) or use the HTML export.")
    if st.session_state.get(png_key):
        png_col.download_button("Download .png", st.session_state[png_key], f"{stem}.png",
                                key=f"dl_{png_key}", on_click="ignore",
                                icon=":material/download:")
