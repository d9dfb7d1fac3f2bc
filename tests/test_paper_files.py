"""Issue 16: the paper's files both ways (tomgoldstein/loss-landscape conventions).

The helpers below re-implement, in the order their code runs, what that code does with
files: ``h5_util.write_list``/``read_list``, ``plot_surface.setup_surface_file`` + ``crunch``
(arrays declared ``(len(x), len(y))``, filled through ``ravel()`` in the order of
``scheduler.get_unplotted_indices``, i.e. ``meshgrid(x, y)`` order, accuracies in percent),
``plot_2D``'s reading (``contour(meshgrid(x, y), train_loss)``) and ``projection.py``'s
``proj_xcoord``/``proj_ycoord``.
"""

import json

import h5py
import numpy as np
import pytest
import torch

from landscape.cli.main import main
from landscape.core.errors import LandscapeError
from landscape.io import paper
from landscape.surface import result as surface_file

# --------------------------------------------------------------------------- their code


def their_write_list(f, name, direction):
    """h5_util.write_list."""
    grp = f.create_group(name)
    for i, ll in enumerate(direction):
        grp.create_dataset(str(i), data=ll.numpy() if torch.is_tensor(ll) else ll)


def their_read_list(f, name):
    """h5_util.read_list."""
    grp = f[name]
    return [grp[str(i)] for i in range(len(grp.keys()))]


def their_unplotted_indices(vals, xcoordinates, ycoordinates):
    """scheduler.get_unplotted_indices."""
    inds = np.array(range(vals.size))
    inds = inds[vals.ravel() <= 0]
    xcoord_mesh, ycoord_mesh = np.meshgrid(xcoordinates, ycoordinates)
    s1 = xcoord_mesh.ravel()[inds]
    s2 = ycoord_mesh.ravel()[inds]
    return inds, np.c_[s1, s2]


def their_crunch(surf_file, xcoordinates, ycoordinates, evaluate, dir_file=None):
    """plot_surface.setup_surface_file + crunch on one rank: ``evaluate(x, y)`` gives
    (loss, accuracy in percent)."""
    with h5py.File(surf_file, "a") as f:
        if dir_file is not None:
            f["dir_file"] = dir_file
        f["xcoordinates"] = xcoordinates
        f["ycoordinates"] = ycoordinates
    with h5py.File(surf_file, "r+") as f:
        shape = (len(xcoordinates), len(ycoordinates))
        losses = -np.ones(shape=shape)
        accuracies = -np.ones(shape=shape)
        f["train_loss"] = losses
        f["train_acc"] = accuracies
        inds, coords = their_unplotted_indices(losses, xcoordinates, ycoordinates)
        for count, ind in enumerate(inds):
            loss, acc = evaluate(*coords[count])
            losses.ravel()[ind] = loss
            accuracies.ravel()[ind] = acc
            f["train_loss"][:] = losses
            f["train_acc"][:] = accuracies


def their_contour_inputs(surf_file):
    """plot_2D.plot_2d_contour's reading: X, Y = meshgrid(x, y); Z = train_loss."""
    with h5py.File(surf_file, "r") as f:
        x, y = f["xcoordinates"][:], f["ycoordinates"][:]
        X, Y = np.meshgrid(x, y)
        Z = np.array(f["train_loss"][:])
    return X, Y, Z


def bowl(x, y):
    """A surface with one minimum, at (0.4, -0.25), on the grid below."""
    return (x - 0.4) ** 2 + 3 * (y + 0.25) ** 2 + 0.1 + 0.05 * x * y


X11 = np.linspace(-1.0, 1.0, 11)
Y5 = np.linspace(-0.5, 0.5, 5)


@pytest.fixture
def crunch_file(tmp_path):
    path = tmp_path / "resnet_surface.h5"
    their_crunch(path, X11, Y5, lambda a, b: (bowl(a, b), 100 * np.exp(-bowl(a, b))))
    return path


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- their files here


