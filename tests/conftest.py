import os
import tempfile

import pytest
import torch

# Trained presets are cached per test session, never in the user's cache.
os.environ.setdefault("LANDSCAPE_CACHE", tempfile.mkdtemp(prefix="landscape-test-cache-"))
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _stop_workers():
    yield
    from landscape.surface.executors import pool as workers

    workers.shutdown()


@pytest.fixture(scope="session")
def digits():
    from landscape.core import data

    return data.load_builtin("digits")


@pytest.fixture(scope="session")
def small_digits():
    from landscape.core import data

    return data.load_builtin("digits", n=300, seed=1)


@pytest.fixture(scope="session")
def trained_mlp(small_digits):
    """A small MLP trained briefly on 300 digits (a real, non-trivial landscape)."""
    from landscape.core import models
    from landscape.core.train import TrainConfig, train

    m = models.build({"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [32, 32]}},
                     seed=0)
    tr = train(m, small_digits, TrainConfig("adam", lr=1e-2, steps=60, batch_size=None,
                                            snapshot_every=5))
    return tr


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module (small models on 2 cores run much faster), restored after."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
