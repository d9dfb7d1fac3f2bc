"""For a program the direct reader leaves to torch's export reader, the second open rebuilds the
same program from the cache, without that reader; the cache holds a graph of aten operators
only, and anything else in it is ignored."""

import io
import json

import pytest
import torch
from helpers import SmallResBN as ResBN
from torch import nn

from landscape.io import checkpoints, program_cache, pt2_reader


class TwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 10)

    def forward(self, x):
        z = self.a(x)
        return z, z.sum()


def _archive(model, static=False) -> bytes:
    torch.manual_seed(0)
    x = torch.randn(8, 64)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ep = torch.export.export(model.eval(), (x,), dynamic_shapes=None if static else ({0: torch.export.Dim("batch")},))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, and the direct reader declining every archive (as it does for programs
    outside its subset), so the export reader and the cache are what is tested."""
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))

    def decline(_source):
        raise pt2_reader.NotReadable("declined for this test")

    monkeypatch.setattr(pt2_reader, "read", decline)
    return tmp_path / "programs"


def _models():
    torch.manual_seed(1)
    return {"mlp": (nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)), False),
            "bn-cnn": (ResBN(), False), "static-bn-cnn": (ResBN(), True)}


@pytest.mark.parametrize("name", ["mlp", "bn-cnn", "static-bn-cnn"])
def test_second_open_comes_from_the_cache_and_is_the_same_program(cache, monkeypatch, name, small_digits):
    model, static = _models()[name]
    source = _archive(model, static)
    first, batch = checkpoints.program_from_bytes(source)
    assert len(list(cache.glob("*.json"))) == 1 and len(list(cache.glob("*.safetensors"))) == 1

    def no_reader(*_a, **_k):
        raise AssertionError("the export reader ran although the program was cached")

    monkeypatch.setattr(checkpoints, "_read_program", no_reader)
    second, batch2 = checkpoints.program_from_bytes(source)
    assert batch2 == batch == (8 if static else None)
    assert second.landscape_pt2 == source
    X = small_digits.X[:50]
    with torch.no_grad():
        assert torch.equal(first(X), second(X))  # bit for bit: the same graph
        assert torch.allclose(model(X), second(X), rtol=1e-5, atol=1e-6)  # batches of 8 round differently
    assert [n for n, _ in first.named_parameters()] == [n for n, _ in second.named_parameters()]
    for (k, a), (_, b) in zip(first.named_buffers(), second.named_buffers()):
        assert torch.equal(a, b), k


def test_a_tampered_cache_is_ignored_and_never_runs_code(cache, small_digits):
    source = _archive(_models()["mlp"][0])
    checkpoints.program_from_bytes(source)
    meta = next(cache.glob("*.json"))
    desc = json.loads(meta.read_text())
    call = next(n for n in desc["nodes"] if n["op"] == "call_function")
    call["target"] = "builtins.exec"
    meta.write_text(json.dumps(desc))
    assert program_cache.load_cached(source) is None
    call["target"] = "aten.no_such_operator.default"
    meta.write_text(json.dumps(desc))
    assert program_cache.load_cached(source) is None
    meta.write_text("{not json")
    assert program_cache.load_cached(source) is None
    module, _ = checkpoints.program_from_bytes(source)  # falls back to the archive itself
    with torch.no_grad():
        assert module(small_digits.X[:5]).shape == (5, 10)


def test_a_program_outside_the_subset_is_not_cached(cache):
    module, batch = checkpoints.program_from_bytes(_archive(TwoOut()))
    assert not program_cache.store(module.landscape_pt2, module, batch)
    assert not list(cache.glob("*.json"))
