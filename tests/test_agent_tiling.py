"""ROI and tiling: tiles cover the frame, the frame score is the max tile score, the map is stitched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agentkit import agent_model, config, image_frames, run_agent
from inspector.agent.tiling import Tile, Tiler, default_stride, positions
from inspector.backends import open_backend
from inspector.modelmeta import Preprocess
from inspector.preprocess import prepare

PRE = Preprocess(256, 256, 224, 224, "area")


def test_positions_cover_and_end_at_the_edge():
    assert positions(100, 100, 50) == [0]
    assert positions(80, 100, 50) == [0]
    assert positions(250, 100, 100) == [0, 100, 150]
    assert positions(300, 100, 100) == [0, 100, 200]
    for length, size, stride in [(1000, 96, 40), (333, 64, 64), (129, 128, 7)]:
        p = positions(length, size, stride)
        assert p[0] == 0 and p[-1] == length - size and all(b - a <= stride for a, b in zip(p, p[1:]))
    assert default_stride((256, 512), PRE) == (224, 448)  # the centre crops abut


def test_stitch_places_tile_maps_and_keeps_the_max_on_overlaps():
    tiler = Tiler(PRE, (7, 7), tile=(256, 256))
    tiles = tiler.layout(256, 480)
    assert [(t.x, t.w) for t in tiles] == [(0, 256), (224, 256)] and all(t.y == 0 and t.h == 256 for t in tiles)
    maps = np.stack([np.full((7, 7), 1.0, np.float32), np.full((7, 7), 2.0, np.float32)])
    maps[0, 3, 6] = 9.0
    m, origin, cell = tiler.stitch(maps, tiles, (256, 480))
    assert m.shape == (7, 14) and origin == [16, 16] and cell == [32, 32]
    assert (m[:, :7][np.arange(7) != 3] == 1).all() and m[3, 6] == 9 and (m[:, 7:] == 2).all()
    # Overlapping tiles (stride < crop): the overlap keeps the larger value, wherever it came from.
    tiler = Tiler(PRE, (7, 7), tile=(256, 256), stride=(256, 128))
    tiles = tiler.layout(256, 480)
    assert [t.x for t in tiles] == [0, 128, 224]
    maps = np.stack([np.full((7, 7), v, np.float32) for v in (3.0, 1.0, 2.0)])
    m, _, _ = tiler.stitch(maps, tiles, (256, 480))
    assert m.shape == (7, 14)
    assert (m[:, 0:7] == 3).all() and (m[:, 7:14] == 2).all()  # tile 1 (value 1) is covered by larger neighbours
    maps[1] = 5.0
    m, _, _ = tiler.stitch(maps, tiles, (256, 480))
    assert (m[:, 4:11] == 5).all() and (m[:, :4] == 3).all() and (m[:, 11:] == 2).all()


def test_roi_that_does_not_fit_is_an_image_error():
    from inspector.errors import ImageError

    tiler = Tiler(PRE, (7, 7), roi=(10, 10, 100, 100))
    with pytest.raises(ImageError, match=r"roi \[10, 10, 100, 100\] does not fit in the 64x200 frame"):
        tiler.split(np.zeros((200, 64, 3), np.uint8))


def test_tiled_frame_score_is_the_max_of_its_tiles(agent_model, piped, tmp_path):
    good = image_frames(piped / "test" / "good", 1)[0]
    bad = image_frames(piped / "test" / "defect", 1)[0]
    frame = np.hstack([good, bad])  # 128 x 256: a "line-scan" frame, half good, half defective
    folder = tmp_path / "wide"
    folder.mkdir()
    cv2.imwrite(str(folder / "wide.png"), frame)
    cv2.imwrite(str(folder / "xroi_out.png"), good)  # smaller than the ROI below: an error, not a crash
    cfg = config(tmp_path, agent_model, folder=str(folder), roi=(0, 0, 256, 128), tile=(128, 128), publish_map=True)
    _, col, _ = run_agent(cfg)
    col.close()
    wide, small = col.results
    tiles = [Tile(0, x, 128, 128) for x in (0, 112, 128)]  # stride 128 * 224 / 256 = 112, last one at the edge
    with open_backend(agent_model) as be:
        scores, _ = be.infer(np.stack([prepare(frame[:, t.x : t.x + 128], be.meta.preprocess) for t in tiles]))
    assert wide["tiles"] == 3
    assert wide["score"] == pytest.approx(float(scores.max()), abs=1e-6)
    best = int(np.argmax(scores))
    assert wide["max_tile"] == [tiles[best].x, 0, 128, 128]
    m = wide["map"]
    assert (m["h"], m["w"]) == (7, 15) and m["origin"] == [8, 8] and m["cell"] == [16, 16] and len(m["data"]) == 7 * 15
    assert small["verdict"] == "error" and "does not fit" in small["error"] and small["frame_id"] == "xroi_out.png"


def test_roi_alone_scores_just_that_region(agent_model, piped, tmp_path):
    good = image_frames(piped / "test" / "good", 1)[0]
    bad = image_frames(piped / "test" / "defect", 1)[0]
    frame = np.hstack([good, bad])
    folder = tmp_path / "roi"
    folder.mkdir()
    cv2.imwrite(str(folder / "f.png"), frame)
    _, col, _ = run_agent(config(tmp_path, agent_model, folder=str(folder), roi=(128, 0, 128, 128)))
    col.close()
    with open_backend(agent_model) as be:
        ref, _ = be.infer(prepare(bad, be.meta.preprocess)[None])
    (r,) = col.results
    assert r["tiles"] == 1 and "max_tile" not in r
    assert r["score"] == pytest.approx(float(ref[0]), abs=1e-6)
