r"""The statistics of an opposing-signals run, all on the loss matrix ``L`` [T+1, N]: the loss
``0.5 ||f(x_i) - onehot(y_i)||^2`` of example ``i`` after ``t`` full-batch updates.

- **Movers** at step ``t``: the examples whose loss rises most and falls most from ``t`` to
  ``t + 1`` (``step_movers``).
- **Ranking** (label-free): over the last ``window`` steps, ``score_i = sum_t |L[t+1, i] -
  L[t, i]|``; the detected set is the top ``m`` (``m`` = the planted count, or ``detect``
  without a plant). ``precision@m`` = fraction of the top ``m`` that is planted.
- **Groups.** The detected set split by label: group A = its members of the most common
  label, group B = of the second most common. ``purity = (|A| + |B|) / m``. ``phase
  agreement``: the detected set split label-free by the sign of its first principal
  component of loss changes, compared with the label split (1 when they coincide).
- **Oscillation.** ``amp(G) = std_t(Delta mean_{i in G} L[t, i])`` over the window (loss
  units); a pair's amplitude is the mean of its two groups'. ``amplitude ratio`` = the pair's
  amplitude over the median of ``controls`` (200) matched random pairs: same classes and
  sizes, drawn from the examples outside the pair. Groups chosen by their movement in the
  same window carry a selection bias (about 10x even without a plant); groups fixed in
  advance (the planted ones) carry none.
- **Group loss correlation.** ``corr(Delta mean_A L, Delta mean_B L)`` over the window, next
  to the same statistic for the matched random pairs (median, 5-95%) and its percentile
  among them: anti-correlation alone appears in unplanted pairs too.
- **Vote share.** For each planted example ``i`` with classes ``(c1, c2)``, the logit margin
  ``s_i(t) = f_c1(x_i) - f_c2(x_i)`` splits exactly into the part of the rest of the image
  ``r_i(t) = f_c1(x_i^0) - f_c2(x_i^0)`` (``x_i^0``: the same image without the plant) and
  the plant's part ``p_i(t) = s_i(t) - r_i(t)``. With ``Delta`` the change from one step to
  the next, over the window and all planted examples,

  .. math::  \text{vote share} = \frac{\sum_{t,i} \Delta p_i(t)\,\Delta s_i(t)}
                                       {\sum_{t,i} \Delta s_i(t)^2},

  the least-squares share of the margin's swing carried by the plant: near 1 when it
  drives the oscillation, near 0 when it is a bystander.
- **Controls band.** 5-95% of the matched random subsets' mean loss at every step.
- **Spikes.** Steps where the overall loss is a local maximum at least ``factor`` times the
  median of the previous ``SPIKE_LOOKBACK`` (20) steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from landscape.core.errors import LandscapeError
from landscape.lessons.opposing.config import BAND, SPIKE_LOOKBACK


def per_example_losses(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``0.5 ||f(x_i) - onehot(y_i)||^2`` for every example, shape [N] (one forward pass)."""
    from landscape.core.losses import per_example_loss

    return per_example_loss(model(X), y, "mse")


def movement_scores(L: np.ndarray, window: int) -> np.ndarray:
    """``score_i = sum_t |L[t+1, i] - L[t, i]|`` over the last ``window`` changes, [N]."""
    L = np.asarray(L, np.float64)
    if L.ndim != 2 or len(L) < 2:
        raise LandscapeError("the loss matrix needs at least two steps")
    w = int(min(window, len(L) - 1))
    return np.abs(np.diff(L[-w - 1:], axis=0)).sum(0)


def rank_by_movement(L: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, score)``: examples by decreasing movement score (ties: lower index first)."""
    score = movement_scores(L, window)
    return np.argsort(-score, kind="stable"), score


def step_movers(L: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rise, fall)``: the ``k`` examples whose loss rises most and falls most from step
    ``t`` to ``t + 1`` (largest change first / most negative first)."""
    L = np.asarray(L)
    if not 0 <= t < len(L) - 1:
        raise LandscapeError(f"step {t} has no next step (the run has {len(L) - 1} steps)")
    d = np.asarray(L[t + 1], np.float64) - np.asarray(L[t], np.float64)
    order = np.argsort(-d, kind="stable")
    k = min(int(k), len(d))
    return order[:k], np.argsort(d, kind="stable")[:k]


def precision_at(ranked: np.ndarray, planted: np.ndarray, m: int | None = None) -> float | None:
    """Fraction of the top ``m`` (default ``len(planted)``) of ``ranked`` that is planted."""
    planted = np.asarray(planted)
    if planted.size == 0:
        return None
    m = len(planted) if m is None else int(m)
    return float(np.isin(np.asarray(ranked)[:m], planted).mean())