def test_the_crunch_order_is_what_the_issue_says(crunch_file):
    # The premise: flat index k holds (x[k % nx], y[k // nx]) in an array declared (nx, ny).
    with h5py.File(crunch_file, "r") as f:
        raw = f["train_loss"][()]
    assert raw.shape == (11, 5)
    for k in (0, 7, 12, 54):
        assert raw.ravel()[k] == pytest.approx(bowl(X11[k % 11], Y5[k // 11]))
    # ... so reading it [i, j] puts the minimum in the wrong place
    i, j = np.unravel_index(np.argmin(raw), raw.shape)
    assert (X11[i], Y5[j]) != pytest.approx((0.4, -0.25))


def test_show_json_reads_an_11x5_crunch_file(capsys, crunch_file):
    code, out, err = run(capsys, "show", crunch_file, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["grid"] == [11, 5] and res["dims"] == 2
    assert res["min_at"] == pytest.approx([0.4, -0.25])
    assert res["min_loss"] == pytest.approx(bowl(0.4, -0.25))
    assert res["loss_center"] == pytest.approx(bowl(0.0, 0.0))
    assert set(res["datasets"]) == {"xcoordinates", "ycoordinates", "train_loss", "train_acc"}
    assert res["acc_units"] == "percent" and res["origin"] == "loss-landscape"
    assert res["layout"].startswith("crunch")
    assert res["acc_at_min_percent"] == pytest.approx(100 * np.exp(-bowl(0.4, -0.25)))
    assert res["unfilled_points"] == 0 and res["has_directions"] is False


def test_loaded_values_sit_at_their_points(crunch_file):
    res = surface_file.load(crunch_file)
    assert res.loss.shape == (5, 11)
    for j, b in enumerate(Y5):
        for i, a in enumerate(X11):
            assert res.loss[j, i] == pytest.approx(bowl(a, b))
            assert res.acc[j, i] == pytest.approx(np.exp(-bowl(a, b)))  # fraction in memory


def test_a_square_crunch_file_and_unfinished_points(tmp_path):
    path = tmp_path / "sq.h5"
    x = np.linspace(-1, 1, 5)
    their_crunch(path, x, x, lambda a, b: (bowl(a, b), 50.0))
    with h5py.File(path, "r+") as f:  # a run stopped early: crunch's -1 remain
        z = f["train_loss"][()]
        z.ravel()[-3:] = -1
        f["train_loss"][:] = z
    res = surface_file.load(path)
    assert res.info["layout"] == "square, meshgrid order" and res.info["unfilled_points"] == 3
    assert np.isnan(res.loss.ravel()[-3:]).all()
    assert res.loss[1, 3] == pytest.approx(bowl(x[3], x[1]))
    assert surface_file.summary(res)["min_at"] == pytest.approx([0.5, -0.5])


def test_a_file_with_the_wrong_number_of_values_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = X11, Y5, np.zeros((11, 4))
    with pytest.raises(LandscapeError, match=r"train_loss holds 44 values .* 11 x 5 needs 55"):
        surface_file.load(path)


def test_their_projection_file_draws_as_the_trajectory(capsys, tmp_path, crunch_file):
    proj = tmp_path / "resnet_dir.h5_proj_cos.h5"
    xs, ys = np.linspace(-0.8, 0.4, 7), np.linspace(0.3, -0.25, 7)
    with h5py.File(proj, "w") as f:  # projection.project_trajectory
        f["proj_xcoord"] = np.array(xs)
        f["proj_ycoord"] = np.array(ys)
    res = surface_file.load(crunch_file, projection=proj)
    np.testing.assert_allclose(np.asarray(res.trajectory["coords"]), np.c_[xs, ys])
    from landscape.cli.show import figure

    fig = figure(res)
    traj = [t for t in fig.data if t.name == "trajectory"]
    assert len(traj) == 1 and np.allclose(traj[0].x, xs) and np.allclose(traj[0].y, ys)
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    html = tmp_path / "fig.html"
    code, out, err = run(capsys, "show", crunch_file, "--projection", proj, "--figure", html, "--json")
    assert code == 0, err
    assert json.loads(out)["trajectory_points"] == 7 and html.stat().st_size > 10_000
    code, _, err = run(capsys, "show", crunch_file, "--projection", crunch_file)
    assert code == 2 and "no proj_xcoord" in err


@pytest.mark.parametrize("view", ["3d", "slice"])
def test_other_views(crunch_file, view):
    from landscape.cli.show import figure

    fig = figure(surface_file.load(crunch_file), view)
    assert fig.layout.title.text
    if view == "slice":  # the row y = 0
        np.testing.assert_allclose(fig.data[0].y, bowl(X11, 0.0))


# --------------------------------------------------------------------------- our files there


@pytest.fixture(scope="module")
def moons_model(tmp_path_factory):
    from landscape.core import data, models
    from landscape.core.train import TrainConfig, train
    from landscape.io import checkpoints as checkpoint

    d = data.load_builtin("moons", n=200)
    m = models.build({"name": "mlp", "args": {"in_dim": 2, "out_dim": 2, "widths": [8, 8]}}, seed=0)
    m = train(m, d, TrainConfig("adam", lr=1e-2, steps=60, batch_size=None)).model.eval()
    folder = tmp_path_factory.mktemp("paper")
    path = folder / "m.safetensors"
    path.write_bytes(checkpoint.to_bytes(m, data={"name": "moons", "n": 200}))
    test = data.load_builtin("moons", n=100, seed=7)
    np.savez(folder / "test.npz", X=test.X.numpy(), y=test.y.numpy())
    return m, d, path, folder / "test.npz"


def test_our_non_square_export_reads_with_their_conventions(capsys, tmp_path, moons_model):
    model, d, ckpt, test_npz = moons_model
    out = tmp_path / "ours.h5"
    code, o, err = run(capsys, "surface", "--checkpoint", ckpt, "--grid", "7", "5", "--workers", "1",
                       "--test-data", test_npz, "--out", out, "--json")
    assert code == 0, err
    assert json.loads(o)["test_loss_center"] > 0
    X, Y, Z = their_contour_inputs(out)
    assert Z.shape == X.shape == (5, 7)
    with h5py.File(out, "r") as f:
        # accuracies in percent: the centre is the model's own accuracy
        with torch.no_grad():
            model_acc = 100 * float((model(d.X).argmax(1) == d.y).float().mean())
        assert f["train_acc"][2, 3] == pytest.approx(model_acc) and model_acc > 60
        assert f["test_acc"].shape == (5, 7) and f["test_acc"][()].max() > 1
        # read_list of both groups: one tensor per parameter, model.parameters() order
        for name in ("xdirection", "ydirection"):
            tensors = their_read_list(f, name)
            assert [t.shape for t in tensors] == [tuple(p.shape) for p in model.parameters()]
    # and the values sit where their contour puts them: the minimum agrees with ours
    res = surface_file.load(out)
    assert res.info["acc_units"] == "percent" and res.info["layout"] == "(ny, nx)"
    j, i = np.unravel_index(np.argmin(Z), Z.shape)
    assert surface_file.summary(res)["min_at"] == pytest.approx([X[j, i], Y[j, i]])
    assert res.acc[2, 3] == pytest.approx(model_acc / 100)


def test_directions_file_of_their_origin_is_reused(capsys, tmp_path, moons_model):
    model, _, ckpt, _ = moons_model
    g = torch.Generator().manual_seed(3)
    dx = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    dy = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    dir_file = tmp_path / "m.h5_weights_xignore=biasbn_xnorm=filter.h5"
    with h5py.File(dir_file, "w") as f:  # net_plotter.setup_direction
        their_write_list(f, "xdirection", dx)
        their_write_list(f, "ydirection", dy)
    surf = tmp_path / "their_surface.h5"  # a surface file naming its dir_file
    their_crunch(surf, np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), lambda a, b: (1.0, 50.0),
                 dir_file=dir_file.name)
    for source in (dir_file, surf):
        out = tmp_path / f"again-{source.stem}.npz"
        code, o, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", source,
                           "--grid", "3", "--workers", "1", "--out", out, "--json")
        assert code == 0, err
        assert json.loads(o)["directions_file"] == str(source)
        res = surface_file.load(out)
        assert res.meta["directions"] == "file"
        np.testing.assert_array_equal(res.dx, torch.cat([t.reshape(-1) for t in dx]).numpy())
        np.testing.assert_array_equal(res.dy, torch.cat([t.reshape(-1) for t in dy]).numpy())
    # our own file (this format) as the directions file, read back the same
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file",
                       tmp_path / "again-their_surface.npz", "--grid", "3", "--workers", "1",
                       "--out", tmp_path / "third.h5")
    assert code == 0, err
    np.testing.assert_array_equal(surface_file.load(tmp_path / "third.h5").dx, res.dx)


def test_directions_that_do_not_fit_name_the_first_mismatch(capsys, tmp_path, moons_model):
    model, _, ckpt, _ = moons_model
    params = [tuple(p.shape) for p in model.parameters()]
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        shapes = params[:2] + [(9, 9)] + params[3:]
        their_write_list(f, "xdirection", [np.zeros(s) for s in shapes])
        their_write_list(f, "ydirection", [np.zeros(s) for s in shapes])
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", wrong, "--grid", "3")
    assert code == 2
    assert "tensor 2 has shape [9, 9], the model's parameter 2 (2.weight) has shape [8, 8]" in err
    states = tmp_path / "states.h5"  # a 'states' file: one more tensor than parameters
    with h5py.File(states, "w") as f:
        their_write_list(f, "xdirection", [np.zeros(s) for s in params] + [np.zeros(())])
    with pytest.raises(LandscapeError, match=rf"holds {len(params) + 1} tensors, the model has {len(params)}"):
        paper.match_directions(paper.read_directions(states), [str(i) for i in range(len(params))],
                               [list(s) for s in params])
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", states, "--grid", "3")
    assert code == 2 and "tensor 6 (shape []) matches none" in err
    one = tmp_path / "one.h5"  # a 1-D directions file: fine for --dim 1, not for a plane
    with h5py.File(one, "w") as f:
        their_write_list(f, "xdirection", [np.ones(s) for s in params])
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", one, "--grid", "3")
    assert code == 2 and "holds no ydirection" in err
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", one, "--dim", "1",
                       "--grid", "3", "--workers", "1")
    assert code == 0, err
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", tmp_path / "none.h5")
    assert code == 2 and "directions file not found" in err


