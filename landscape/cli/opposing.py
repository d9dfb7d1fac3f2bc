"""``landscape opposing``: the opposing-signals lesson."""

from __future__ import annotations

import math

from landscape.cli.common import add_lesson_parser, add_output_args, checked_out, overrides, train_and_save
from landscape.lessons.opposing import PRESETS, preset, save, train

NAME = "opposing"


def fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


# --------------------------------------------------------------------------- CLI

def add_parser(subparsers) -> None:
    """Add the ``opposing`` subcommand to an argparse subparsers object."""
    p = add_lesson_parser(subparsers, "opposing", "opposing signals: examples whose losses swing in "
                          "anti-phase at the edge of stability (Rosenfeld & Risteski 2023)", PRESETS,
                          "opposing-planted")
    p.add_argument("--steps", type=int, help="gradient-descent steps (default: the preset's, 1,500)")
    p.add_argument("--lr", type=float, help="step size (default: lr-factor x 2 / lambda_0)")
    p.add_argument("--lr-factor", type=float, help="step size as a multiple of 2 / lambda_0 (default 0.5)")
    p.add_argument("--window", type=int, help="statistics over the last this many steps (default 400)")
    p.add_argument("--seed", type=int, help="plant choice, initial weights, controls (default 0)")
    p.add_argument("--alpha", type=float, help="norm of the planted feature (0: none)")
    p.add_argument("--retrain", action="store_true", help="also retrain without the detected set")
    add_output_args(p)


def run(args) -> dict:
    """Run the ``opposing`` subcommand from parsed ``args``; returns the JSON summary."""
    out = checked_out(args)
    name = getattr(args, "preset", None) or "opposing-planted"
    cfg = preset(name, retrain=True if getattr(args, "retrain", False) else None,
                 **overrides(args, "steps", "lr", "lr_factor", "window", "seed", "alpha"))
    res = train_and_save(train, save, cfg, args, out)
    summary = {"out": out, "preset": name, **res.summary()}
    if not getattr(args, "json", False):
        print(f"opposing signals ({name}, {summary['steps']} steps, {summary['seconds']:.1f} s): "
              f"groups of {summary['label_a']}s and {summary['label_b']}s "
              f"({len(summary['group_a'])} + {len(summary['group_b'])}), corr "
              f"{fmt(summary['group_loss_corr'])} (controls {fmt(summary['control_corr_median'])}), "
              f"amplitude ratio {fmt(summary['amplitude_ratio'], '.1f')}, precision@m "
              f"{fmt(summary['precision_at_m'])}, vote share {fmt(summary['vote_share'])}, "
              f"sharpness {fmt(summary['sharpness_ratio'])} x 2/lr" + (f" -> {out}" if out else ""))
    return summary
