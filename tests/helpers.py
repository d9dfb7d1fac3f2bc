"""What several test modules share: a lesson subcommand's parsed flags, polling until a
condition holds, and opening a lesson page and stopping its background job afterwards."""

import argparse
import threading
import time

import torch


def lesson_args(cli, *argv):
    """``argv`` parsed by a parser that holds only the lesson subcommand of module ``cli``."""
    ap = argparse.ArgumentParser()
    cli.add_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args([cli.NAME, *argv])


def wait_until(pred, timeout=5.0, pause=0.01):
    """Poll ``pred()`` every ``pause`` seconds; fail the test after ``timeout`` seconds."""
    t = time.time()
    while not pred():
        assert time.time() - t < timeout, "timed out"
        time.sleep(pause)


def lesson_page(page: str, **query):
    """An AppTest of ``pages/<page>.py`` with the given query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(f"../pages/{page}.py", default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def job_running(thread_name: str) -> bool:
    return any(t.name == thread_name for t in threading.enumerate())


def join_jobs(thread_name: str, timeout=60.0) -> None:
    """Wait for the background job threads named ``thread_name``."""
    for t in threading.enumerate():
        if t.name == thread_name:
            t.join(timeout)


def release_page_job(thread_name: str, timeout=10.0) -> None:
    """After a page test: stop the page's job if it still runs (clearing the resource cache
    runs its on_release, which stops it) and wait for it."""
    import streamlit as st

    if job_running(thread_name):
        st.cache_resource.clear()
    join_jobs(thread_name, timeout)


def gd(model, X, y, steps, lr, kind="cross_entropy"):
    """Plain full-batch gradient descent (no torch.optim: its first use costs seconds); returns
    the final loss."""
    import torch

    from landscape.core.losses import loss

    ps = [p for p in model.parameters() if p.requires_grad]
    for _ in range(steps):
        g = torch.autograd.grad(loss(model(X), y, kind), ps)
        with torch.no_grad():
            for p, gi in zip(ps, g):
                p.sub_(lr * gi)
    with torch.no_grad():
        return float(loss(model(X), y, kind))


class SmallResBN(torch.nn.Module):
    """A small residual CNN with BatchNorm on 8x8 digits given as flat 64 inputs (exported in
    the .pt2 tests)."""

    def __init__(self, c: int = 4):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1 = nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = x.view(-1, 1, 8, 8)
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.relu(h + self.b2(self.c2(h)))
        return self.fc(h.mean((2, 3)))
