"""Tests for trainer.anomalies: synthetic defects for CSE contrastive training (section 3.1)."""

from collections import Counter

import cv2
import numpy as np
import pytest

from trainer.anomalies import KINDS, AnomalySynth, TextureSource, perlin_mask

SIZES = [(224, 224), (96, 160), (37, 53)]


def busy_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Colour noise, lightly smoothed: every kind of defect visibly changes such an image
    (a flat one would hide blur, a shuffled grid of identical cells, ...)."""
    noise = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (3, 3), 0)


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("h,w", SIZES)
def test_perlin_mask_covers_min_pixels(h, w):
    for seed in range(20):
        mask = perlin_mask(h, w, np.random.default_rng(seed))
        assert mask.dtype == bool and mask.shape == (h, w)
        assert np.count_nonzero(mask) >= 100


def test_perlin_mask_varies_with_seed():
    masks = [perlin_mask(128, 128, np.random.default_rng(seed)) for seed in range(8)]
    distinct = {m.tobytes() for m in masks}
    assert len(distinct) == len(masks)


def test_perlin_mask_is_irregular_not_the_ellipse_fallback():
    # Perlin masks are scattered blobs: over many draws, some must have several components
    # (an ellipse has one), and coverage should vary widely.
    components, coverage = [], []
    for seed in range(30):
        mask = perlin_mask(224, 224, np.random.default_rng(seed))
        components.append(cv2.connectedComponents(mask.view(np.uint8))[0] - 1)
        coverage.append(mask.mean())
    assert max(components) >= 5
    assert max(coverage) > 3 * min(coverage)


def test_perlin_mask_falls_back_when_coverage_is_impossible():
    # Full coverage never happens with thresholded noise, so this exercises the bounded
    # retries and the ellipse fallback; it must return rather than loop.
    mask = perlin_mask(32, 40, np.random.default_rng(0), min_pixels=32 * 40)
    assert mask.all()
    # An image smaller than min_pixels: the requirement is capped at the image size.
    assert perlin_mask(8, 8, np.random.default_rng(1), min_pixels=100).all()


# ----------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("h,w", SIZES)
def test_kind_changes_inside_mask_only(kind, h, w):
    synth = AnomalySynth()
    img = busy_image(h, w)
    original = img.copy()
    for seed in range(10):
        out, mask, got = synth(img, np.random.default_rng(seed), kind)
        assert got == kind
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert mask.dtype == bool and mask.shape == (h, w)
        assert np.array_equal(img, original), "input image was modified"
        assert np.array_equal(out[~mask], img[~mask]), "a pixel outside the mask changed"
        changed = np.any(out != img, axis=-1)[mask]
        assert changed.mean() > 0.5, f"{kind}: only {changed.mean():.0%} of masked pixels changed"


@pytest.mark.parametrize("kind", (*KINDS, None))
def test_same_seed_reproduces_exactly(kind):
    img = busy_image(96, 128)
    a = AnomalySynth()(img, np.random.default_rng(42), kind)
    b = AnomalySynth()(img, np.random.default_rng(42), kind)
    c = AnomalySynth()(img, np.random.default_rng(43), kind)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_kind_none_draws_all_kinds_about_equally():
    synth, rng, img = AnomalySynth(), np.random.default_rng(0), busy_image(48, 48)
    counts = Counter(synth(img, rng)[2] for _ in range(60))
    assert set(counts) == set(KINDS)
    assert all(10 <= counts[k] <= 30 for k in KINDS), counts


def test_rejects_bad_input():
    synth, rng = AnomalySynth(), np.random.default_rng(0)
    with pytest.raises(ValueError, match="kind"):
        synth(busy_image(32, 32), rng, "scratch")
    with pytest.raises(ValueError, match="HxWx3"):
        synth(np.zeros((32, 32), np.uint8), rng)
    with pytest.raises(ValueError, match="HxWx3"):
        synth(np.zeros((32, 32, 3), np.float32), rng)


# ----------------------------------------------------------------------------- textures

COLOURS = {"red": (0, 0, 255), "green": (0, 200, 0), "grey": (90, 90, 90)}


def write_texture_folder(root):
    """A DTD-like tree of three flat-colour images in three formats (one grayscale), plus a
    corrupt image, a zero-byte image and a non-image file, which must all be skipped."""
    (root / "images" / "banded").mkdir(parents=True)
    (root / "images" / "dotted").mkdir(parents=True)
    (root / "labels").mkdir()
    red, green = (np.full(shape, COLOURS[c], np.uint8) for shape, c in (((50, 70, 3), "red"), ((40, 40, 3), "green")))
    assert cv2.imwrite(str(root / "images" / "banded" / "a.png"), red)
    assert cv2.imwrite(str(root / "images" / "dotted" / "b.bmp"), green)
    assert cv2.imwrite(str(root / "c.jpg"), np.full((64, 48), 90, np.uint8))  # grayscale
    (root / "images" / "banded" / "broken.png").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "images" / "dotted" / "empty.jpg").write_bytes(b"")
    (root / "labels" / "train1.txt").write_text("banded/a.png\n")


def test_from_folder_reads_images_and_skips_unreadable(tmp_path):
    write_texture_folder(tmp_path)
    source = TextureSource.from_folder(tmp_path)
    rng, seen = np.random.default_rng(0), set()
    for _ in range(40):
        tex = source.sample(30, 45, rng)
        assert tex.dtype == np.uint8 and tex.shape == (30, 45, 3)
        mean = tex.reshape(-1, 3).mean(axis=0)
        assert tex.reshape(-1, 3).std(axis=0).max() < 2, "not a crop of one flat image"
        name = min(COLOURS, key=lambda k: np.abs(mean - COLOURS[k]).max())
        assert np.abs(mean - COLOURS[name]).max() < 4, f"sample colour {mean} is from no image"
        seen.add(name)
    assert seen == set(COLOURS)


def test_from_folder_textures_feed_the_synth(tmp_path):
    write_texture_folder(tmp_path)
    synth = AnomalySynth(TextureSource.from_folder(tmp_path))
    img = busy_image(64, 64)
    out, mask, _ = synth(img, np.random.default_rng(0), "textural")
    assert np.array_equal(out[~mask], img[~mask])
    assert np.any(out != img, axis=-1)[mask].mean() > 0.5


def test_from_folder_empty_raises_naming_folder(tmp_path):
    with pytest.raises(ValueError, match="no readable images") as err:
        TextureSource.from_folder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_from_folder_only_unreadable_files_raises(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        TextureSource.from_folder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_from_folder_missing_folder_raises(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ValueError) as err:
        TextureSource.from_folder(missing)
    assert str(missing) in str(err.value)


def test_builtin_textures_differ_between_draws():
    source, rng = TextureSource.builtin(), np.random.default_rng(0)
    textures = [source.sample(64, 96, rng) for _ in range(12)]
    for tex in textures:
        assert tex.dtype == np.uint8 and tex.shape == (64, 96, 3)
        assert tex.std() > 1, "a builtin texture is flat"
    assert len({t.tobytes() for t in textures}) == len(textures)
    # Different colours too, not only different patterns.
    means = np.array([t.reshape(-1, 3).mean(axis=0) for t in textures])
    assert means.std(axis=0).min() > 10


def test_builtin_textures_are_deterministic():
    a = TextureSource.builtin().sample(40, 50, np.random.default_rng(5))
    b = TextureSource.builtin().sample(40, 50, np.random.default_rng(5))
    assert np.array_equal(a, b)
