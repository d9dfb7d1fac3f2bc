"""`landscape movie`: HTML with Plotly frames, GIF and MP4 read back with imageio."""

import json
import re

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.core.errors import LandscapeError
from landscape.surface import movie


@pytest.fixture(scope="module")
def data(trained_mlp, small_digits):
    tr = trained_mlp
    hist = [(e.step, e.loss, e.accuracy) for e in tr.history]
    return movie.movie_data(tr.model, small_digits, (tr.trajectory.steps, tr.trajectory.params),
                            history=hist, grid=9, workers=1)


def _frames_differ(frames) -> None:
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames[:-1], frames[1:])]
    assert min(diffs) > 0.05, diffs  # every frame moves (marker, trail, loss curve, step text)


def test_cli_html_has_12_frames_play_pause_and_slider(tmp_path, capsys):
    out = tmp_path / "m.html"
    assert main(["movie", "--preset", "digits-mlp", "--frames", "12", "--grid", "7", "--workers", "1",
                 "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    info = json.loads(cap.out)
    assert info["frames"] == 12 and info["format"] == "html"
    assert "movie: frame 12/12" in cap.err and "movie: PCA surface" in cap.err  # progress on stderr
    html = out.read_text()
    assert "addFrames" in html
    names = set(re.findall(r'"name":\s*"frame(\d+)"', html))
    assert len(names) >= 12
    assert '"label":"Play"' in html.replace(" ", "") and '"label":"Pause"' in html.replace(" ", "")
    assert '"sliders"' in html and len(re.findall(r'"method":\s*"animate"', html)) >= 12 + 2
    assert not re.search(r'<script[^>]+src=', html) and len(html) > 1_000_000  # plotly.js inline: offline


def test_cli_gif_frames_differ_and_are_wide(tmp_path, capsys):
    import imageio.v3 as iio

    out = tmp_path / "m.gif"
    assert main(["movie", "--preset", "digits-mlp", "--frames", "12", "--grid", "7", "--workers", "1",
                 "--out", str(out)]) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape[0] >= 12 and frames.shape[2] >= 800
    _frames_differ(frames[..., :3])


@pytest.mark.parametrize("view", ["contour", "3d"])
def test_mp4_frames_differ_and_are_wide(data, tmp_path, view):
    import imageio.v2 as iio

    out = tmp_path / f"m_{view}.mp4"
    info = movie.write_movie(data, out, frames=12, fps=6, view=view, width=800)
    assert info["width"] >= 800 and info["width"] % 16 == 0
    reader = iio.get_reader(str(out), format="FFMPEG")
    frames = [f for f in reader]
    reader.close()
    assert len(frames) >= 12 and frames[0].shape[1] >= 800
    _frames_differ(frames)


def test_html_3d_and_frame_states(data, tmp_path):
    fig = movie.html_figure(data, frames=15, fps=5, view="3d")
    assert len(fig.frames) == 15
    assert fig.layout.updatemenus[0].buttons[0].label == "Play"
    assert len(fig.layout.sliders[0].steps) == 15
    # the marker moves from the first snapshot to the final model at (0, 0)
    first, last = movie.frame_state(data, 0), movie.frame_state(data, len(data.steps) - 1)
    assert np.allclose(first["point"], data.coords[0]) and np.allclose(last["point"], [0, 0], atol=1e-4)
    assert last["step"] == data.steps[-1]
    # more frames than snapshots: still every frame at a different position
    pos = [movie.frame_state(data, f)["point"] for f in movie.frame_positions(data, 3 * len(data.steps))]
    assert all(np.abs(a - b).sum() > 0 for a, b in zip(pos[:-1], pos[1:]))


def test_bad_format_and_options_are_one_line_errors(tmp_path, capsys):
    assert main(["movie", "--preset", "digits-mlp", "--out", str(tmp_path / "m.avi")]) == 2
    err = capsys.readouterr().err
    assert "cannot write a movie as .avi" in err and ".gif" in err and len(err.strip().splitlines()) == 1
    for kwargs, msg in (({"frames": 1}, "--frames"), ({"fps": 0}, "--fps"), ({"view": "top"}, "view"),
                        ({"width": 400}, "800 px")):
        opts = {"frames": 12, "fps": 10, "view": "contour", "width": 1024, **kwargs}
        with pytest.raises(LandscapeError, match=msg):
            movie.check_options(tmp_path / "m.gif", **opts)
    assert not (tmp_path / "m.avi").exists()


def test_movie_bytes_gif_reads_back_and_cancel_stops_between_frames(data):
    import threading

    import imageio.v3 as iio

    from landscape.core.errors import Cancelled

    done = []
    blob, info = movie.movie_bytes(data, ".gif", frames=3, fps=5, width=800,
                                   progress=lambda k, n: done.append((k, n)))
    assert blob[:6] in (b"GIF87a", b"GIF89a") and info["bytes"] == len(blob) and "out" not in info
    frames = iio.imread(blob, index=None, extension=".gif")
    assert frames.shape[0] == 3 and frames.shape[2] == info["width"] >= 800
    assert done == [(1, 3), (2, 3), (3, 3)]
    # cancelled after the second frame: no third frame is drawn, the error says where it stopped
    cancel = threading.Event()
    drawn = []

    def progress(k, n):
        drawn.append(k)
        if k == 2:
            cancel.set()

    with pytest.raises(Cancelled, match="after 2 of 5 frames"):
        movie.movie_bytes(data, ".mp4", frames=5, width=800, progress=progress, cancel=cancel)
    assert drawn == [1, 2]
    with pytest.raises(Cancelled):
        movie.movie_bytes(data, ".html", frames=5, cancel=cancel)


def test_page_movie_job_reports_surface_then_frames(trained_mlp, small_digits):
    from ui.movie import make

    tr = trained_mlp
    hist = [(e.step, e.loss, e.accuracy) for e in tr.history]

    def source(cancel):
        return {"model": tr.model, "data": small_digits, "loss": "cross_entropy",
                "trajectory": (tr.trajectory.steps, tr.trajectory.params), "history": hist}

    reports = []
    res = make(source, ".html", 4, "contour", "a test movie", grid=5,
               progress=lambda d, t, *p: reports.append((d, t, p[0] if p else "")))
    assert res["suffix"] == ".html" and res["frames"] == 4 and res["size"] == len(res["bytes"])
    assert b"addFrames" in res["bytes"] and res["n_snapshots"] == len(tr.trajectory.steps)
    last = reports[-1]
    assert last[0] == last[1] == 5 * 5 + 4 and "frames: 4 of 4" in last[2]
    assert any("surface: 25 of 25 points" in r[2] for r in reports)
    counts = [d for d, t, _ in reports if t == 29]
    assert counts == sorted(counts)  # progress only moves forward
    with pytest.raises(LandscapeError, match="cannot write a movie as .avi"):
        make(source, ".avi", 4, "contour", "x", grid=5)


def test_live_run_movie_source_is_the_run_so_far():
    import time

    from landscape import presets
    from landscape.core.params import flat_params
    from landscape.core.train import TrainConfig
    from landscape.surface.live import LiveConfig, LiveRun

    p = presets.get("moons-mlp")
    m, d = presets.make("moons-mlp")
    cfg = TrainConfig.from_dict({**p.train.to_dict(), "steps": 60, "snapshot_every": 10})
    run = LiveRun(m, d, cfg, LiveConfig(steps_per_second=None, grid=11))
    try:
        run.step(30)
        end = time.perf_counter() + 30
        while len(run.state().steps) < 30 and time.perf_counter() < end:  # the 30th step recorded
            time.sleep(0.05)
        src = run.movie_source()
    finally:
        run.close()
    steps, snaps = src["trajectory"]
    assert list(steps) == [0, 10, 20, 30] and snaps.shape == (4, flat_params(src["model"]).numel())
    assert np.allclose(snaps[-1], flat_params(src["model"]).numpy(), atol=1e-6)  # the last is the model
    assert [h[0] for h in src["history"]] == list(range(1, 31)) and src["loss"] == cfg.loss
    res = movie.movie_data(src["model"], src["data"], src["trajectory"], src["loss"],
                           history=src["history"], grid=5, workers=1)
    assert np.allclose(res.coords[-1], [0, 0], atol=1e-5) and len(res.snap_loss) == 4
