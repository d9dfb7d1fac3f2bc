"""landscape: the Streamlit entry point. Navigation over the pages in pages/."""

import streamlit as st

st.set_page_config(page_title="landscape", page_icon="assets/logo.svg", layout="wide")

nav = st.navigation([
    st.Page("pages/surface.py", title="Loss surface", icon=":material/landscape:", default=True),
])
nav.run()