def split_by_label(detected: np.ndarray, y: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(label_a, label_b, A, B)``: the detected examples (kept in their order) of the most
    common and the second most common label (ties: the label seen first in ``detected``)."""
    detected = np.asarray(detected)
    labels = np.asarray(y)[detected]
    first: dict[int, int] = {}
    count: dict[int, int] = {}
    for j, lab in enumerate(labels.tolist()):
        first.setdefault(lab, j)
        count[lab] = count.get(lab, 0) + 1
    if len(count) < 2:
        raise LandscapeError("the detected examples all share one label: no opposing pair to split")
    top = sorted(count, key=lambda c: (-count[c], first[c]))
    a, b = int(top[0]), int(top[1])
    return a, b, detected[labels == a], detected[labels == b]


def matched_subsets(y: np.ndarray, group: np.ndarray, n: int, rng: np.random.Generator,
                    exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` random subsets [n, len(group)], each with exactly the label counts of ``group``,
    drawn without replacement within a subset from the examples outside ``exclude`` (the
    group itself is always excluded). A class with too few others left falls back to all of
    its examples outside the group."""
    y = np.asarray(y)
    group = np.asarray(group)
    excl = np.union1d(group, np.asarray(exclude if exclude is not None else [], np.int64))
    cols = []
    labels, counts = np.unique(y[group], return_counts=True)
    for lab, cnt in zip(labels, counts):
        pool = np.setdiff1d(np.flatnonzero(y == lab), excl)
        if len(pool) < cnt:
            pool = np.setdiff1d(np.flatnonzero(y == lab), group)
        if len(pool) < cnt:
            raise LandscapeError(f"class {lab} has too few examples outside the group to draw "
                                 f"{cnt} matched controls")
        cols.append(np.stack([rng.choice(pool, cnt, replace=False) for _ in range(int(n))]))
    return np.concatenate(cols, 1) if cols else np.zeros((int(n), 0), np.int64)


def group_curve(L: np.ndarray, idx) -> np.ndarray:
    """Mean loss of the examples ``idx`` at every step [T]."""
    return np.asarray(L, np.float64)[:, np.asarray(idx)].mean(1)


def amplitude(curve: np.ndarray) -> float:
    """Oscillation amplitude of a loss curve: the std of its step-to-step changes."""
    return float(np.std(np.diff(np.asarray(curve, np.float64))))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def pair_statistics(Lw: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, controls: int,
                    rng: np.random.Generator, exclude: np.ndarray | None = None) -> dict:
    """Amplitude and loss-change correlation of the pair (A, B) over the window's loss matrix
    ``Lw`` [W+1, N], against ``controls`` matched random pairs (same classes and sizes,
    drawn outside A, B and ``exclude``)."""
    Lw = np.asarray(Lw, np.float64)
    excl = np.union1d(np.union1d(A, B), np.asarray(exclude if exclude is not None else [], np.int64))
    ca = matched_subsets(y, A, controls, rng, excl)
    cb = matched_subsets(y, B, controls, rng, excl)
    dA, dB = np.diff(group_curve(Lw, A)), np.diff(group_curve(Lw, B))
    dL = np.diff(Lw, axis=0)
    cA = dL[:, ca].mean(2)  # [W, controls]
    cB = dL[:, cb].mean(2)
    amp = 0.5 * (dA.std() + dB.std())
    camp = 0.5 * (cA.std(0) + cB.std(0))
    corr = _corr(dA, dB)
    ccorr = np.array([_corr(cA[:, j], cB[:, j]) for j in range(cA.shape[1])])
    ok = np.isfinite(ccorr)
    med = float(np.median(camp))
    return {"amplitude": float(amp), "control_amplitude_median": med,
            "amplitude_ratio": float(amp / med) if med > 0 else float("inf"),
            "corr": corr,
            "control_corr_median": float(np.median(ccorr[ok])) if ok.any() else None,
            "control_corr_band": [float(v) for v in np.percentile(ccorr[ok], BAND)] if ok.any() else None,
            "corr_percentile": float((ccorr[ok] <= corr).mean()) if ok.any() and math.isfinite(corr) else None,
            "control_amplitudes": camp, "control_corrs": ccorr, "control_a": ca, "control_b": cb}


def control_band(L: np.ndarray, subsets: np.ndarray, q=BAND) -> np.ndarray:
    """[2, T]: the ``q`` percentiles over subsets of their mean loss at each step."""
    L = np.asarray(L, np.float32)
    if subsets.size == 0:
        return np.full((2, len(L)), np.nan)
    means = np.stack([L[:, s].mean(1) for s in subsets], 1)  # [T, n]
    return np.percentile(means, q, axis=1)


def vote_share(margin: np.ndarray, margin_clean: np.ndarray) -> float | None:
    """The patch's least-squares share of the margin's step-to-step swing (module docstring):
    ``sum dp ds / sum ds^2`` with ``s = margin``, ``p = margin - margin_clean`` ([W+1, m])."""
    s = np.diff(np.asarray(margin, np.float64), axis=0)
    p = np.diff(np.asarray(margin, np.float64) - np.asarray(margin_clean, np.float64), axis=0)
    den = float((s * s).sum())
    return float((p * s).sum() / den) if den > 0 else None


def phase_agreement(Lw: np.ndarray, A: np.ndarray, B: np.ndarray) -> float | None:
    """How well a label-free phase split matches the label split: members of A and B are
    split by the sign of their loading on the first principal component of their loss
    changes over the window; the fraction placed with their own label's side (best of the
    two sign assignments)."""
    members = np.concatenate([A, B])
    if len(A) == 0 or len(B) == 0:
        return None
    D = np.diff(np.asarray(Lw, np.float64)[:, members], axis=0)
    D = D - D.mean(0)
    if not np.any(D):
        return None
    _, _, vt = np.linalg.svd(D, full_matrices=False)
    side = vt[0] > 0
    want = np.concatenate([np.ones(len(A), bool), np.zeros(len(B), bool)])
    agree = float((side == want).mean())
    return max(agree, 1.0 - agree)


def find_spikes(loss: np.ndarray, factor: float = 1.1, lookback: int = SPIKE_LOOKBACK) -> np.ndarray:
    """Steps ``t`` where ``loss[t]`` is a local maximum and at least ``factor`` times the
    median of the ``lookback`` steps before it."""
    loss = np.asarray(loss, np.float64)
    out = []
    for t in range(1, len(loss) - 1):
        if loss[t] >= loss[t - 1] and loss[t] > loss[t + 1]:
            base = np.median(loss[max(0, t - lookback):t])
            if base > 0 and loss[t] >= factor * base:
                out.append(t)
    return np.asarray(out, np.int64)

