"""One line per page on what its built-in data are: source, size and scaling."""

from __future__ import annotations

DIGITS = ("UCI handwritten digits (the scikit-learn copy): {n} 8x8 greyscale images, 10 classes, "
          "pixels divided by 16 to [0, 1]{std}")
TOYS = {
    "moons": "two interleaving half-moons, generated: {n} points in 2-D, Gaussian noise 0.1, coordinates unscaled",
    "circles": "two concentric circles, generated: {n} points in 2-D, noise 0.08, coordinates unscaled",
    "spirals": "interleaved spirals, generated: {n} points in 2-D, noise 0.15, coordinates unscaled",
    "gaussians": "Gaussian clusters, generated: {n} points in 10-D, 4 classes, unit variance, unscaled",
}
DEFAULT_N = {"digits": 1797, "moons": 512, "circles": 512, "spirals": 600, "gaussians": 300}


def data_line(spec) -> str:
    """``"Data: ..."`` for a data spec (a built-in's name or ``{"name": ..., options}``)."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec or {})
    name = spec.get("name", "?")
    n = spec.get("n") or DEFAULT_N.get(name)
    n_text = f"{n:,}" if isinstance(n, int) else str(n)
    if name == "digits":
        std = ", then each pixel standardized (mean 0, s.d. 1)" if spec.get("standardize") else ""
        return "Data: " + DIGITS.format(n=n_text + (" of the 1,797" if n and n < 1797 else ""), std=std) + "."
    if name in TOYS:
        return "Data: " + TOYS[name].format(n=n_text) + "."
    if name == "sines":
        return sines_line(n, spec.get("frequencies", ()), spec.get("amplitudes", "equal"))
    return f"Data: {name}."


def sines_line(n, frequencies, amplitudes="equal") -> str:
    """The spectral-bias target: ``n`` grid points and the sum of sines fitted there."""
    ks = [int(k) for k in frequencies]
    k_text = ", ".join(str(k) for k in ks) if len(ks) <= 4 else \
        f"{ks[0]}, {ks[1]}, ..., {ks[-1]}"
    amp = {"equal": "all 1", "rising": "rising with k, i/m for the i-th of m"}.get(
        amplitudes, "as given") if isinstance(amplitudes, str) else "as given"
    return (f"Data: generated, {n:,} points x on a uniform grid over [-1, 1); target "
            f"y = Σ A_k sin(2πkx + φ_k) for k = {k_text} cycles per unit x, amplitudes A_k "
            f"{amp}, phases φ_k uniform from the seed; x and y unscaled.")
