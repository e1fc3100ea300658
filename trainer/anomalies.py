"""Synthesized anomalies for CSE contrastive training (paper section 3.1, after DRAEM).

CSE trains its feature extractor contrastively: a defect-free image is paired with a copy
carrying a synthetic defect. Each defect lives inside a Perlin-noise mask (irregular blobs
of random scale and orientation) and is one of three kinds, drawn with equal probability:

- textural:   a foreign texture (DTD in the paper, or a procedural stand-in) blended in with
              opacity beta in [0, 0.8], exactly DRAEM's formula;
- structural: the image itself, augmented and shuffled in a grid of cells, so the defect has
              the right colours and texture but a broken structure;
- blur:       a Gaussian-blurred copy of the image (out-of-focus / smeared surface).

Defects are generated on the fly, never precomputed: fresh defects every epoch keep the
network from memorising them. That makes this module a training hot path, so it is numpy
and OpenCV only, vectorised, and everything random comes from the caller's
``np.random.Generator``: the same seed gives exactly the same output.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

KINDS = ("textural", "structural", "blur")

# Perlin retries before falling back to an ellipse; low-frequency noise with an unlucky
# lattice can stay under 0.5 everywhere, so a few tries are normal, many are not.
_MAX_MASK_TRIES = 16
# Perlin noise is smooth (C2 fade curve), so evaluating it at 4 samples per lattice cell and
# upsampling bicubically matches full resolution to within about a pixel at the mask edge
# (IoU ~0.95 with the exact mask at the finest scales, where the error is largest). At
# 224 px that is 3x fewer samples at the finest scale (7 px cells), 12x at the next, and so
# on; it also keeps the temporaries small, and allocating image-sized float arrays
# (page faults) costs more than the arithmetic on them.
_SAMPLES_PER_CELL = 4
_MASK_THRESHOLD = 0.5
_BETA_MAX = 0.8  # DRAEM: texture opacity in [0, 0.8]
_BLUR_KERNELS = (5, 7, 9, 11, 13, 15)
_GRID_SIZES = (4, 8)
_IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .bmp .dib .tif .tiff .webp .pbm .pgm .ppm .pnm .jp2".split()
)


# ----------------------------------------------------------------------------- Perlin noise


@functools.lru_cache(maxsize=64)
def _sample_positions(n: int, m: int) -> np.ndarray:
    """m evenly spread sample positions along an axis of n pixels, relative to the image
    centre, placed where cv2.resize puts source pixel centres when it scales m -> n; so
    resizing m samples to n pixels interpolates between exactly these positions.

    Cached: the same few image sizes recur for a whole training run. Read-only so a caller
    cannot corrupt the cache."""
    pos = (np.arange(m, dtype=np.float32) + 0.5) * np.float32(n / m) - np.float32(0.5 + (n - 1) / 2)
    pos.flags.writeable = False
    return pos


def _fade_(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic 6t^5 - 15t^4 + 10t^3 (zero 1st and 2nd derivatives at lattice points),
    on a copy. In-place steps throughout this section: chains of temporaries the size of
    an image cost more in allocation and page faults than the arithmetic itself."""
    r = t * np.float32(6)
    r -= 15
    r *= t
    r += 10
    r *= t
    r *= t
    r *= t
    return r


