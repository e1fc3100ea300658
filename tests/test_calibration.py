import numpy as np
import pytest

from inspector.calibration import calibrate, score_stats


def test_frr_threshold_rejects_the_target_fraction():
    scores = np.arange(200, dtype=float)  # 200 held-out goods
    t = calibrate(scores, "frr", 0.01)
    assert (scores >= t.value).sum() == 2 and t.n_images == 200


def test_frr_with_too_few_images_rejects_none():
    scores = np.array([0.1, 0.2, 0.3])
    t = calibrate(scores, "frr", 0.01)
    assert (scores >= t.value).sum() == 0 and t.value > 0.3


def test_other_methods():
    s = np.array([1.0, 2.0, 3.0])
    assert calibrate(s, "max", 0.1).value == pytest.approx(3.3)
    assert calibrate(s, "sigma", 2).value == pytest.approx(2 + 2 * s.std())
    with pytest.raises(ValueError):
        calibrate(s, "median", 0)


def test_stats():
    st = score_stats(np.array([1.0, 3.0]))
    assert st["n"] == 2 and st["mean"] == 2.0 and st["max"] == 3.0
