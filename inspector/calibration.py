"""Operating threshold from held-out good scores only; test images never set it."""

from __future__ import annotations

import numpy as np

from .modelmeta import Threshold


def calibrate(good_scores: np.ndarray, method: str = "frr", param: float = 0.01) -> Threshold:
    """frr: the score at which a fraction `param` of held-out goods would be rejected (fail if score >= t);
    max: the largest held-out good score times (1 + param); sigma: mean + param * std."""
    s = np.sort(np.asarray(good_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no held-out good scores to calibrate on")
    if method == "frr":
        # Reject the r = floor(param * n) highest goods; with too few images for one, just above the max.
        r = int(np.floor(param * s.size + 1e-9))
        t = float(s[s.size - r]) if r > 0 else float(np.nextafter(s[-1], np.inf))
    elif method == "max":
        t = float(s[-1] * (1.0 + param))
    elif method == "sigma":
        t = float(s.mean() + param * s.std())
    else:
        raise ValueError(f"unknown threshold method {method!r}")
    return Threshold(value=t, method=method, param=float(param), n_images=int(s.size))


def score_stats(scores: np.ndarray) -> dict[str, float]:
    s = np.asarray(scores, dtype=np.float64)
    return {
        "n": int(s.size),
        "mean": float(s.mean()),
        "std": float(s.std()),
        "min": float(s.min()),
        "p50": float(np.quantile(s, 0.5)),
        "p99": float(np.quantile(s, 0.99)),
        "max": float(s.max()),
    }
