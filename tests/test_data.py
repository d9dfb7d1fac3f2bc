import numpy as np
import pytest
import torch

from landscape.core import data
from landscape.core.errors import LandscapeError


@pytest.mark.parametrize("name", data.BUILTIN)
def test_builtin_sets_are_finite_and_shaped(name):
    d = data.load_builtin(name)
    assert d.X.dtype == torch.float32 and torch.isfinite(d.X).all()
    assert d.X.shape[0] == d.y.shape[0] > 0


def test_digits_is_the_full_bundled_set():
    d = data.load_builtin("digits")
    assert d.X.shape == (1797, 64) and d.n_classes == 10
    assert float(d.X.min()) == 0.0 and float(d.X.max()) == 1.0
    s = data.load_builtin("digits", n=500, standardize=True)
    assert s.X.shape == (500, 64)
    used = s.X.std(0) > 0
    assert torch.allclose(s.X.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(s.X.std(0, unbiased=False)[used], torch.ones(int(used.sum())), atol=1e-4)


def test_gaussian_mixture_classes_and_random_labels():
    a = data.load_builtin("gaussians", n=300, classes=4, dim=10, seed=3)
    b = data.load_builtin("gaussians", n=300, classes=4, dim=10, seed=3, random_labels=True)
    assert a.n_classes == 4 and torch.equal(a.X, b.X)
    assert not torch.equal(a.y, b.y)
    assert torch.equal(torch.bincount(a.y), torch.bincount(b.y))


def test_sines_frequencies_fall_on_fft_bins():
    d = data.load_builtin("sines", n=200, frequencies=(3,), amplitudes=(2.0,))
    assert not d.is_classification
    spec = np.abs(np.fft.rfft(d.y.numpy())) * 2 / 200
    assert spec.argmax() == 6 and abs(spec[6] - 2.0) < 1e-9


def test_npz_and_csv_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y)
    d = data.load_file(tmp_path / "d.npz")
    assert d.X.shape == (20, 3) and d.y.dtype == torch.int64 and d.n_classes == 3
    np.testing.assert_allclose(d.X.numpy(), X, rtol=1e-6)
    rows = ["a,b,c,label"] + [",".join(map(str, [*x, int(t)])) for x, t in zip(X, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    c = data.load_file(tmp_path / "d.csv")
    assert torch.equal(c.y, d.y) and torch.allclose(c.X, d.X)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: np.savez(p, X=np.ones((4, 2)), y=np.ones(3)), "must match"),
    (lambda p: np.savez(p, X=np.array([[1.0, np.nan], [0, 1]]), y=np.array([0, 1])), "NaN"),
    (lambda p: np.savez(p, X=np.array([[1.0, np.inf], [0, 1]]), y=np.array([0, 1])), "inf"),
    (lambda p: np.savez(p, features=np.ones((4, 2))), "'X' and 'y'"),
    (lambda p: p.write_bytes(b"PK\x03\x04 garbage"), "not a readable"),
    (lambda p: np.savez(p, X=np.ones((2, 2)), y=np.array([-1, 0])), "labels"),
])
def test_bad_npz_names_the_problem(tmp_path, make, needle):
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(LandscapeError, match=needle):
        data.load_file(p)


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, X=np.array([object(), object()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(LandscapeError, match="pickle"):
        data.load_file(p)


@pytest.mark.parametrize("text, needle", [
    ("1,2,0\n3,x,1\n", "not a number"),
    ("1,2,0\n3,4\n", "columns"),
    ("label\n", "no rows"),
    ("0\n1\n", "feature column"),
])
def test_bad_csv_names_the_problem(tmp_path, text, needle):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(LandscapeError, match=needle):
        data.load_file(p)


def test_missing_file_and_unknown_names():
    with pytest.raises(LandscapeError, match="not found"):
        data.load_file("no/such/file.npz")
    with pytest.raises(LandscapeError, match="unknown data set"):
        data.load_builtin("imagenet")
    with pytest.raises(LandscapeError, match="unsupported"):
        data.load_bytes(b"abc", "x.parquet")


def test_labels_that_do_not_fit_the_model():
    d = data.load_builtin("digits", n=50)
    with pytest.raises(LandscapeError, match="3 outputs but the labels have 10 classes"):
        data.check_fits(3, d)
    data.check_fits(10, d)


def test_subset_is_fixed_for_a_seed():
    d = data.load_builtin("digits")
    a, b, c = d.subset(100, 0), d.subset(100, 0), d.subset(100, 1)
    assert a.n == 100 and torch.equal(a.X, b.X) and not torch.equal(a.X, c.X)
    assert d.subset(None) is d


def test_gaussian_means_are_separation_apart_on_average():
    seps = []
    for seed in range(20):
        d = data.load_builtin("gaussians", n=2000, classes=4, dim=10, separation=2.0, seed=seed)
        cent = torch.stack([d.X[d.y == c].mean(0) for c in range(4)])
        seps.append(torch.pdist(cent).mean().item())
    assert 1.6 < float(np.mean(seps)) < 2.4


def test_builtin_digits_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits

    d = load_digits()
    ours = data.load_builtin("digits")
    assert np.array_equal(ours.X.numpy().astype(np.float64), (d.data / 16.0).astype(np.float32).astype(np.float64))
    assert np.array_equal(ours.y.numpy(), d.target)
