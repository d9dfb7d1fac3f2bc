"""``landscape hessian``: top eigenvalues, trace, density and outliers of the Hessian, the
Gauss-Newton matrix or the empirical Fisher (``--operator``); flatness readouts; the
``H = G + R`` decomposition and Papyan's split (``--decompose``)."""

from __future__ import annotations

import json
from pathlib import Path

from landscape.cli.common import add_model_args, resolve_model
from landscape.core.errors import LandscapeError

NAME = "hessian"


def add_parser(sub) -> None:
    h = sub.add_parser("hessian", help="Hessian spectrum: top eigenvalues, trace, density, outliers")
    add_model_args(h)
    h.add_argument("--top-k", type=int, default=5, help="top eigenvalues by Lanczos")
    h.add_argument("--trace", choices=["hutchinson", "hutchpp", "none"], default="hutchpp")
    h.add_argument("--density", action="store_true", help="SLQ eigenvalue density")
    h.add_argument("--probes", type=int, default=60, help="trace probes (HVPs)")
    h.add_argument("--samples", type=int, help="fixed random subset of the data")
    h.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    h.add_argument("--no-outliers", action="store_true", help="skip the bulk/outlier split")
    h.add_argument("--smallest", action="store_true",
                   help="also the most negative eigenvalue (with its residual)")
    h.add_argument("--operator", choices=["hessian", "ggn", "empirical-fisher"],
                   default="hessian", help="curvature matrix: the Hessian H, the Gauss-Newton "
                   "G (= the true Fisher for cross-entropy and squared loss) or the empirical "
                   "Fisher (per-example gradients at the observed labels)")
    h.add_argument("--decompose", action="store_true",
                   help="H = G + R: densities of H, G, R, the largest |eigenvalue| of R, the "
                   "top C-1 subspace overlap of H and G, Papyan's split of G with ranks")
    h.add_argument("--no-flatness", action="store_true",
                   help="skip the flatness readouts (adaptive sharpness, basin width)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", help="result file (.npz): the whole report, loadable with "
                   "landscape.hessian.report.SpectrumReport.load")


def run(args) -> dict:
    import numpy as np

    from landscape.hessian import report as spectrum

    if args.out and Path(args.out).suffix.lower() != ".npz":
        raise LandscapeError(f"--out must end in .npz, got {args.out}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model, d, loss, _, origin = resolve_model(args)
    rep = spectrum.compute_report(
        model, d, loss, top_k=args.top_k, outliers=not args.no_outliers, trace=args.trace,
        probes=args.probes, density=args.density, samples=args.samples, dtype=args.dtype,
        smallest=args.smallest, seed=args.seed, operator=args.operator,
        flat=not args.no_flatness, decomposition=args.decompose)
    k = min(args.top_k, len(rep.eig.eigenvalues))
    out = {"top_eigenvalues": rep.eig.eigenvalues[:k].tolist(),
           "residuals": rep.eig.residuals[:k].tolist(),
           "trace": rep.trace.trace if rep.trace else None,
           "trace_stderr": rep.trace.stderr if rep.trace else None,
           "trace_method": args.trace,
           "n_outliers": rep.split.n_outliers if rep.split else None,
           "outlier_verdict": rep.split.verdict if rep.split else None,
           "rho": rep.split.rho.tolist() if rep.split else None,
           "hvps": rep.meta["hvps"], "n_params": rep.meta["n_params"],
           "n_examples": rep.meta["n_examples"], "dtype": args.dtype,
           "seconds": round(rep.meta["seconds"], 3), "source": origin,
           "operator": args.operator}
    if rep.flatness is not None:
        out["flatness"] = rep.flatness.summary()
    if rep.decompose is not None:
        dec = rep.decompose
        out["residual_top_eigenvalue"] = dec.residual_top_eigenvalue
        step = max(1, len(dec.grid) // 200)
        out["decompose"] = {**dec.summary(), "density_grid": dec.grid[::step].tolist(),
                            "density_h": dec.density_h[::step].tolist(),
                            "density_g": dec.density_g[::step].tolist(),
                            "density_r": dec.density_r[::step].tolist()}
    if rep.density is not None:
        out["density_sigma"] = rep.density.sigma
    if rep.smallest is not None:
        out["smallest_eigenvalue"] = float(rep.smallest.eigenvalues[0])
        out["smallest_residual"] = float(rep.smallest.residuals[0])
    if args.out:  # arrays eigenvalues, residuals, rho, density_grid, density; meta_json = out
        rep.save(args.out, summary=json.loads(json.dumps(out, default=str)))
        out["out"] = args.out
    if not args.json:
        print(f"top eigenvalues {np.round(out['top_eigenvalues'], 6).tolist()} "
              f"(max residual {max(out['residuals']):.2g}); trace {out['trace']}; "
              f"outliers: {rep.split.message if rep.split else 'n/a'}; {out['hvps']} HVPs, "
              f"{out['seconds']} s; operator {args.operator}")
        if rep.flatness is not None:
            f = rep.flatness
            print(f"flatness: adaptive sharpness {f.adaptive_sharpness:.4g}; basin width at "
                  f"loss + {f.delta} {f.basin_width:.4g} (quadratic {f.basin_quadratic:.4g})")
        if rep.decompose is not None:
            d = rep.decompose
            print(f"H = G + R: residual_top_eigenvalue {d.residual_top_eigenvalue:.6g}; top-"
                  f"{d.overlap_k} subspace overlap of H and G {d.overlap:.3f}" +
                  ("; Papyan ranks " + ", ".join(f"{k} {v['rank']}" for k, v in d.papyan.items()
                                                 if isinstance(v, dict)) if d.papyan else ""))
    return out
