import json

import h5py
import numpy as np
import pytest

from landscape import surface
from landscape.core.errors import LandscapeError
from landscape.surface import result as store


@pytest.fixture(scope="module")
def result(trained_mlp, small_digits):
    tr = trained_mlp
    cfg = surface.SurfaceConfig(directions="pca", grid=(6, 4), workers=1)
    res = surface.compute(tr.model, small_digits, cfg,
                          trajectory=(tr.trajectory.steps, tr.trajectory.params))
    return res


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_written_and_read_back_identical(tmp_path, result, suffix):
    path = store.save(result, tmp_path / f"s{suffix}")
    back = store.load(path)
    for name in ("x", "y", "loss", "acc", "dx", "dy"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.names == result.names and back.shapes == result.shapes
    assert back.meta["recipe"] == result.meta["recipe"]
    assert back.meta["explained_variance"] == result.meta["explained_variance"]
    assert back.trajectory["coords"] == result.trajectory["coords"]


def test_h5_has_the_original_loss_landscape_layout(tmp_path, result):
    path = store.save(result, tmp_path / "s.h5")
    with h5py.File(path, "r") as f:
        assert f["xcoordinates"].shape == (6,) and f["ycoordinates"].shape == (4,)
        assert f["train_loss"].shape == (4, 6) and f["train_acc"].shape == (4, 6)
        # Issue 16: directions as h5_util.write_list writes them ("0".."n-1" in parameter
        # order), the names kept as an attribute; accuracies in percent.
        assert set(f["xdirection"].keys()) == {str(i) for i in range(len(result.names))}
        assert json.loads(f["xdirection"].attrs["names"]) == result.names
        assert f["xdirection"]["0"].shape == (32, 64)
        np.testing.assert_allclose(f["train_acc"][()], 100 * result.acc)
        assert f.attrs["acc_units"] == "percent"
        assert "recipe" in f.attrs
        # The original plotting code's convention: contour(meshgrid(x, y), train_loss).
        X, Y = np.meshgrid(f["xcoordinates"][:], f["ycoordinates"][:])
        assert X.shape == f["train_loss"].shape


def test_one_dimensional_files(tmp_path, trained_mlp, small_digits):
    res = surface.compute(trained_mlp.model, small_digits, surface.SurfaceConfig(grid=(5,), workers=1))
    for suffix in (".h5", ".npz"):
        back = store.load(store.save(res, tmp_path / f"line{suffix}"))
        assert back.y is None and back.dy is None and back.loss.shape == (5,)
        np.testing.assert_array_equal(back.loss, res.loss)


def test_bad_files(tmp_path, result):
    with pytest.raises(LandscapeError, match="use .h5 or .npz"):
        store.save(result, tmp_path / "s.csv")
    with pytest.raises(LandscapeError, match="not found"):
        store.load(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(LandscapeError, match="not a readable"):
        store.load(tmp_path / "junk.h5")


def test_the_io_layer_reads_plain_fields_and_never_imports_the_surface_wing(tmp_path, result):
    import subprocess
    import sys

    from landscape.io import surfaces as files

    path = store.save(result, tmp_path / "s.npz")
    fields = files.load(path)
    assert set(fields) == set(files.FIELDS) and isinstance(fields["meta"], dict)
    np.testing.assert_array_equal(fields["loss"], result.loss)
    code = ("import sys, landscape.io.surfaces as f; "
            "print(any(m.startswith('landscape.surface') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
