import threading

import numpy as np
import pytest
import torch
from helpers import wait_until

from landscape import presets
from landscape.core import data, models
from landscape.core.errors import LandscapeError
from landscape.core.params import flat_params
from landscape.core.train import TrainConfig, Trainer, train

MLP = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [16]}}


@pytest.fixture(scope="module")
def d():
    return data.load_builtin("digits", n=200)


@pytest.mark.parametrize("opt", ["gd", "sgd", "momentum", "adam"])
def test_every_optimizer_lowers_the_loss(d, opt):
    lr = {"gd": 0.5, "sgd": 0.1, "momentum": 0.1, "adam": 1e-2}[opt]
    tr = train(models.build(MLP, seed=0), d, TrainConfig(opt, lr=lr, steps=40, batch_size=50))
    first, last = tr.history[0].loss, tr.evaluate()[0]
    assert last < 0.7 * first


def test_same_seed_same_run_bit_for_bit(d):
    cfg = TrainConfig("sgd", lr=0.1, steps=25, batch_size=32, seed=3)
    a = train(models.build(MLP, seed=1), d, cfg)
    b = train(models.build(MLP, seed=1), d, cfg)
    c = train(models.build(MLP, seed=1), d, TrainConfig("sgd", lr=0.1, steps=25, batch_size=32, seed=4))
    assert [e.loss for e in a.history] == [e.loss for e in b.history]
    assert torch.equal(flat_params(a.model), flat_params(b.model))
    assert not torch.equal(flat_params(a.model), flat_params(c.model))


def test_training_never_touches_the_callers_model(d):
    m = models.build(MLP, seed=0)
    before = flat_params(m)
    train(m, d, TrainConfig("adam", lr=1e-2, steps=5))
    assert torch.equal(before, flat_params(m))


def test_events_stream_and_can_stop_and_resume(d):
    tr = Trainer(models.build(MLP, seed=0), d, TrainConfig("gd", lr=0.5, steps=30, snapshot_every=5))
    seen = []
    for ev in tr.run():
        seen.append(ev.step)
        if ev.step == 12:
            break
    assert seen == list(range(1, 13)) and tr.step == 12
    rest = [ev.step for ev in tr.run()]
    assert rest == list(range(13, 31))
    assert tr.trajectory.steps == [0, 5, 10, 15, 20, 25, 30]


def test_trajectory_memory_is_bounded(d):
    cfg = TrainConfig("gd", lr=0.5, steps=200, snapshot_every=1, max_snapshots=8)
    tr = train(models.build(MLP, seed=0), d, cfg)
    assert 2 <= len(tr.trajectory) <= 9
    assert tr.trajectory.steps[0] == 0 and tr.trajectory.steps[-1] == 200
    assert tr.trajectory.steps == sorted(set(tr.trajectory.steps))
    assert torch.equal(tr.trajectory.snapshots[-1], flat_params(tr.model).float())


def test_divergence_is_reported_not_silently_nan(d):
    tr = Trainer(models.build(MLP, seed=0), d, TrainConfig("gd", lr=1e6, steps=50, loss="mse"))
    with pytest.raises(LandscapeError, match="diverged"):
        for _ in tr.run():
            pass


def test_bad_configs_are_refused(d):
    for cfg in (TrainConfig("rmsprop"), TrainConfig(lr=-1), TrainConfig(loss="hinge"),
                TrainConfig(batch_size=0)):
        with pytest.raises(LandscapeError):
            Trainer(models.build(MLP), d, cfg)
    reg = data.load_builtin("sines")
    with pytest.raises(LandscapeError, match="cross-entropy"):
        Trainer(models.build({"name": "mlp", "args": {"in_dim": 1, "out_dim": 1}}), reg, TrainConfig())


