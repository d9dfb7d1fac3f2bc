"""``landscape spectral-bias``: the spectral-bias lesson."""

from __future__ import annotations

from landscape.cli.common import add_lesson_parser, add_output_args, checked_out, overrides, train_and_save
from landscape.lessons.spectral_bias import ENCODINGS, PRESETS, preset, save, train

NAME = "spectral-bias"


def add_parser(subparsers) -> None:
    """Add the ``spectral-bias`` subcommand to an argparse subparsers object."""
    p = add_lesson_parser(subparsers, "spectral-bias", "spectral bias: which frequencies a coordinate "
                          "MLP learns first (Rahaman et al. 2019)", PRESETS, "quick",
                          ": 2,000 steps, k = 1..10")
    p.add_argument("--encoding", choices=list(ENCODINGS), help="input encoding (default: none)")
    p.add_argument("--sigma", type=float, help="random Fourier features: std of b_j (default 10)")
    p.add_argument("--levels", type=int, help="positional encoding: levels L (default 8)")
    p.add_argument("--steps", type=int, help="Adam steps (default: the preset's)")
    p.add_argument("--seed", type=int, help="phases, initial weights and RFF (default 0)")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--frequencies", type=int, nargs="+", metavar="K",
                   help="frequencies in cycles per unit x (each below n/4)")
    p.add_argument("--amplitudes", choices=["equal", "rising"], help="target amplitudes")
    p.add_argument("--points", type=int, dest="n", help="grid points on [-1, 1)")
    p.add_argument("--record-every", type=int, help="steps between spectra")
    add_output_args(p)


def run(args) -> dict:
    """Run the ``spectral-bias`` subcommand from parsed ``args``; returns the JSON summary."""
    out = checked_out(args)
    cfg = preset(getattr(args, "preset", None) or "quick",
                 frequencies=tuple(args.frequencies) if getattr(args, "frequencies", None) else None,
                 **overrides(args, "encoding", "sigma", "levels", "steps", "seed", "lr", "amplitudes", "n",
                             "record_every"))
    res = train_and_save(train, save, cfg, args, out)
    summary = {"out": out, "preset": getattr(args, "preset", None) or "quick",
               "encoding": cfg.encoding, **res.summary()}
    if not getattr(args, "json", False):
        half = ", ".join(f"k={k}: {'never' if s is None else s}"
                         for k, s in zip(summary["frequencies"], summary["half_amplitude_step"]))
        rho = summary["spearman"]
        print(f"spectral bias ({cfg.encoding}, {summary['steps']} steps, {summary['seconds']:.1f} s): "
              f"half-amplitude step {half}; Spearman "
              f"{'n/a' if rho is None else f'{rho:.2f}'}" + (f" -> {out}" if out else ""))
    return summary
