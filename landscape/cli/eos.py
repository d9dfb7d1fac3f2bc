"""``landscape eos``: the edge-of-stability lesson."""

from __future__ import annotations

from landscape.cli.common import add_lesson_parser, add_output_args, checked_out, overrides, train_and_save
from landscape.core.device import warm_up
from landscape.lessons.eos.config import OPTIMIZERS, PRESETS, preset
from landscape.lessons.eos.result import save
from landscape.lessons.eos.run import train

NAME = "eos"


def add_parser(subparsers) -> None:
    """Add the ``eos`` subcommand to an argparse subparsers object."""
    p = add_lesson_parser(subparsers, "eos", "edge of stability: sharpness vs 2/eta during full-batch "
                          "training (Cohen et al. 2021, 2022)", PRESETS, "eos-tanh",
                          ": GD eta 0.2, 1,500 steps")
    p.add_argument("--lr", type=float, help="learning rate eta (default: the preset's)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), help="gd, momentum or adam")
    p.add_argument("--steps", type=int, help="full-batch updates")
    p.add_argument("--eig-every", type=int, help="steps between eigenvalue measurements")
    p.add_argument("--momentum", type=float, help="heavy-ball beta (optimizer momentum)")
    p.add_argument("--seed", type=int, help="initial weights (default 0)")
    add_output_args(p)


def run(args) -> dict:
    """Run the ``eos`` subcommand from parsed ``args``; returns the JSON summary."""
    out = checked_out(args)
    name = getattr(args, "preset", None) or "eos-tanh"
    cfg = preset(name, **overrides(args, "lr", "optimizer", "steps", "eig_every", "momentum", "seed"))
    cfg.validate()
    warm = warm_up()  # the process's first double-backward, kept out of the run's split
    res = train_and_save(train, save, cfg, args, out)
    summary = {"out": out, "preset": name, **res.summary(), "warmup_seconds": round(warm, 3)}
    if not getattr(args, "json", False):
        rng = summary["ratio_second_half"]
        print(f"edge of stability ({cfg.optimizer}, eta {cfg.lr:g}, {summary['steps']} steps, "
              f"{summary['seconds']:.1f} s: {summary['train_seconds']:.1f} training, "
              f"{summary['eig_seconds']:.1f} eigenvalues): threshold {summary['threshold']:.4g}, "
              + ("no crossing" if summary["crossing_step"] is None else
                 f"crossing at step {summary['crossing_step']}")
              + ", sharpness / threshold over the second "
              f"half {'n/a' if rng is None else f'{rng[0]:.3f}-{rng[1]:.3f}'}"
              + (f" -> {out}" if out else ""))
    return summary
