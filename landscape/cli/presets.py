"""``landscape presets``: the built-in recipes."""

from __future__ import annotations

NAME = "presets"


def add_parser(sub) -> None:
    pr = sub.add_parser("presets", help="list the built-in presets")
    pr.add_argument("--json", action="store_true", help="print a one-line JSON summary")


def run(args) -> dict:
    from landscape import presets

    rows = {n: p.description for n, p in presets.PRESETS.items()}
    if not args.json:
        for n, d in rows.items():
            print(f"{n:24s} {d}")
    return {"presets": list(rows)}
