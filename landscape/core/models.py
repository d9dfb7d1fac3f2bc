"""The model zoo, rebuilt from a JSON spec ``{"name": ..., "args": {...}}``.

- ``mlp``: ``in_dim -> widths... -> out_dim`` with ``relu``/``tanh``/``gelu`` between layers
  (an ``nn.Sequential`` of ``Linear`` and activation modules, so surface evaluation can use
  its fast path).
- ``cnn``: a small CNN for 8x8 one-channel images (input ``[N, 64]`` or ``[N, 1, 8, 8]``):
  two 3x3 conv blocks (optionally with BatchNorm), 2x2 max-pool after each, a linear head.
- ``resnet``: a ResNet-style CNN for 8x8 images: a stem conv, ``blocks`` residual blocks of
  two 3x3 convs each (BatchNorm optional), global average pooling, a linear head. ``skip``
  switches the identity shortcuts on or off, Li et al.'s (2018) headline comparison
  (ResNet vs. "no-short" net of the same depth).

``build(spec)`` returns a model in eval mode whose ``zoo_spec`` attribute holds the spec;
``spec_of(model)`` returns it, and ``build(spec_of(m))`` has the same architecture.
"""

from __future__ import annotations

import copy
import json
import threading

import torch
from torch import nn

from landscape.core.errors import LandscapeError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise LandscapeError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_dim: int = 64, out_dim: int = 10, widths=(128, 128), activation: str = "relu",
        bias: bool = True) -> nn.Sequential:
    dims = [int(in_dim), *[int(w) for w in widths], int(out_dim)]
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
        if i < len(dims) - 2:
            layers.append(_act(activation))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """conv(1->c1) [BN] act pool(2) conv(c1->c2) [BN] act pool(2) -> linear(c2*2*2 -> out)."""

    def __init__(self, out_dim: int = 10, channels=(16, 32), batchnorm: bool = False,
                 activation: str = "relu"):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(c1) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=not batchnorm)
        self.bn2 = nn.BatchNorm2d(c2) if batchnorm else nn.Identity()
        self.act = _act(activation)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c2 * 4, out_dim)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))


class ResBlock(nn.Module):
    def __init__(self, c: int, skip: bool, batchnorm: bool, activation: str):
        super().__init__()
        self.skip = skip
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(c) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=not batchnorm)
        self.bn2 = nn.BatchNorm2d(c) if batchnorm else nn.Identity()
        self.act = _act(activation)

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.act(h + x if self.skip else h)


class SmallResNet(nn.Module):
    """stem conv -> ``blocks`` x ResBlock(channels) -> global avg pool -> linear."""

    def __init__(self, out_dim: int = 10, channels: int = 16, blocks: int = 4, skip: bool = True,
                 batchnorm: bool = True, activation: str = "relu"):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=not batchnorm)
        self.bn = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.act = _act(activation)
        self.blocks = nn.Sequential(
            *[ResBlock(channels, skip, batchnorm, activation) for _ in range(int(blocks))])
        self.fc = nn.Linear(channels, out_dim)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))


ZOO = {"mlp": mlp, "cnn": SmallCNN, "resnet": SmallResNet}


_BUILD_LOCK = threading.Lock()


def build(spec, seed: int | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """Build a zoo model from ``{"name", "args"}`` (a dict or its JSON text).

    With ``seed`` the initial weights are reproducible. The model is returned in eval mode.
    """
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise LandscapeError(f"model spec is not valid JSON: {e.msg}") from None
    if not isinstance(spec, dict) or "name" not in spec:
        raise LandscapeError('a model spec needs a "name" (mlp, cnn or resnet) and "args"')
    if not isinstance(spec.get("args", {}), dict):
        raise LandscapeError('a model spec\'s "args" must be an object of keyword arguments')
    name, args = spec["name"], dict(spec.get("args", {}))
    if name not in ZOO:
        raise LandscapeError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    # Seeding and drawing the initial weights happen under one lock, so two jobs building
    # models at once in different threads cannot interleave on torch's global generator.
    with _BUILD_LOCK:
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = ZOO[name](**args)
        except TypeError as e:
            raise LandscapeError(f"bad arguments for model {name!r}: {e}") from None
    if dtype is not None:
        model = model.to(dtype)
    model.zoo_spec = {"name": name, "args": copy.deepcopy(args)}
    return model.eval()


def spec_of(model: nn.Module) -> dict | None:
    """The zoo spec a model was built from, or None for a model from elsewhere."""
    spec = getattr(model, "zoo_spec", None)
    return copy.deepcopy(spec) if spec is not None else None


def output_size(model: nn.Module, input_shape: tuple[int, ...], dtype=torch.float32) -> int:
    """Run one dummy example through a private copy of ``model`` to read its output width."""
    m = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            out = m(torch.zeros((2, *input_shape), dtype=dtype))
    except Exception as e:
        raise LandscapeError(
            f"the model does not accept inputs of shape {list(input_shape)}: "
            f"{str(e).splitlines()[0][:200]}") from None
    return int(out.reshape(out.shape[0], -1).shape[1])


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
