"""landscape: the Streamlit entry point.

Navigation over the pages in pages/, the sidebar shared by every page (device, CPU
threads, seed; all bound to the URL so a copied link reproduces the view), start-up
warm-up, and the live run's lifecycle (paused when the user leaves its page).
"""

import streamlit as st
import torch

from landscape.core.device import available_devices, cpu_count, warm_up

st.set_page_config(page_title="landscape", page_icon="assets/logo.svg", layout="wide")


@st.cache_resource(show_spinner=False)
def startup() -> float:
    return warm_up()


startup()

PAGES = {
    "home": st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    "live": st.Page("pages/live.py", title="Live training", icon=":material/play_circle:",
                    url_path="live"),
    "surface": st.Page("pages/surface.py", title="Loss surface", icon=":material/landscape:",
                       url_path="surface"),
    "hessian": st.Page("pages/hessian.py", title="Hessian spectrum", icon=":material/insights:",
                       url_path="hessian"),
    "inspect": st.Page("pages/inspect.py", title="Inspect a checkpoint",
                       icon=":material/upload_file:", url_path="inspect"),
    "eos": st.Page("pages/eos.py", title="Edge of stability", icon=":material/show_chart:",
                   url_path="eos"),
    "opposing": st.Page("pages/opposing.py", title="Opposing signals",
                        icon=":material/swap_vert:", url_path="opposing"),
    "spectral": st.Page("pages/spectral_bias.py", title="Spectral bias",
                        icon=":material/graphic_eq:", url_path="spectral-bias"),
}
nav = st.navigation(list(PAGES.values()))

lecture = st.query_params.get("lecture") == "1"
found = available_devices()
with st.sidebar:
    st.selectbox("Device", ["auto", "cuda", "cpu"], key="device", bind="query-params",
                 help="auto picks the GPU when there is one")
    st.caption(f"Found: {', '.join(found)}")
    st.number_input("CPU threads", 1, cpu_count(), 1, key="threads", bind="query-params",
                    help="One thread is fastest for small models on a few cores")
    st.number_input("Seed", 0, 1_000_000, 0, key="seed", bind="query-params",
                    help="Seeds the model, the batch order and the random directions")
    st.toggle("Lecture link (hide the controls)", key="lecture_toggle",
              value=lecture, on_change=lambda: st.query_params.update(
                  lecture="1" if st.session_state.lecture_toggle else "0"))
torch.set_num_threads(int(st.session_state.get("threads", 1)))
if st.session_state.get("device") == "cuda" and "cuda" not in found:
    st.sidebar.warning("No GPU here: computing on the CPU.")

if lecture:
    st.markdown("""<style>
        section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
        [data-testid="stExpandSidebarButton"] {display: none;}
        h1 {font-size: 3rem !important;}
        [data-testid="stMetricValue"] {font-size: 2.6rem;}
        </style>""", unsafe_allow_html=True)

# The live run pauses whenever its page is not the one shown.
if nav.url_path != "live":
    holder = st.session_state.get("live_holder")
    if holder and holder.get("run") is not None:
        holder["run"].pause()

nav.run()
