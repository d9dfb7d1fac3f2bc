"""``landscape show``: open a surface file of either origin (ours, or the original
loss-landscape code's) and report or draw it."""

from __future__ import annotations

from pathlib import Path

from landscape.core.errors import LandscapeError

NAME = "show"
VIEWS = ("contour", "3d", "slice")


def add_parser(sub) -> None:
    s = sub.add_parser("show", help="open a surface file (.h5/.npz, ours or the loss-landscape code's)")
    s.add_argument("file", metavar="FILE", help="surface file (.h5 or .npz)")
    s.add_argument("--projection", metavar="PROJ",
                   help="the loss-landscape code's PCA projection file (proj_xcoord, proj_ycoord), "
                        "drawn as the trajectory")
    s.add_argument("--figure", metavar="OUT.html", help="write the figure as a standalone HTML file")
    s.add_argument("--view", choices=VIEWS, default="contour",
                   help="contour (with the trajectory), 3d, or slice (1-D files, or the row y = 0)")
    s.add_argument("--log", action="store_true", help="log10 colour scale")
    s.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    s.add_argument("--threads", type=int, help="torch threads in this process (default 1)")


def figure(res, view: str = "contour", log: bool = False, title: str | None = None):
    """The figure of a loaded surface: ``contour``/``3d`` (2-D files) or ``slice`` (a 1-D file,
    or the 2-D surface's row nearest y = 0)."""
    import numpy as np

    from landscape.surface import figures as plots
    from landscape.surface.result import SurfaceResult

    if res.dims == 1 or view == "slice":
        if res.dims == 2:
            j = int(np.argmin(np.abs(res.y)))
            res = SurfaceResult(res.x, None, res.loss[j], res.acc[j], res.dx, None, res.names,
                                res.shapes, res.meta)
        return plots.slice1d(res, log=log, title=title or "Loss along one direction")
    if view == "3d":
        return plots.surface3d(res, log=log, title=title)
    return plots.contour(res, log=log, title=title)


def run(args) -> dict:
    from landscape.surface import result as surface_file

    if args.figure and Path(args.figure).suffix.lower() != ".html":
        raise LandscapeError(f"--figure must end in .html, got {args.figure}")
    res = surface_file.load(args.file, projection=args.projection)
    if args.projection and res.dims == 1:
        raise LandscapeError("a projection file draws over a 2-D surface; this file is 1-D")
    out = {"file": str(args.file), **surface_file.summary(res)}
    if args.figure:
        fig = figure(res, args.view, args.log, title=f"{Path(args.file).name}: loss surface")
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(args.figure, include_plotlyjs=True)
        out["figure"] = args.figure
    if not args.json:
        at = ", ".join(f"{v:.4g}" for v in out["min_at"])
        print(f"{args.file}: {' x '.join(map(str, out['grid']))} grid ({out['origin']}, "
              f"{out['layout']}), min loss {out['min_loss']:.4g} at ({at}); accuracies read as "
              f"{out['acc_units']}" + (f" -> {args.figure}" if args.figure else ""))
    return out
