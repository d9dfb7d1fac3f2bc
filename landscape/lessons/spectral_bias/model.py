"""The coordinate MLP of the spectral-bias lesson and its input encodings.

``x`` [N, 1] (a coordinate in [-1, 1)) -> encoding -> Linear/activation stack -> [N, 1]:

- ``"none"``: ``x`` itself (1 input);
- ``"pe"``: positional encoding ``[sin(2^l pi x), cos(2^l pi x)]``, ``l = 0..levels-1``
  (``2 levels`` inputs);
- ``"rff"``: random Fourier features ``[sin(2 pi b_j x), cos(2 pi b_j x)]`` with
  ``b_j ~ N(0, sigma^2)`` cycles per unit ``x``, ``j < features`` (``2 features`` inputs).

The encoding has no trainable parameters (its frequencies are a float64 buffer).
:meth:`CoordinateMLP.patterns` gives each input's ReLU activation pattern (which hidden units
have a positive pre-activation), the raw material of the activation-region count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from landscape.core.device import DTYPES
from landscape.lessons.spectral_bias.config import SpectralConfig


class Sine(nn.Module):
    """``sin`` as a layer (SIREN-style activation)."""

    def forward(self, x):
        return torch.sin(x)


_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sin": Sine}


class CoordinateMLP(nn.Module):
    """``x`` [N, 1] -> encoding -> Linear/activation stack -> [N, 1].

    The encoding has no trainable parameters (``B`` of the Fourier features is a buffer).
    """

    def __init__(self, widths=(128, 128, 128), activation: str = "relu", encoding: str = "none",
                 levels: int = 8, sigma: float = 10.0, features: int = 128,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.encoding = encoding
        if encoding == "pe":
            self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(levels, dtype=torch.float64))
            in_dim = 2 * levels
        elif encoding == "rff":
            b = torch.randn(features, dtype=torch.float64, generator=generator) * sigma
            self.register_buffer("freqs", 2 * math.pi * b)
            in_dim = 2 * features
        else:
            self.register_buffer("freqs", torch.zeros(0, dtype=torch.float64))
            in_dim = 1
        dims = [in_dim, *[int(w) for w in widths], 1]
        self.linears = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.act = _ACT[activation]()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding == "none":
            return x
        z = x * self.freqs.to(x.dtype)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)
        for lin in self.linears[:-1]:
            h = self.act(lin(h))
        return self.linears[-1](h)

    @torch.no_grad()
    def patterns(self, x: torch.Tensor) -> torch.Tensor:
        """Activation pattern of each input: bool [N, hidden units] (pre-activation > 0)."""
        h = self.encode(x)
        on = []
        for lin in self.linears[:-1]:
            z = lin(h)
            on.append(z > 0)
            h = self.act(z)
        return torch.cat(on, dim=1)


def build_model(config: SpectralConfig) -> CoordinateMLP:
    """The run's model, initialised from ``config.seed`` without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        g = torch.Generator().manual_seed(config.seed + 1_000_003)
        model = CoordinateMLP(config.widths, config.activation, config.encoding, config.levels,
                              config.sigma, config.features, generator=g)
    return model.to(DTYPES[config.dtype])
