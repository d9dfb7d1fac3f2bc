"""Figures read at a projector: log axes labelled at powers of ten (or a few 1-2-5 steps on a
narrow axis), never the colliding minor 2 and 5 labels of every decade; the Hessian figures
label what they mark and nothing else."""

import numpy as np
import pytest

from landscape.lessons.spectral_bias.figures import log_ticks


def test_log_ticks_powers_of_ten_on_a_wide_axis():
    assert log_ticks([1e-4, 0.5, 2.0]) == {"dtick": 1}


@pytest.mark.parametrize("lo,hi", [(0.3, 3.0), (0.35, 0.9), (0.012, 0.3), (2.0, 40.0)])
def test_log_ticks_a_few_labels_inside_a_narrow_axis(lo, hi):
    t = log_ticks(np.geomspace(lo, hi, 50))
    vals = t["tickvals"]
    assert t["tickmode"] == "array" and len(vals) >= 3
    assert all(lo <= v <= hi for v in vals) and vals == sorted(vals)
    # labels at least 0.04 decades apart: no two collide on a 300 px axis
    assert np.diff(np.log10(vals)).min() >= 0.04
    assert t["ticktext"] == [f"{v:g}" for v in vals]


def test_hessian_figures_label_only_what_they_mark():
    from landscape.core import data, models
    from landscape.core.train import TrainConfig, train
    from landscape.hessian import figures as hp
    from landscape.hessian import report as spectrum

    d = data.load_builtin("gaussians", n=120, classes=3, dim=4, seed=0)
    tr = train(models.build({"name": "mlp", "args": {"in_dim": 4, "out_dim": 3, "widths": [8]}},
                            seed=0), d, TrainConfig("gd", lr=0.2, steps=40, batch_size=None))
    rep = spectrum.compute_report(tr.model, d, "cross_entropy", probes=12)
    for fig in (hp.density(rep), hp.top_eigenvalues(rep), hp.overlaps(rep)):
        texts = [a.text for a in fig.layout.annotations]
        assert all(t and t != "new text" for t in texts), texts
    n = rep.split.n_outliers
    dens = hp.density(rep)
    assert sum(1 for s in dens.layout.shapes if s.type == "line") == n
    lo, hi = dens.layout.yaxis.range  # six decades under the peak
    assert hi - lo == pytest.approx(6.3) and 10 ** hi >= rep.density.density.max()
    top = hp.top_eigenvalues(rep)
    assert top.layout.title.text.startswith(f"Top {len(rep.eig.eigenvalues)} eigenvalues")
    if n:
        assert f"{n} outlier" in top.layout.title.text
