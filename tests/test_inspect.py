"""Uploads: the inspect page and the upload helpers refuse bad files before computing."""

import io
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from landscape.core import data, models
from landscape.core.errors import LandscapeError
from landscape.io import uploads

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "digits-cnn-bn.pt2"
MLP3 = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 3, "widths": [8]}}


def page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=240)
    at.switch_page("pages/inspect.py")
    at.run()
    return at


def upload(at: AppTest, key: str, name: str, raw: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, raw, "application/octet-stream"))
    return at.run()


def wait_for_chart(at: AppTest, key: str) -> AppTest:
    for _ in range(160):
        at.run()
        assert not at.exception
        if any(c.key == key for c in at.get("plotly_chart")):
            return at
        time.sleep(0.25)
    raise AssertionError(f"{key} never appeared")


class Evil:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"0.weight": Evil(str(marker))}, buf)
    return buf.getvalue()


def test_example_checkpoint_shows_its_surface_and_centre_loss():
    at = page()
    at.button(key="use_example").click().run()
    wait_for_chart(at, "inspect_surface_fig")
    assert "pt2" in at.success[0].value
    centre = float(at.metric[0].value)
    # The exported CNN's loss at the surface centre equals the original model's loss.
    ep = torch.export.load(str(EXAMPLE))
    d = data.load_builtin("digits").subset(500, 0)
    with torch.no_grad():
        expect = torch.nn.functional.cross_entropy(ep.module()(d.X), d.y).item()
    assert abs(centre - expect) < 1e-3 * expect + 1e-6


def test_malicious_pickle_upload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    at = page()
    upload(at, "up_model", "model.pt", evil_pickle(marker))
    at.text_input(key="up_arch").set_value(json.dumps(MLP3)).run()
    assert not at.exception
    assert at.error and "refused" in at.error[0].value
    assert not marker.exists()
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("name, raw, needle", [
    ("empty.pt2", b"", "empty"),
    ("cut.pt2", EXAMPLE.read_bytes()[:4000], "not a torch.export archive"),
    ("noise.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage", "not a readable"),
])
def test_empty_and_truncated_uploads_give_one_line_errors(name, raw, needle):
    at = page()
    upload(at, "up_model", name, raw)
    assert not at.exception
    assert at.error and needle in at.error[0].value
    assert "\n" not in at.error[0].value.split(". Nothing")[0]


def test_three_outputs_for_ten_classes_is_refused_before_computing():
    m = models.build(MLP3, seed=0)
    from landscape.io import checkpoints as checkpoint

    raw = checkpoint.to_bytes(m, data="digits")
    at = page()
    upload(at, "up_model", "three.safetensors", raw)
    assert not at.exception
    assert "3 outputs but the labels have 10 classes" in at.error[0].value
    assert "inspect_surface_job" not in at.session_state or \
        at.session_state["inspect_surface_job"] is None


def test_wrong_architecture_state_dict_names_the_keys():
    sd = models.build({"name": "cnn", "args": {"channels": [4, 8]}}, seed=0).state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf)
    at = page()
    upload(at, "up_model", "cnn.pt", buf.getvalue())
    at.text_input(key="up_arch").set_value(json.dumps(MLP3)).run()
    msg = at.error[0].value
    assert "missing keys" in msg and "0.weight" in msg and "conv1.weight" in msg


def test_uploaded_data_and_a_second_model_for_interpolation(tmp_path):
    from landscape.core.train import TrainConfig, train
    from landscape.io import checkpoints as checkpoint

    d = data.load_builtin("moons", n=200)
    spec = {"name": "mlp", "args": {"in_dim": 2, "out_dim": 2, "widths": [16]}}
    a = train(models.build(spec, seed=0), d, TrainConfig("adam", lr=0.02, steps=60)).model
    b = train(models.build(spec, seed=1), d, TrainConfig("adam", lr=0.02, steps=60)).model
    buf = io.BytesIO()
    np.savez(buf, X=d.X.numpy(), y=d.y.numpy())
    at = page()
    upload(at, "up_model", "a.safetensors", checkpoint.to_bytes(a))
    at.radio(key="data_kind").set_value("Upload").run()
    upload(at, "up_data", "moons.npz", buf.getvalue())
    upload(at, "up_model_b", "b.safetensors", checkpoint.to_bytes(b))
    at.radio(key="i_dirs").set_value("interpolate").run()
    wait_for_chart(at, "inspect_surface_fig")
    labels = {m.label: m.value for m in at.metric}
    assert float(labels["Barrier height (A to B)"]) >= 0
    at.segmented_control(key="analysis").set_value("Per-example losses").run()
    assert any(c.key == "pe_hist" for c in at.get("plotly_chart"))


def test_upload_helpers_refuse_wrong_types_and_sizes():
    with pytest.raises(LandscapeError, match="unsupported model type"):
        uploads.load_model_bytes(b"abc", "model.onnx")
    with pytest.raises(LandscapeError, match="empty"):
        uploads.load_model_bytes(b"", "model.pt")
    with pytest.raises(LandscapeError, match="pickle|refused"):
        uploads.load_model_bytes(pickle.dumps({"w": object()}), "model.pth", arch=MLP3)
    d = data.load_builtin("digits", n=50)
    with pytest.raises(LandscapeError, match="does not accept inputs"):
        uploads.check_compatible(models.build({"name": "mlp", "args": {"in_dim": 2}}), d)


def test_pt2_with_compiled_code_is_refused_before_loading(tmp_path):
    import zipfile

    from landscape.io import checkpoints as checkpoint

    evil = tmp_path / "aoti.pt2"
    with zipfile.ZipFile(EXAMPLE) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("digits-cnn-bn/data/aotinductor/model/model.so", b"\x7fELF not really")
    with pytest.raises(LandscapeError, match="compiled code"):
        checkpoint.load(evil)
    with pytest.raises(LandscapeError, match="compiled code"):
        uploads.load_model_bytes(evil.read_bytes(), "aoti.pt2")
