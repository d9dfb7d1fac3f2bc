"""The ``landscape`` command (also ``python -m landscape``).

Every subcommand accepts a built-in ``--preset`` or a user model (``--checkpoint`` with
``--data``), writes its result with ``--out``, prints a one-line JSON summary with
``--json``, and on bad input prints one line ``landscape: error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from landscape.cli import common
from landscape.core.errors import LandscapeError

# command name -> module of landscape.cli, in --help order. A module is imported only when
# its command runs (or for --help): a surface never pays for the lessons' imports.
MODULES = {"presets": "presets", "train": "train", "surface": "surface", "eos": "eos",
           "spectral-bias": "spectral_bias", "opposing": "opposing", "hessian": "hessian",
           "show": "show", "movie": "movie", "flatness": "flatness"}


def _module(name: str):
    return importlib.import_module(f"landscape.cli.{MODULES[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with only the command ``only`` fully defined."""
    ap = common.Parser(prog="landscape", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", parser_class=common.Parser)
    for name in MODULES:
        if only is None or name == only:
            _module(name).add_parser(sub)
        else:
            sub.add_parser(name)
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in MODULES else None)
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
            result = _module(args.command).run(args)
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