def _lerp_(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a + t * (b - a), computed into b."""
    b -= a
    b *= t
    b += a
    return b


def _perlin(h: int, w: int, res_y: float, res_x: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """float32 HxW gradient noise in about [-1, 1] with res_y x res_x lattice cells across the
    image, rotated by `angle` radians.

    Evaluated directly at rotated coordinates rather than generated and then warped, so the
    rotated field has no empty corners and needs no oversized canvas."""
    # Enough samples for _SAMPLES_PER_CELL per lattice cell, never more than the pixels.
    cell = min(h / res_y, w / res_x)
    mh, mw = (min(n, math.ceil(n * _SAMPLES_PER_CELL / cell)) for n in (h, w))
    y = _sample_positions(h, mh)[:, None]
    x = _sample_positions(w, mw)[None, :]
    c, s = math.cos(angle), math.sin(angle)
    (ux, uy), (vx, vy) = (c * res_x / w, s * res_x / w), (-s * res_y / h, c * res_y / h)
    # Shift to non-negative lattice coordinates with a random phase (so masks do not all
    # have a lattice point, where Perlin noise is 0, at the same pixel). The extent comes
    # from the pixel-centre rectangle, which holds every sample, so the lattice and hence
    # the noise do not depend on the sampling density.
    hx, hy = (w - 1) / 2, (h - 1) / 2
    u0 = abs(ux) * hx + abs(uy) * hy + rng.random()
    v0 = abs(vx) * hx + abs(vy) * hy + rng.random()
    u = x * np.float32(ux) + (y * np.float32(uy) + np.float32(u0))
    v = x * np.float32(vx) + (y * np.float32(vy) + np.float32(v0))
    nu = int(2 * (abs(ux) * hx + abs(uy) * hy) + 1) + 2
    nv = int(2 * (abs(vx) * hx + abs(vy) * hy) + 1) + 2
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = np.subtract(u, iu, out=u), np.subtract(v, iv, out=v)  # float32 fractions
    theta = rng.random(nv * nu, dtype=np.float32) * np.float32(2 * math.pi)
    gx, gy = np.cos(theta), np.sin(theta)
    iv *= nu
    iv += iu
    idx = iv.astype(np.intp)  # flat lattice index of each sample's lower-left corner
    fu1, fv1 = fu - np.float32(1), fv - np.float32(1)

    def corner(offset: int, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
        # Dot product of the corner's random unit gradient with the offset to that corner;
        # slicing the gradient table by `offset` avoids an index array per corner.
        r = gx[offset:].take(idx)
        r *= du
        q = gy[offset:].take(idx)
        q *= dv
        r += q
        return r

    tu = _fade_(fu)
    n0 = _lerp_(corner(0, fu, fv), corner(1, fu1, fv), tu)
    n1 = _lerp_(corner(nu, fu, fv1), corner(nu + 1, fu1, fv1), tu)
    noise = _lerp_(n0, n1, _fade_(fv))
    noise *= np.float32(math.sqrt(2))  # as in DRAEM: brings the range to about [-1, 1]
    if noise.shape != (h, w):
        # Bicubic, not bilinear: far more accurate on smooth noise (see _SAMPLES_PER_CELL).
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return noise


def _ellipse_mask(h: int, w: int, rng: np.random.Generator, min_pixels: int) -> np.ndarray:
    """Random filled ellipse of at least min_pixels (<= h*w); grown until it is big enough,
    which always ends because a large enough ellipse covers the whole image."""
    r_min = math.sqrt(min_pixels / math.pi) + 1
    axes = np.array([rng.uniform(r_min, max(r_min, min(h, w) / 3)) for _ in range(2)])
    centre = (int(rng.integers(w)), int(rng.integers(h)))
    angle = float(rng.uniform(-90, 90))
    while True:
        canvas = np.zeros((h, w), np.uint8)
        cv2.ellipse(canvas, centre, (int(axes[0]), int(axes[1])), angle, 0, 360, 1, thickness=-1)
        if np.count_nonzero(canvas) >= min_pixels:
            return canvas.astype(bool)
        axes *= 1.5


def perlin_mask(h: int, w: int, rng: np.random.Generator, min_pixels: int = 100) -> np.ndarray:
    """bool HxW mask: 2D Perlin noise with scale 2**a x 2**b (a, b uniform in 0..5), rotated by a
    random angle in [-90, 90] degrees, thresholded at 0.5; regenerated until it covers at least
    min_pixels (capped at h*w). After a bounded number of tries it falls back to a random
    ellipse, so it never loops forever."""
    need = min(min_pixels, h * w)
    for _ in range(_MAX_MASK_TRIES):
        a, b = rng.integers(0, 6, size=2)
        angle = math.radians(rng.uniform(-90.0, 90.0))
        mask = _perlin(h, w, 2.0**a, 2.0**b, angle, rng) > _MASK_THRESHOLD
        if np.count_nonzero(mask) >= need:
            return mask
    return _ellipse_mask(h, w, rng, need)


# ----------------------------------------------------------------------------- textures


# Layers are uint8 HxW fields (0..255); colour comes from 256-entry ramps applied with
# cv2.LUT, and compositing uses OpenCV uint8 ops: far cheaper than float HxWx3 arithmetic.


def _to_u8(t: np.ndarray) -> np.ndarray:
    """float field in [0, 1] (clipped) -> uint8 0..255."""
    t = t * np.float32(255)
    np.clip(t, 0, 255, out=t)
    return t.astype(np.uint8)


def _frac(t: np.ndarray) -> np.ndarray:
    """t - floor(t): several times faster than the float modulo t % 1."""
    f = np.floor(t)
    return np.subtract(t, f, out=f)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _colourise(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a uint8 field onto a ramp between two random colours (uint8 HxWx3)."""
    ramp = np.linspace(_random_colour(rng), _random_colour(rng), 256)
    lut = np.rint(ramp).astype(np.uint8)[:, None, :]
    return cv2.LUT(cv2.cvtColor(t, cv2.COLOR_GRAY2BGR), lut)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Scales spread evenly over octaves, so fine and coarse patterns are equally common."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _perlin_layer(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Fractal Perlin noise (1-3 octaves): clouds, stains, marble-like fields."""
    res = _log_uniform(rng, 1.5, 8.0)
    octaves = int(rng.integers(1, 4))
    angle = rng.uniform(0, math.pi)
    # Sum all octaves on one grid just fine enough for the finest, then resize once.
    gh, gw = (min(n, math.ceil(res * 2 ** (octaves - 1) * _SAMPLES_PER_CELL)) for n in (h, w))
    total = np.zeros((gh, gw), np.float32)
    for octave in range(octaves):
        total += _perlin(gh, gw, res * 2**octave, res * 2**octave, angle, rng) * np.float32(0.5**octave)
    t = _to_u8(0.5 + total * np.float32(rng.uniform(0.5, 1.2)))
    return t if t.shape == (h, w) else cv2.resize(t, (w, h), interpolation=cv2.INTER_CUBIC)


def _rotated_coords(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in units of the image size, rotated by a random angle, HxW each."""
    theta = rng.uniform(0, math.pi)
    scale = 1.0 / max(h, w)
    c, s = np.float32(math.cos(theta) * scale), np.float32(math.sin(theta) * scale)
    y, x = _sample_positions(h, h)[:, None], _sample_positions(w, w)[None, :]
    return x * c + y * s, y * c - x * s


def _grating_layer(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes at a random angle and frequency, with sine, square or triangle profile."""
    u, _ = _rotated_coords(h, w, rng)
    cycles = u * np.float32(_log_uniform(rng, 2.0, 48.0)) + np.float32(rng.random())
    profile = rng.integers(3)
    if profile == 0:
        return _to_u8(0.5 + 0.5 * np.sin(cycles * np.float32(2 * math.pi)))
    if profile == 1:
        return (_frac(cycles) < 0.5).view(np.uint8) * np.uint8(255)
    return _to_u8(np.abs(_frac(cycles) - 0.5) * 2)


def _checker_layer(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Rotated checkerboard (rectangles when the two frequencies differ)."""
    u, v = _rotated_coords(h, w, rng)
    fu, fv = (np.float32(_log_uniform(rng, 2.0, 24.0)) for _ in range(2))
    odd = (_frac(u * fu) < 0.5) ^ (_frac(v * fv) < 0.5)
    return odd.view(np.uint8) * np.uint8(255)


def _blob_layer(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Random ellipses of random grey levels, optionally softened: spots, pebbles, cells."""
    canvas = np.zeros((h, w), np.uint8)
    size = max(h, w)
    for _ in range(int(rng.integers(5, 40))):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        axes = (int(rng.uniform(1, size / 6)), int(rng.uniform(1, size / 6)))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(64, 256)), -1)
    if rng.random() < 0.5:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(1, 4)))
    return canvas


