import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from landscape.cli.main import main
from landscape.core import models

MLP3 = json.dumps({"name": "mlp", "args": {"in_dim": 64, "out_dim": 3, "widths": [8]}})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`landscape train --out` on a small recipe: the checkpoint the other tests read."""
    out = tmp_path_factory.mktemp("ck") / "moons.safetensors"
    code = main(["train", "--preset", "moons-mlp", "--steps", "60", "--out", str(out), "--json"])
    assert code == 0
    return out


def test_train_writes_a_checkpoint_that_surface_reads(capsys, trained, tmp_path):
    assert trained.exists() and trained.with_suffix(".json").exists()
    assert (trained.parent / "moons.trajectory.npz").exists()
    code, out, err = run(capsys, "surface", "--checkpoint", str(trained), "--grid", "7", "5",
                         "--out", str(tmp_path / "s.h5"), "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    for key in ("shape", "x", "y", "loss_center", "loss_min", "seconds"):
        assert key in res
    assert res["shape"] == [5, 7] and len(res["x"]) == 7 and len(res["y"]) == 5
    assert res["loss_min"] <= res["loss_center"]
    assert (tmp_path / "s.h5").exists()


def test_train_json_keys(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--preset", "moons-mlp", "--steps", "20", "--json",
                       "--out", str(tmp_path / "m.safetensors"))
    res = json.loads(out)
    assert code == 0 and res["steps"] == 20 and res["out"].endswith("m.safetensors")
    assert res["final_loss"] > 0


def test_pca_interpolate_and_one_d_from_the_cli(capsys, trained, tmp_path):
    code, out, err = run(capsys, "surface", "--checkpoint", str(trained), "--directions", "pca",
                         "--grid", "5", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert len(res["explained_variance"]) == 2
    code, out, err = run(capsys, "train", "--preset", "moons-mlp", "--steps", "60", "--seed", "1",
                         "--out", str(tmp_path / "b.safetensors"), "--json")
    assert code == 0, err
    code, out, err = run(capsys, "surface", "--checkpoint", str(trained), "--directions",
                         "interpolate", "--checkpoint2", str(tmp_path / "b.safetensors"),
                         "--dim", "1", "--grid", "21", "--out", str(tmp_path / "ab.npz"), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["shape"] == [1, 21] and res["x"][0] == -0.5
    # The barrier height is max over t in [0, 1] of L(t) minus the chord between L(A) and L(B),
    # recomputed here from the written curve (t = 0 and t = 1 are grid points).
    with np.load(tmp_path / "ab.npz") as z:
        t, curve = z["xcoordinates"], np.asarray(z["train_loss"]).reshape(-1)
    i0, i1 = int(np.argmin(abs(t))), int(np.argmin(abs(t - 1)))
    assert abs(t[i0]) < 1e-9 and abs(t[i1] - 1) < 1e-9
    inside = (t >= -1e-9) & (t <= 1 + 1e-9)
    chord = (1 - t) * curve[i0] + t * curve[i1]
    assert res["barrier_height"] == pytest.approx(float(np.max((curve - chord)[inside])), rel=1e-6, abs=1e-9)
    assert res["loss_a"] == pytest.approx(float(curve[i0]), rel=1e-6)


def test_exported_program_with_user_data(capsys, tmp_path):
    m = models.build({"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}}, seed=0)
    ep = torch.export.export(m.eval(), (torch.randn(4, 64),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.random((40, 64)), y=rng.integers(0, 10, 40))
    code, out, err = run(capsys, "surface", "--checkpoint", str(tmp_path / "m.pt2"), "--data",
                         str(tmp_path / "d.npz"), "--grid", "3", "--json")
    assert code == 0, err
    with torch.no_grad():
        X = torch.as_tensor(np.load(tmp_path / "d.npz")["X"], dtype=torch.float32)
        y = torch.as_tensor(np.load(tmp_path / "d.npz")["y"])
        expect = torch.nn.functional.cross_entropy(m(X), y).item()
    assert abs(json.loads(out)["loss_center"] - expect) < 1e-5


def _bad_inputs(tmp_path, trained):
    rng = np.random.default_rng(0)
    (tmp_path / "junk.pt2").write_bytes(os.urandom(300))
    (tmp_path / "empty.pt").write_bytes(b"")
    raw = trained.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(raw[: len(raw) // 2])
    trunc.with_suffix(".json").write_text(trained.with_suffix(".json").read_text())
    np.savez(tmp_path / "nan.npz", X=np.array([[np.nan, 1.0], [0.0, 1.0]]), y=np.array([0, 1]))
    np.savez(tmp_path / "wide.npz", X=rng.random((10, 5)), y=rng.integers(0, 2, 10))
    return [
        (["surface", "--checkpoint", str(tmp_path / "missing.pt2")], "not found"),
        (["surface", "--checkpoint", str(tmp_path / "junk.pt2")], "not a torch.export archive"),
        (["surface", "--checkpoint", str(tmp_path / "empty.pt")], "empty"),
        (["surface", "--checkpoint", str(trunc)], "not a readable safetensors"),
        (["surface", "--checkpoint", str(trained), "--data", str(tmp_path / "nan.npz")], "NaN"),
        (["surface", "--checkpoint", str(trained), "--data", str(tmp_path / "wide.npz")],
         "does not accept inputs of shape [5]"),
        (["train", "--data", "digits", "--model", MLP3, "--steps", "1"],
         "3 outputs but the labels have 10 classes"),
        (["surface", "--checkpoint", str(trained), "--grid", "0"], "grid is empty"),
        (["surface", "--checkpoint", str(trained), "--grid", "3", "0"], "grid is empty"),
        (["surface", "--preset", "no-such-preset"], "unknown preset"),
        (["surface", "--checkpoint", str(trained), "--norm", "weird"], "invalid choice"),
    ]


def test_bad_input_gives_one_line_and_exit_2(capsys, tmp_path, trained):
    for argv, needle in _bad_inputs(tmp_path, trained):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (argv, err)
        assert "Traceback" not in err


def test_malicious_pickle_is_refused_and_never_runs(capsys, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight": Evil()}, f)
    torch.save({"w": Evil()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        code, _, err = run(capsys, "surface", "--checkpoint", str(tmp_path / name), "--arch",
                           MLP3, "--data", "digits")
        assert code == 2 and ("refused" in err or "cannot read" in err), err
    assert not marker.exists()


def test_python_dash_m_and_a_real_process_exit_code(tmp_path):
    env = dict(os.environ)
    ok = subprocess.run([sys.executable, "-m", "landscape", "presets", "--json"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "digits-mlp" in json.loads(ok.stdout)["presets"]
    bad = subprocess.run([sys.executable, "-m", "landscape", "surface", "--checkpoint",
                          str(tmp_path / "nope.pt2")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_hessian_command_json_keys_and_hessian_directions(capsys, trained, tmp_path):
    code, out, err = run(capsys, "hessian", "--checkpoint", str(trained), "--top-k", "3",
                         "--density", "--probes", "20", "--out", str(tmp_path / "h.npz"), "--json")
    assert code == 0, err
    res = json.loads(out)
    for key in ("top_eigenvalues", "residuals", "trace", "trace_stderr", "n_outliers", "hvps",
                "n_params", "seconds"):
        assert key in res
    assert len(res["top_eigenvalues"]) == 3 and res["top_eigenvalues"][0] >= res["top_eigenvalues"][1]
    assert max(res["residuals"]) < 1e-6 * res["top_eigenvalues"][0]
    assert np.load(tmp_path / "h.npz")["density"].ndim == 1
    code, out, err = run(capsys, "surface", "--checkpoint", str(trained), "--directions",
                         "hessian", "--grid", "5", "--range", "-0.5", "0.5", "--json")
    assert code == 0, err
    assert abs(json.loads(out)["cos_dx_dy"]) < 1e-6  # eigenvectors are orthogonal
    code, _, err = run(capsys, "hessian", "--checkpoint", str(trained), "--top-k", "0")
    assert code == 2 and "at least 1" in err


def test_downloaded_model_without_sidecar_loads_in_the_cli(capsys, tmp_path):
    """The app's download is one self-contained .safetensors (sidecar embedded)."""
    from landscape.io import checkpoints as checkpoint

    m = models.build({"name": "mlp", "args": {"in_dim": 2, "out_dim": 2, "widths": [8]}}, seed=0)
    (tmp_path / "dl.safetensors").write_bytes(checkpoint.to_bytes(m, data="moons"))
    code, out, err = run(capsys, "surface", "--checkpoint", str(tmp_path / "dl.safetensors"),
                         "--grid", "3", "--json")
    assert code == 0, err
    assert json.loads(out)["n_params"] == sum(p.numel() for p in m.parameters())


def test_more_bad_input_exits_2(capsys, tmp_path, trained):
    cases = [
        (["surface", "--checkpoint", str(trained), "--data", str(tmp_path)], "is a folder"),
        (["train", "--data", "digits", "--model", '{"name": "mlp", "args": [1]}'], "args"),
        (["surface", "--checkpoint", str(trained), "--directions", "pca", "--trajectory",
          str(tmp_path / "none.npz")], "trajectory file not found"),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and needle in err and err.count("\n") == 1, (argv, err)
