"""Home: what the tool shows, in three lines, and a gallery of one-click lessons."""

import streamlit as st

from ui.nav import LESSONS, ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

st.title("landscape")
st.markdown(
    "**See where a neural network trains.** Loss surfaces around a model, drawn along "
    "filter-normalized random directions or the principal directions of its own path.  \n"
    "**Watch training live**: the trajectory moves across the landscape as the model learns, "
    "on a laptop CPU in seconds.  \n"
    "**Compare architectures**: the same network with and without skip connections, on one "
    "colour scale.")

st.subheader("Lessons")
cols = st.columns(3)
for i, lesson in enumerate(LESSONS):
    with cols[i % 3].container(border=True):
        st.markdown(f"**{lesson.title}**")
        st.caption(lesson.text)
        st.page_link(lesson.file, label="Open", icon=":material/arrow_forward:",
                     query_params={k: str(v) for k, v in lesson.params.items()})
