"""Clocks: warm-up, then repeated calls until a time budget is spent; percentiles of what was seen.

Every backend's call returns host arrays (onnxruntime and TensorRT copy their outputs to the host
before returning; the PyTorch wrapper calls torch.cuda.synchronize), so a clock read after the
call sees finished work.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def summarize(ms: list[float] | np.ndarray) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(a.mean()), 3), "min": round(float(a.min()), 3), "max": round(float(a.max()), 3)}


def repeat(fn: Callable[[], object], seconds: float, min_iters: int = 3, max_iters: int = 1_000_000,
           warmup_iters: int = 3, warmup_s: float = 0.0) -> list[float]:
    """Call fn warmup_iters times (and for at least warmup_s), then until `seconds` have passed and at
    least min_iters calls were made; returns each timed call's duration in milliseconds."""
    t_end = time.perf_counter() + warmup_s
    for i in range(max(warmup_iters, 0)):
        fn()
    while time.perf_counter() < t_end:
        fn()
    ms: list[float] = []
    stop = time.perf_counter() + seconds
    while (len(ms) < min_iters or time.perf_counter() < stop) and len(ms) < max_iters:
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms
