"""Open a surface file: a ``.h5``/``.npz`` written here, by the CLI, or by the original
loss-landscape code (tomgoldstein/loss-landscape), uploaded or by path; optionally that
code's PCA projection file drawn as the trajectory. Files are read with h5py/numpy only."""

from pathlib import Path

import streamlit as st

from landscape.cli.show import figure
from landscape.core.errors import LandscapeError
from landscape.io import surfaces as files
from landscape.surface import result as surface_file
from ui.export import figure_exports
from ui.nav import ensure_app

ensure_app()  # before anything is drawn: see ui/nav.py

st.title("Open a surface file")
st.caption("A `.h5` or `.npz` surface written by this app, by `landscape surface --out`, or by "
           "the paper's own code (`plot_surface.py`, any grid: its arrays are read in the order "
           "it fills them). Add its PCA projection file (`proj_xcoord`, `proj_ycoord`) to draw "
           "the training path over it. Nothing in a file is run.")

c1, c2 = st.columns(2)
source = c1.segmented_control("Surface file from", ["Upload", "Path"], default="Upload",
                              key="source", bind="query-params")
up = path_text = None
if source == "Path":
    path_text = c1.text_input("Surface file path", key="path", bind="query-params",
                              placeholder="/data/resnet56_sgd.h5_[-1.0,1.0,51]x[-1.0,1.0,51].h5")
else:
    up = c1.file_uploader("Surface file (.h5, .npz)", type=["h5", "npz"], key="up_surface",
                          max_upload_size=files.MAX_UPLOAD_MB)
proj_up = c2.file_uploader("PCA projection file (optional, .h5)", type=["h5"], key="up_proj",
                           max_upload_size=files.MAX_UPLOAD_MB)
proj_text = c2.text_input("or its path", key="proj", bind="query-params",
                          placeholder="/data/..._proj_cos.h5")
view = c2.segmented_control("View", ["Contour", "3-D", "Slice"], default="Contour", key="view",
                            bind="query-params")
log = c2.toggle("Log scale", key="log", bind="query-params")

if not path_text and up is None:
    st.info("Upload a surface file, or choose Path and give one on this machine.")
    st.stop()


def read():
    """The surface (with its trajectory), or one error naming the field it came from."""
    field = "Surface file path" if path_text else "Surface file"
    try:
        if path_text:
            res = surface_file.load(Path(path_text).expanduser())
        else:
            res = surface_file.load_bytes(up.getvalue(), up.name)
    except LandscapeError as e:
        raise LandscapeError(f"{field}: {e}") from None
    field = "PCA projection file" if proj_up is not None else "PCA projection file path"
    if proj_up is None and not proj_text:
        return res
    if res.dims == 1:
        raise LandscapeError(f"{field}: a trajectory draws over a 2-D surface; this file is 1-D")
    try:
        if proj_up is not None:
            res.attach_projection(proj_up.getvalue(), proj_up.name)
        else:
            res.attach_projection(Path(proj_text).expanduser())
    except LandscapeError as e:
        raise LandscapeError(f"{field}: {e}") from None
    return res


def h5_bytes(result) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return surface_file.save(result, Path(tmp) / "surface.h5").read_bytes()


try:
    res = read()
except LandscapeError as e:
    st.error(str(e))
    st.stop()

name = Path(path_text).name if path_text else up.name
info = surface_file.summary(res)
kind = {"Contour": "contour", "3-D": "3d", "Slice": "slice"}[view or "Contour"]
fig = figure(res, kind, log, title=f"{name}: loss surface" if kind != "slice"
             else f"{name}: loss along x" + ("" if res.dims == 1 else " (the row y = 0)"))
st.plotly_chart(fig, width="stretch", key="main_fig")
at = ", ".join(f"{v:.3g}" for v in info["min_at"])
st.caption(f"{'a 1-D slice' if res.dims == 1 else 'grid ' + ' x '.join(map(str, info['grid']))} | "
           f"written by {info['origin']} | values laid out {info['layout']} | accuracies read as "
           f"{info['acc_units']} ({info['acc_units_from']})"
           + (f" | {info['unfilled_points']} points never computed (shown blank)"
              if info["unfilled_points"] else "")
           + (f" | trajectory: {info['trajectory_points']} points" if info["trajectory_points"] else ""))
m1, m2, m3, m4 = st.columns(4)
m1.metric("Grid", " x ".join(map(str, info["grid"])))
m2.metric("Lowest loss on the grid", f"{info['min_loss']:.4g}")
m3.metric("Where", f"({at})")
m4.metric("Accuracy there", "n/a" if info["acc_at_min_percent"] is None
          else f"{info['acc_at_min_percent']:.1f}%")
with st.expander("What the file holds"):
    st.json(info)
d1, d2, d3 = st.columns(3)
d1.download_button("As .h5 (the paper's code reads it)",
                   lambda: h5_bytes(res), f"{Path(name).stem}-landscape.h5", key="dl_h5",
                   on_click="ignore", icon=":material/download:")


figure_exports(fig, Path(name).stem, d2, d3)
