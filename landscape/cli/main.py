"""The ``landscape`` command (also ``python -m landscape``).

Every subcommand accepts a built-in ``--preset`` or a user model (``--checkpoint`` with
``--data``), writes its result with ``--out``, prints a one-line JSON summary with
``--json``, and on bad input prints one line ``landscape: error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from landscape.cli import common, eos, flatness, hessian, movie, opposing, presets, spectral_bias, surface, train
from landscape.cli import show as show_file
from landscape.core.errors import LandscapeError

SUBCOMMANDS = (presets, train, surface, eos, spectral_bias, opposing, hessian, show_file, movie,
               flatness)  # in --help order
COMMANDS = {m.NAME: m.run for m in SUBCOMMANDS}


def build_parser() -> argparse.ArgumentParser:
    ap = common.Parser(prog="landscape", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", parser_class=common.Parser)
    for m in SUBCOMMANDS:
        m.add_parser(sub)
    return ap


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        from landscape.core.device import set_threads

        # One torch thread unless asked: small models on a few cores run fastest that way
        # (surfaces get their parallelism from worker processes instead).
        set_threads(getattr(args, "threads", None) or 1)
        import warnings

        with warnings.catch_warnings():  # torch's own pytree deprecation, raised while a .pt2 is read
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            result = COMMANDS[args.command](args)
        if getattr(args, "json", False):
            print(json.dumps(common.finite(result), allow_nan=False,
                             default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        return 0
    except LandscapeError as e:
        print(f"landscape: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless debugging
        if os.environ.get("LANDSCAPE_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"landscape: internal error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