# --------------------------------------------------------------------------- our old files


def write_format_1(path, res):
    """A .h5 exactly as landscape wrote it before issue 16: accuracies as fractions,
    direction datasets keyed by parameter name (h5py lists them alphabetically)."""
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"] = res.x, res.y
        f["train_loss"], f["train_acc"] = res.loss, res.acc
        for which in ("x", "y"):
            grp = f.create_group(f"{which}direction")
            for name, arr in res.direction_dict(which).items():
                grp.create_dataset(name, data=arr)
        f.attrs["recipe"] = json.dumps(res.meta, default=str)
        f.attrs["layout"] = json.dumps({"names": res.names, "shapes": res.shapes})


def test_our_format_1_files_keep_opening(capsys, tmp_path, moons_model):
    model, d, ckpt, _ = moons_model
    new = tmp_path / "new.h5"
    assert run(capsys, "surface", "--checkpoint", ckpt, "--grid", "5", "3", "--workers", "1", "--out", new)[0] == 0
    res = surface_file.load(new)
    old = tmp_path / "old.h5"
    write_format_1(old, res)
    back = surface_file.load(old)
    assert back.info["acc_units"] == "fraction" and back.info["origin"] == "landscape"
    for name in ("x", "y", "loss", "acc", "dx", "dy"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert back.names == res.names
    code, o, err = run(capsys, "show", old, "--json")
    assert code == 0, err
    assert json.loads(o)["acc_units"] == "fraction" and json.loads(o)["grid"] == [5, 3]
    # and an old file's directions (keyed by name) are reused by name
    code, _, err = run(capsys, "surface", "--checkpoint", ckpt, "--directions-file", old, "--grid", "3",
                       "--workers", "1", "--out", tmp_path / "again.npz")
    assert code == 0, err
    np.testing.assert_array_equal(surface_file.load(tmp_path / "again.npz").dy, res.dy)


def test_show_bad_input(capsys, tmp_path):
    code, _, err = run(capsys, "show", tmp_path / "none.h5")
    assert code == 2 and "surface file not found" in err
    with h5py.File(tmp_path / "dirs.h5", "w") as f:
        their_write_list(f, "xdirection", [np.zeros(3)])
    code, _, err = run(capsys, "show", tmp_path / "dirs.h5")
    assert code == 2 and "missing dataset" in err and "xcoordinates" in err


# --------------------------------------------------------------------------- the page


def page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app.py", default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.switch_page("pages/show.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_page_opens_a_crunch_file_with_its_projection(tmp_path, crunch_file):
    proj = tmp_path / "proj.h5"
    with h5py.File(proj, "w") as f:
        f["proj_xcoord"], f["proj_ycoord"] = np.linspace(-0.8, 0.4, 5), np.linspace(0.3, -0.25, 5)
    at = page(source="Path", path=crunch_file, proj=proj)
    assert not at.error
    fig = next(c for c in at.get("plotly_chart") if c.key == "main_fig")
    spec = fig.proto.spec.replace(" ", "")
    assert '"type":"contour"' in spec and '"name":"trajectory"' in spec
    values = {m.label: m.value for m in at.metric}
    assert values["Grid"] == "11 x 5" and values["Where"] == "(0.4, -0.25)"
    assert any("accuracies read as percent" in c.value for c in at.caption)


def test_the_page_names_the_field_of_a_bad_file(tmp_path, crunch_file):
    at = page(source="Path", path=tmp_path / "none.h5")
    assert at.error and at.error[0].value.startswith("Surface file path: surface file not found")
    at = page(source="Path", path=crunch_file, proj=crunch_file)
    assert at.error and at.error[0].value.startswith("PCA projection file path:")
    assert "no proj_xcoord" in at.error[0].value


def test_uploaded_bytes_read_like_the_file(tmp_path, crunch_file):
    res = surface_file.load_bytes(crunch_file.read_bytes(), "theirs.h5")
    assert surface_file.summary(res)["min_at"] == pytest.approx([0.4, -0.25])
    with pytest.raises(LandscapeError, match="surface file notes.txt: unsupported type .txt"):
        surface_file.load_bytes(b"abc", "notes.txt")
    with pytest.raises(LandscapeError, match=r"^junk.h5: not a readable surface file"):
        surface_file.load_bytes(b"not hdf5 at all", "junk.h5")
    with pytest.raises(LandscapeError, match=r"^p.h5 is not a projection file: no proj_xcoord"):
        res.attach_projection(crunch_file.read_bytes(), "p.h5")
