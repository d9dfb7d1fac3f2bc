"""Flat-vector views of a model's parameters.

A :class:`Layout` fixes an order over the model's trainable parameters
(``named_parameters()`` order) so a parameter point is one flat vector ``theta`` of shape
``[P]`` and a direction is a flat vector too; ``to_dict``/``from_dict`` convert to and from
name -> tensor dicts. ``biasbn_mask`` marks the entries of 1-D tensors (biases, BatchNorm
scale and shift) that the ``ignore="biasbn"`` rule of Li et al. sets to zero in directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    """Names and shapes of the trainable parameters, in order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        items = [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
        return cls(tuple(n for n, _ in items), tuple(s for _, s in items))

    @property
    def sizes(self) -> list[int]:
        out = []
        for s in self.shapes:
            k = 1
            for d in s:
                k *= d
            out.append(k)
        return out

    @property
    def n_params(self) -> int:
        return sum(self.sizes)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes):
            out[name] = slice(start, start + size)
            start += size
        return out

    def biasbn_mask(self) -> torch.Tensor:
        """Bool ``[P]``: True on entries of tensors with fewer than 2 dims."""
        return torch.cat([torch.full((k,), len(s) < 2) for s, k in zip(self.shapes, self.sizes)])

    def to_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat ``[P]`` vector into name -> tensor views of the parameter shapes."""
        return {n: flat[sl].view(s) for (n, sl), s in zip(self.slices().items(), self.shapes)}

    def from_dict(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate a name -> tensor dict into one flat ``[P]`` vector."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"missing parameters: {missing[:5]}")
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names])


def flat_params(model: nn.Module) -> torch.Tensor:
    """The trainable parameters as one detached flat vector ``[P]`` (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).clone()


@torch.no_grad()
def load_flat_(model: nn.Module, flat: torch.Tensor) -> None:
    """Write a flat vector into ``model``'s parameters in place (for private copies only)."""
    start = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        k = p.numel()
        p.copy_(flat[start:start + k].view_as(p))
        start += k
    if start != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, model has {start}")


def fingerprint(model: nn.Module) -> str:
    """A short hash of parameters and buffers, for cache keys and result metadata."""
    import hashlib

    h = hashlib.sha256()
    for name, t in list(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
