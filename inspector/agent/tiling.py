"""Region of interest and tiling: one frame -> the model inputs; tile outputs -> one score and one map.

Without tiling, the (ROI of the) frame is one model input, prepared exactly as `inspector evaluate`
prepares a file, and the map is the model's own map. With tiling, the ROI is cut into tiles of
`tile` pixels every `stride` pixels (the last tile on each axis is aligned to the edge, so the ROI
is covered); each tile is prepared like a whole image and scored; the frame score is the max of
the tile scores and the map is stitched: each tile's map is placed over the part of the ROI the
model saw (the tile's centre crop), on one grid of the model's cell size; overlaps keep the max,
cells no crop covered are 0. The grid starts at the first crop (the ROI's margin that the centre
crop leaves out is not scored, as in `inspector evaluate`).

The default stride is tile x crop/resize, so that the centre crops, not the tiles, abut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError
from ..modelmeta import Preprocess
from ..preprocess import prepare


@dataclass(frozen=True)
class Tile:
    y: int  # top-left, in ROI pixels
    x: int
    h: int
    w: int


def positions(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of `size` every `stride` covering [0, length); the last one ends at length."""
    if length <= size:
        return [0]
    out = list(range(0, length - size + 1, stride))
    if out[-1] != length - size:
        out.append(length - size)
    return out


def default_stride(tile: tuple[int, int], pre: Preprocess) -> tuple[int, int]:
    return (max(1, tile[0] * pre.crop_h // pre.resize_h), max(1, tile[1] * pre.crop_w // pre.resize_w))


class Tiler:
    def __init__(self, pre: Preprocess, map_hw: tuple[int, int], roi: tuple[int, int, int, int] | None = None,
                 tile: tuple[int, int] | None = None, stride: tuple[int, int] | None = None):
        self.pre = pre
        self.map_h, self.map_w = map_hw
        self.roi = roi
        self.tile = tile
        self.stride = stride or (default_stride(tile, pre) if tile else None)

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    def region(self, frame: np.ndarray) -> np.ndarray:
        if self.roi is None:
            return frame
        x, y, w, h = self.roi
        fh, fw = frame.shape[:2]
        if x + w > fw or y + h > fh:
            raise ImageError(f"roi [{x}, {y}, {w}, {h}] does not fit in the {fw}x{fh} frame")
        return frame[y : y + h, x : x + w]

    def layout(self, h: int, w: int) -> list[Tile]:
        if not self.tiled:
            return [Tile(0, 0, h, w)]
        th, tw = min(self.tile[0], h), min(self.tile[1], w)
        return [Tile(y, x, th, tw) for y in positions(h, th, self.stride[0]) for x in positions(w, tw, self.stride[1])]

    def split(self, frame: np.ndarray) -> tuple[np.ndarray, list[Tile], tuple[int, int]]:
        """frame uint8 HxWx3 -> (model inputs uint8 [k, crop_h, crop_w, 3], tiles, ROI (h, w))."""
        roi = self.region(frame)
        h, w = roi.shape[:2]
        tiles = self.layout(h, w)
        crops = np.stack([prepare(roi[t.y : t.y + t.h, t.x : t.x + t.w], self.pre) for t in tiles])
        return crops, tiles, (h, w)

    def frame_box(self, t: Tile) -> list[int]:
        """A tile as [x, y, w, h] in frame pixels."""
        ox, oy = (self.roi[0], self.roi[1]) if self.roi else (0, 0)
        return [ox + t.x, oy + t.y, t.w, t.h]

    def stitch(self, maps: np.ndarray, tiles: list[Tile], roi_hw: tuple[int, int]) -> tuple[np.ndarray, list[float], list[float]]:
        """Tile maps [k, mh, mw] -> (map over the ROI, origin [x, y] and cell [w, h] in frame pixels).

        Cell (r, c) of the map covers frame pixels x in origin_x + c * cell_w ... + cell_w (y likewise):
        the grid starts where the first tile's centre crop starts and has the model's cell size.
        """
        pre = self.pre
        t0 = tiles[0]
        # The part of a tile the model sees (its centre crop), in tile pixels, and one map cell's size.
        sy, sx = t0.h / pre.resize_h, t0.w / pre.resize_w
        off_y, off_x = (pre.resize_h - pre.crop_h) // 2 * sy, (pre.resize_w - pre.crop_w) // 2 * sx
        cell_h, cell_w = pre.crop_h * sy / self.map_h, pre.crop_w * sx / self.map_w
        rx, ry = (self.roi[0], self.roi[1]) if self.roi else (0, 0)
        origin = [round(rx + off_x, 3), round(ry + off_y, 3)]
        cell = [round(cell_w, 3), round(cell_h, 3)]
        if not self.tiled:
            return maps[0], origin, cell
        gh = max(self.map_h, int(np.ceil((roi_hw[0] - 2 * off_y) / cell_h - 1e-6)))
        gw = max(self.map_w, int(np.ceil((roi_hw[1] - 2 * off_x) / cell_w - 1e-6)))
        out = np.full((gh, gw), np.nan, dtype=np.float32)
        for m, t in zip(maps, tiles):
            r, c = round(t.y / cell_h), round(t.x / cell_w)
            r1, c1 = min(gh, r + self.map_h), min(gw, c + self.map_w)
            view = out[r:r1, c:c1]
            np.fmax(view, m[: r1 - r, : c1 - c], out=view)
        return np.nan_to_num(out, nan=0.0), origin, cell
