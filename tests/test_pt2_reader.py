"""The direct .pt2 reader gives the program torch.export.load gives (same outputs bit for bit,
same parameter and buffer names in the same order), imports no export reader, and declines what
it does not handle so that the export reader takes over."""

import io
import os
import subprocess
import sys

import pytest
import torch
from helpers import SmallResBN as ResBN
from torch import nn

from landscape.core import models
from landscape.io import checkpoints, pt2_reader


class SizedReshape(nn.Module):
    """A reshape by ``x.size(0)`` (a symbolic size in the graph) and an eval-mode dropout."""

    def __init__(self):
        super().__init__()
        self.a, self.drop = nn.Linear(64, 10), nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(self.a(x.reshape(x.size(0), -1)))


def _stats(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _archive(model, dynamic=True, example=None) -> bytes:
    x = torch.randn(8, 64) if example is None else example
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def _cases():
    torch.manual_seed(0)
    return {
        "mlp-gelu": (nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 10)), True),
        "res-bn-cnn": (ResBN(), True),
        "res-bn-cnn-static": (ResBN(), False),
        "zoo-resnet": (models.build({"name": "resnet", "args": {}}, seed=0), True),
        "sized-reshape": (SizedReshape(), True),
        "float64-mlp": (nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double(), True),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_reads_the_program_torch_export_reads(name, small_digits):
    model, dynamic = _cases()[name]
    model = _stats(model).eval()
    dtype = next(model.parameters()).dtype
    source = _archive(model, dynamic, torch.randn(8, 64, dtype=dtype))
    ours, batch = pt2_reader.read(source)
    theirs = torch.export.load(io.BytesIO(source)).module()
    assert batch == (None if dynamic else 8)
    X = small_digits.X[: (50 if dynamic else 8)].to(dtype)
    with torch.no_grad():
        assert torch.equal(ours(X), theirs(X))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (k, a), (k2, b) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]


def test_declines_a_program_in_training_mode_and_the_export_reader_takes_over(small_digits):
    model = _stats(ResBN()).train()
    source = _archive(model)
    with pytest.raises(pt2_reader.NotReadable, match="training"):
        pt2_reader.read(source)
    module, _ = checkpoints.program_from_bytes(source)  # read by torch.export.load, eval mode
    with torch.no_grad():
        out = module(small_digits.X[:20])
    assert out.shape == (20, 10) and torch.isfinite(out).all()


def test_declines_what_is_not_an_archive():
    for bad in (b"", b"PK\x03\x04 not really a zip", b"hello"):
        with pytest.raises(pt2_reader.NotReadable):
            pt2_reader.read(bad)


def test_a_first_open_imports_no_export_reader(tmp_path):
    path = tmp_path / "m.pt2"
    path.write_bytes(_archive(_stats(ResBN()).eval()))
    code = ("import sys; from landscape.io import checkpoints; "
            f"m = checkpoints.load({str(path)!r}).model; "
            "print('torch._export.serde.serialize' in sys.modules, type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, LANDSCAPE_CACHE=str(tmp_path / "empty-cache")))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "GraphModule"]
    assert not (tmp_path / "empty-cache").exists()  # read directly: nothing cached
