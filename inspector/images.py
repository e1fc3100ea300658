"""Reading image files and camera frames into 8-bit 3-channel BGR, the one form the pipeline takes.

Documented conversions (README, "Input images"): grayscale is replicated to 3 channels, 16-bit is
scaled to 8-bit (value >> 8), an alpha channel is dropped. Anything else is a one-line ImageError.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def to_bgr8(img: np.ndarray, source: str = "frame") -> np.ndarray:
    """Convert a decoded image (any of OpenCV's common layouts) to contiguous uint8 HxWx3 BGR."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {img.dtype} (8- or 16-bit integer images only)")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ImageError(f"{source}: unsupported image shape {img.shape}")
    if min(img.shape[:2]) < 8:
        raise ImageError(f"{source}: image is only {img.shape[1]}x{img.shape[0]} pixels")
    return np.ascontiguousarray(img)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 BGR, or raise ImageError naming the file."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return to_bgr8(img, str(path))


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as a bool array (nonzero = defect)."""
    path = Path(path)
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if img is None:
        raise ImageError(f"{path}: not a readable mask image")
    return img > 127
