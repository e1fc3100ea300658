"""`inspector evaluate` on real test images: metrics consistent with the scores, report files written."""

from __future__ import annotations

import json

import numpy as np

from inspector.backends import open_backend
from inspector.evaluate import evaluate


def test_evaluate_writes_consistent_metrics_and_pngs(model_path, piped, tmp_path):
    with open_backend(model_path) as be:
        result = evaluate(be, piped, tmp_path / "report")
        t = be.meta.threshold.value
    scores = np.array([r["score"] for r in result["scores"]])
    bad = np.array([r["defect"] != "good" for r in result["scores"]])
    assert result["good"] == 16 and result["defective"] == 48
    assert result["false_reject_rate"] == (scores[~bad] >= t).mean()
    assert result["escape_rate"] == (scores[bad] < t).mean()
    # AUROC equals the fraction of (defective, good) pairs ranked correctly
    pairs = (scores[bad][:, None] > scores[~bad][None, :]).mean()
    assert abs(result["image_auroc"] - pairs) < 1e-9
    assert 0.5 < result["image_auroc"] <= 1.0  # a trained model on this data separates far better than chance
    assert result["pixel_auroc"] is not None and 0.5 < result["pixel_auroc"] <= 1.0
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"metrics.json", "roc.png", "histogram.png", "worst_good.png", "worst_defective.png"} <= files
    for name in files - {"metrics.json"}:
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["image_auroc"] == result["image_auroc"]


def test_threshold_override_changes_rates(model_path, piped):
    with open_backend(model_path) as be:
        low = evaluate(be, piped, threshold=-1.0)
    assert low["false_reject_rate"] == 1.0 and low["escape_rate"] == 0.0
