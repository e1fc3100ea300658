"""Host-side preprocessing, exactly as the model's metadata records it: resize, then centre crop.

Everything else (channel order, scaling, normalisation) happens inside the model graph, so the
agent, the evaluator and the trainer's export all call this one function.
"""

from __future__ import annotations

import cv2
import numpy as np

from .modelmeta import Preprocess

_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def crop_offsets(pre: Preprocess) -> tuple[int, int]:
    return (pre.resize_h - pre.crop_h) // 2, (pre.resize_w - pre.crop_w) // 2


def prepare(bgr: np.ndarray, pre: Preprocess, interpolation: str | None = None) -> np.ndarray:
    """uint8 HxWx3 BGR of any size -> uint8 crop_h x crop_w x 3, ready for the model's `image` input.

    Images smaller than the resize target are upsampled (documented conversion, not an error).
    """
    interp = _INTERP[interpolation or pre.interpolation]
    if bgr.shape[0] != pre.resize_h or bgr.shape[1] != pre.resize_w:
        bgr = cv2.resize(bgr, (pre.resize_w, pre.resize_h), interpolation=interp)
    y, x = crop_offsets(pre)
    return np.ascontiguousarray(bgr[y : y + pre.crop_h, x : x + pre.crop_w])


def prepare_mask(mask: np.ndarray, pre: Preprocess) -> np.ndarray:
    """A bool ground-truth mask brought onto the same crop as its image."""
    m = prepare(mask.astype(np.uint8)[:, :, None].repeat(3, axis=2) * 255, pre, "nearest")
    return m[:, :, 0] > 127
