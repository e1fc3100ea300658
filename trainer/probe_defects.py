"""Validation defects for `--scoring auto`: families the CSE embedder never trains on.

Comparing heads on the training generator's own defects favours CSE, which was optimised to
separate exactly those (measured on magnetic_tile: CSE 0.96 vs patch 0.91 on them, while on the
real defects patch wins by far). So auto compares the heads on small, local defects of other
kinds, like real ones: scratches (thin lines), spots (soft dark or bright blobs) and cut-paste
patches (a piece of another good image, turned and re-lit). Neither head has seen them.
"""

from __future__ import annotations

import cv2
import numpy as np

PROBES = ("scratch", "spot", "cutpaste")


def _contrast_value(img: np.ndarray, rng: np.random.Generator) -> float:
    return float(np.clip(img.mean() + rng.choice([-1.0, 1.0]) * rng.uniform(50, 110), 0, 255))


def scratch(img: np.ndarray, rng: np.random.Generator, others: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    p0 = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
    angle, length = rng.uniform(0, np.pi), rng.uniform(0.07, 0.27) * min(h, w)
    p1 = p0 + length * np.array([np.cos(angle), np.sin(angle)])
    out = img.copy()
    v = _contrast_value(img, rng)
    cv2.line(out, tuple(int(c) for c in p0), tuple(int(c) for c in p1), (v, v, v), int(rng.integers(1, 4)), cv2.LINE_AA)
    return out


def spot(img: np.ndarray, rng: np.random.Generator, others: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    centre = (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h))
    axes = tuple(int(a) for a in rng.integers(3, max(4, min(h, w) // 22), size=2))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (5, 5), 1.5)[:, :, None]
    return np.clip(img * (1 - mask) + _contrast_value(img, rng) * mask, 0, 255).astype(np.uint8)


def cutpaste(img: np.ndarray, rng: np.random.Generator, others: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    src = others[rng.integers(len(others))]
    ph, pw = (int(rng.uniform(0.05, 0.18) * s) for s in (h, w))
    y0, x0 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    patch = np.ascontiguousarray(src[y0 : y0 + ph, x0 : x0 + pw][::-1, ::-1])
    patch = cv2.convertScaleAbs(patch, alpha=rng.uniform(0.6, 1.4), beta=rng.uniform(-30, 30))
    y1, x1 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    out = img.copy()
    out[y1 : y1 + ph, x1 : x1 + pw] = patch
    return out


def probe_batch(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image once with each family (3N probes: small validation splits need the numbers)."""
    return np.stack([fn(c, rng, crops) for fn in (scratch, spot, cutpaste) for c in crops])
