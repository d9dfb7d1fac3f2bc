"""``landscape flatness``: the flatness lesson (small vs large batches, SGD vs SAM)."""

from __future__ import annotations

from landscape.cli.common import add_lesson_parser, checked_out, train_and_save
from landscape.lessons.flatness import PRESETS, preset, save, train

NAME = "flatness"


def add_parser(subparsers) -> None:
    """Add the ``flatness`` subcommand to an argparse subparsers object."""
    p = add_lesson_parser(subparsers, "flatness", "flatness: small vs large batches, SGD vs SAM, "
                          "with the top Hessian eigenvalue of each minimum (Keskar et al. 2017)",
                          PRESETS, "lesson", ": four runs, 1-D and 2-D views")
    p.add_argument("--steps", type=int, help="updates per run (default 1000)")
    p.add_argument("--lr", type=float, help="learning rate (default 0.2)")
    p.add_argument("--small-batch", type=int, help="small batch size (default 16)")
    p.add_argument("--large-batch", type=int, help="large batch size (default: full batch)")
    p.add_argument("--rho", type=float, help="SAM radius (default 0.05)")
    p.add_argument("--no-sam", dest="sam", action="store_false", default=None, help="skip the SAM runs")
    p.add_argument("--seed", type=int, help="initial weights and batch order (default 0)")
    p.add_argument("--grid", type=int, help="2-D surface points a side, 0 = none (default 21)")
    p.add_argument("--out", help="result file (.npz or .json)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--threads", type=int, help="torch threads in this process")


def run(args) -> dict:
    """Run the ``flatness`` subcommand from parsed ``args``; returns the JSON summary."""
    out = checked_out(args)
    name = getattr(args, "preset", None) or "lesson"
    cfg = preset(name, **{k: getattr(args, k, None) for k in
                          ("steps", "lr", "small_batch", "large_batch", "rho", "sam", "seed", "grid")})
    res = train_and_save(train, save, cfg, args, out)
    summary = {"out": out, "preset": name, **res.summary()}
    if not getattr(args, "json", False):
        eig = ", ".join(f"{n} {v:.3g}" for n, v in zip(summary["runs"], summary["top_eigenvalue"]))
        print(f"flatness ({summary['seconds']:.1f} s): top Hessian eigenvalue {eig}; large/small batch "
              f"{summary['sharpness_ratio']:.2f}x" + (f" -> {out}" if out else ""))
    return summary
