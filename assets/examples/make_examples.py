"""Rebuild the example checkpoints and data in this folder (deterministic).

    python assets/examples/make_examples.py

- ``digits-cnn-bn.pt2``: a small CNN with BatchNorm trained briefly on the digits, saved with
  ``torch.export`` (dynamic batch dimension): any architecture can come this way.
- ``digits-mlp.safetensors`` (+ ``.json`` sidecar): the format the app and CLI write.
- ``digits-300.npz``: 300 digits (arrays ``X`` [300, 64] in [0, 1], ``y`` [300]).
"""

from pathlib import Path

import numpy as np
import torch

from landscape.core import data, models
from landscape.core.train import TrainConfig, train
from landscape.io import checkpoints as checkpoint

HERE = Path(__file__).resolve().parent


def main() -> None:
    torch.manual_seed(0)
    digits = data.load_builtin("digits")
    cnn = train(models.build({"name": "cnn", "args": {"channels": [8, 16], "batchnorm": True}},
                             seed=0), digits,
                TrainConfig("sgd", lr=0.05, steps=150, batch_size=128, seed=0)).model.eval()
    ep = torch.export.export(cnn, (digits.X[:4],),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, HERE / "digits-cnn-bn.pt2")
    spec = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [64, 64]}}
    mlp = train(models.build(spec, seed=0), digits,
                TrainConfig("sgd", lr=0.05, steps=300, batch_size=128, seed=0)).model
    checkpoint.save(mlp, HERE / "digits-mlp.safetensors", data="digits",
                    recipe={"model": spec, "note": "example"})
    sub = digits.subset(300, seed=0)
    np.savez_compressed(HERE / "digits-300.npz", X=sub.X.numpy(), y=sub.y.numpy())


if __name__ == "__main__":
    main()