def test_float64_squared_loss_full_batch_gd(d):
    cfg = TrainConfig("gd", lr=0.2, steps=10, loss="mse", dtype="float64")
    tr = train(models.build(MLP, seed=0), d, cfg)
    assert next(tr.model.parameters()).dtype == torch.float64
    assert tr.history[-1].loss < tr.history[0].loss


def test_digits_mlp_preset_trains_well_and_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))  # an empty cache, whatever ran before
    run = presets.train_preset("digits-mlp")
    assert not run.cached and len(run.history) == presets.get("digits-mlp").train.steps
    steps, snaps = run.trajectory
    assert snaps.shape[1] == sum(p.numel() for p in run.model.parameters())
    loss_end = run.history[-1][1]
    assert loss_end < 0.1
    again = presets.train_preset("digits-mlp")
    assert again.cached
    assert torch.equal(flat_params(again.model), flat_params(run.model))
    assert list(again.trajectory[0]) == list(steps)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_builds_and_its_model_fits_its_data(name):
    m, d = presets.make(name)
    assert models.output_size(m, d.input_shape) >= (d.n_classes or 1)


def _live(steps_per_second=None, steps=400, **kw):
    from landscape.surface.live import LiveConfig, LiveRun

    p = presets.get("moons-mlp")
    m, d = presets.make("moons-mlp")
    cfg = TrainConfig.from_dict({**p.train.to_dict(), "steps": steps})
    return LiveRun(m, d, cfg, LiveConfig(steps_per_second=steps_per_second, grid=11, **kw))


def _wait(pred, timeout=30.0):
    wait_until(pred, timeout, pause=0.02)


def test_live_run_plays_pauses_steps_and_finishes_on_the_one_job():
    import time

    from landscape.core.jobs import BackgroundJob

    run = _live(steps_per_second=200)
    try:
        assert isinstance(run.job, BackgroundJob)
        time.sleep(0.3)
        s = run.state()
        assert (s.status, s.step) == ("ready", 0) and run.job.poll().state == "paused"
        run.play()
        _wait(lambda: run.state().step >= 20)
        assert run.state().status == "playing" and run.playing
        run.pause()
        time.sleep(0.1)
        held = run.state().step
        time.sleep(0.4)
        assert run.state().step == held and run.state().status == "paused"  # the job holds
        run.step(3)
        _wait(lambda: run.state().step == held + 3)
        time.sleep(0.2)
        assert run.state().step == held + 3
        run.set_speed(None)
        run.play()
        _wait(lambda: run.state().status == "finished")
        s = run.state()
        assert s.step == s.total == 400 and len(s.loss) == 400 and s.plane_kind == "pca"
        _wait(lambda: run.state().surface_done == 1.0)
        s = run.state()
        assert s.surface_loss.shape == (11, 11) and np.isfinite(s.surface_loss).all()
        assert len(s.traj_coords) == len(s.off_plane) > 8 and s.message is None
        run.play()  # a finished run stays finished
        assert run.state().status == "finished"
    finally:
        run.close()
    assert run.state().status == "closed" and not run.job.running


def test_live_run_close_stops_a_paused_or_playing_run_quickly():
    import time

    for play in (False, True):
        run = _live(steps_per_second=50, steps=5000)
        if play:
            run.play()
            _wait(lambda run=run: run.state().step > 2)
        t0 = time.perf_counter()
        run.close()
        assert time.perf_counter() - t0 < 2.0
        assert not run.job.running
        assert not [t for t in threading.enumerate() if t.name.startswith("landscape-job-live")]


def test_live_run_divergence_is_an_error_status_with_its_message():
    from landscape.surface.live import LiveConfig, LiveRun

    d = data.load_builtin("digits", n=200)
    run = LiveRun(models.build(MLP, seed=0), d, TrainConfig("gd", lr=1e6, steps=50, loss="mse"),
                  LiveConfig(steps_per_second=None, grid=5))
    try:
        run.play()
        _wait(lambda: run.state().status == "error")
        assert "diverged" in run.state().message and "\n" not in run.state().message
    finally:
        run.close()