_LAYERS = (_perlin_layer, _grating_layer, _checker_layer, _blob_layer)


def _procedural_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random texture: a colourised base pattern with 0-2 more patterns composited on top."""
    out = _colourise(_LAYERS[rng.integers(len(_LAYERS))](h, w, rng), rng)
    for _ in range(int(rng.integers(0, 3))):
        t = _LAYERS[rng.integers(len(_LAYERS))](h, w, rng)
        mode = rng.integers(3)
        if mode == 0:  # semi-transparent overlay of another coloured pattern
            alpha = float(rng.uniform(0.2, 0.6))
            out = cv2.addWeighted(out, 1 - alpha, _colourise(t, rng), alpha, 0)
        elif mode == 1:  # the pattern modulates brightness (shading, grain)
            floor = float(rng.uniform(0.3, 0.8))
            shade = cv2.convertScaleAbs(t, alpha=1 - floor, beta=255 * floor)  # floor..1 as 0..255
            shade = cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR)
            out = cv2.multiply(out, shade, scale=1 / 255)
        else:  # hard-edged inlay of one colour where the pattern is high
            out = cv2.copyTo(np.full_like(out, _random_colour(rng)), (t > 127).view(np.uint8), out)
    return out


def _random_crop_resize(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Crop a random window with the target aspect (50-100% of the largest that fits), resize
    to h x w: different draws of one texture image see different parts and scales."""
    ih, iw = img.shape[:2]
    scale = rng.uniform(0.5, 1.0) * min(ih / h, iw / w)
    ch, cw = max(1, min(ih, round(h * scale))), max(1, min(iw, round(w * scale)))
    y0, x0 = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
    return _resize(img[y0 : y0 + ch, x0 : x0 + cw], h, w)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize without aliasing, fast: INTER_AREA by a whole factor (its fast path; a
    fractional factor is ~7x slower), then bilinear for the remaining factor below 2."""
    k = min(img.shape[0] // h, img.shape[1] // w)
    if k >= 2:
        img = img[: img.shape[0] // k * k, : img.shape[1] // k * k]
        img = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


class TextureSource:
    """Texture images for the textural kind.

    ``TextureSource.from_folder(path)`` reads every image under a folder (recursively, so the
    DTD layout ``dtd/images/<class>/*.jpg`` works) as uint8 BGR, lazily, with a small LRU
    cache; unreadable files are skipped. ``TextureSource.builtin()`` is a procedural
    generator standing in for DTD when the user has none. ``sample(h, w, rng)`` returns a
    uint8 HxWx3 texture.

    The cache is per instance and not locked: give each DataLoader worker (a process) its
    own, which is what pickling into workers does anyway.
    """

    def __init__(self, paths: Sequence[Path] | None = None, cache_size: int = 64):
        """Prefer from_folder() or builtin(). paths None means procedural textures."""
        self._paths = None if paths is None else list(paths)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._unreadable: set[int] = set()

    @classmethod
    def builtin(cls) -> TextureSource:
        return cls(None)

    @classmethod
    def from_folder(cls, path: str | Path, cache_size: int = 64) -> TextureSource:
        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"texture folder {root} does not exist or is not a folder")
        # Listing by suffix and size is cheap; decoding waits until an image is drawn.
        paths = sorted(
            p for p in root.rglob("*")
            if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file() and p.stat().st_size > 0
        )
        source = cls(paths, cache_size)
        if not any(source._load(i) is not None for i in range(len(paths))):
            raise ValueError(f"no readable images in texture folder {root}")
        return source

    def _load(self, i: int) -> np.ndarray | None:
        """Decoded image i, or None if unreadable (remembered, so it is decoded only once)."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if i in self._unreadable:
            return None
        try:
            # fromfile + imdecode rather than imread: imread fails on non-ASCII paths on Windows.
            img = cv2.imdecode(np.fromfile(self._paths[i], dtype=np.uint8), cv2.IMREAD_COLOR)
        except (OSError, cv2.error):
            img = None
        if img is None or img.size == 0:
            self._unreadable.add(i)
            return None
        self._cache[i] = img
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return img

    def sample(self, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        if self._paths is None:
            return _procedural_texture(h, w, rng)
        # Rejection sampling over all candidates: which files are unreadable is a property
        # of the folder, not of what was drawn before, so the result depends only on rng.
        # from_folder() guaranteed at least one readable file, so this ends.
        while True:
            img = self._load(int(rng.integers(len(self._paths))))
            if img is not None:
                return _random_crop_resize(img, h, w, rng)


# ----------------------------------------------------------------------------- augmentation


def _random_flips(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    return img


def _contrast_lut(rng: np.random.Generator) -> np.ndarray:
    """256-entry LUT for random contrast, brightness and gamma: one cv2.LUT pass applies all
    three, far cheaper than float arithmetic on the image."""
    v = np.arange(256, dtype=np.float32)
    v = (v - 128) * rng.uniform(0.6, 1.4) + 128 + rng.uniform(-40, 40)
    v = 255 * (np.clip(v, 0, 255) / 255) ** rng.uniform(0.7, 1.5)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _hsv_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue shift and saturation/brightness scaling, as per-channel LUTs in HSV."""
    v = np.arange(256, dtype=np.float32)
    hue = (v + rng.uniform(-18, 18)) % 180  # OpenCV 8-bit hue is 0..179 and wraps
    sat = v * rng.uniform(0.7, 1.3)
    val = v * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20)
    lut = np.clip(np.rint(np.stack([hue, sat, val], axis=-1)), 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, lut[:, None, :]), cv2.COLOR_HSV2BGR)


def _random_rotation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation by a multiple of 90 degrees (half the time) or by a small angle."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        # Odd quarter turns only where they keep the shape.
        return np.rot90(img, int(rng.integers(4)) if h == w else 2 * int(rng.integers(2)))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(rng.uniform(-20, 20)), 1.0)
    return cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def _shuffle_cells(img: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Cut the image into grid x grid cells and permute them; a remainder strip at the
    right/bottom (when the size is not a multiple of grid) stays in place."""
    h, w, c = img.shape
    grid = max(1, min(grid, h, w))
    ch, cw = h // grid, w // grid
    cells = img[: grid * ch, : grid * cw].reshape(grid, ch, grid, cw, c).swapaxes(1, 2)
    cells = cells.reshape(grid * grid, ch, cw, c)[rng.permutation(grid * grid)]
    out = img.copy()
    cells = cells.reshape(grid, grid, ch, cw, c).swapaxes(1, 2)
    out[: grid * ch, : grid * cw] = cells.reshape(grid * ch, grid * cw, c)
    return out


# ----------------------------------------------------------------------------- synthesis


class AnomalySynth:
    """Callable that puts one random synthetic defect on an image (see the module docstring)."""

    def __init__(self, textures: TextureSource | None = None):
        self.textures = textures if textures is not None else TextureSource.builtin()

    def __call__(
        self, img: np.ndarray, rng: np.random.Generator, kind: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """img uint8 HxWx3 -> (defected copy, bool HxW mask, kind). kind None draws one of
        KINDS with equal probability. Pixels outside the mask are unchanged exactly."""
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
            what = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"expected a uint8 HxWx3 image, got {what}")
        if kind is None:
            kind = KINDS[int(rng.integers(len(KINDS)))]
        elif kind not in KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {KINDS}")
        h, w = img.shape[:2]
        mask = perlin_mask(h, w, rng)
        defect = getattr(self, f"_{kind}")(img, rng)  # full-frame defect source
        # cv2.copyTo copies only where the mask is set, so every pixel outside it is the
        # input's exactly (and it is ~100x faster than np.copyto with a broadcast mask).
        out = cv2.copyTo(defect, mask.view(np.uint8), img.copy())
        return out, mask, kind

    def _textural(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        # Sample with swapped sides when an odd quarter turn follows, so any shape works.
        quarter_turns = int(rng.integers(4))
        tex = self.textures.sample(*((w, h) if quarter_turns % 2 else (h, w)), rng)
        tex = _random_flips(np.rot90(tex, quarter_turns), rng)
        tex = cv2.LUT(np.ascontiguousarray(tex), _contrast_lut(rng))
        # DRAEM: inside the mask (1 - beta) * texture + beta * image.
        beta = float(rng.uniform(0.0, _BETA_MAX))
        return cv2.addWeighted(tex, 1.0 - beta, np.ascontiguousarray(img), beta, 0.0)

    def _structural(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        aug = _hsv_jitter(_random_rotation(_random_flips(img, rng), rng), rng)
        return _shuffle_cells(aug, _GRID_SIZES[rng.integers(len(_GRID_SIZES))], rng)

    def _blur(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = _BLUR_KERNELS[rng.integers(len(_BLUR_KERNELS))]
        return cv2.GaussianBlur(np.ascontiguousarray(img), (k, k), float(rng.uniform(4.0, 8.0)))
