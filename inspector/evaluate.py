"""`inspector evaluate`: a model over DATA/test/* (good = normal, every other folder = defective)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from .backends import Backend
from .dataset import TestItem, test_items
from .images import read_image, read_mask
from .preprocess import prepare, prepare_mask


@dataclass
class Scored:
    items: list[TestItem]
    crops: np.ndarray  # uint8 [N, h, w, 3], kept for the heatmap report
    scores: np.ndarray  # [N]
    maps: np.ndarray  # [N, mh, mw]


def score_items(backend: Backend, items: list[TestItem], batch: int = 16) -> Scored:
    pre = backend.meta.preprocess
    crops = np.stack([prepare(read_image(it.path), pre) for it in items])
    scores, maps = [], []
    for i in range(0, len(crops), batch):
        s, m = backend.infer(crops[i : i + batch])
        scores.append(s)
        maps.append(m)
    return Scored(items, crops, np.concatenate(scores), np.concatenate(maps))


def upsample_maps(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])


def pixel_auroc(scored: Scored, backend: Backend) -> float | None:
    """Over all pixels of the test crops; only where every defective image has a mask."""
    bad = [it for it in scored.items if it.is_anomalous]
    if not bad or any(it.mask is None for it in bad):
        return None
    pre = backend.meta.preprocess
    truth = np.stack([
        prepare_mask(read_mask(it.mask), pre) if it.mask is not None else np.zeros((pre.crop_h, pre.crop_w), bool)
        for it in scored.items
    ])
    if truth.all() or not truth.any():
        return None
    # At quarter resolution: the 7x7 maps carry no finer detail, and it keeps memory small.
    h, w = pre.crop_h // 4, pre.crop_w // 4
    pred = upsample_maps(scored.maps, h, w)
    small = np.stack([cv2.resize(t.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) for t in truth]) > 0
    return float(roc_auc_score(small.ravel(), pred.ravel()))


def metrics(scored: Scored, threshold: float) -> dict:
    y = np.array([it.is_anomalous for it in scored.items])
    s = scored.scores
    out: dict = {
        "images": int(len(y)),
        "good": int((~y).sum()),
        "defective": int(y.sum()),
        "image_auroc": float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None,
        "threshold": float(threshold),
        "false_reject_rate": float((s[~y] >= threshold).mean()) if (~y).any() else None,
        "escape_rate": float((s[y] < threshold).mean()) if y.any() else None,
        "per_defect": {},
    }
    good = s[~y]
    for defect in sorted({it.defect for it in scored.items if it.is_anomalous}):
        sel = np.array([it.defect == defect for it in scored.items])
        out["per_defect"][defect] = {
            "images": int(sel.sum()),
            "auroc_vs_good": float(roc_auc_score(np.r_[np.zeros(len(good)), np.ones(sel.sum())], np.r_[good, s[sel]])) if len(good) else None,
            "escape_rate": float((s[sel] < threshold).mean()),
        }
    return out


def evaluate(backend: Backend, data: str | Path, report: str | Path | None = None, threshold: float | None = None) -> dict:
    items = test_items(data)
    scored = score_items(backend, items)
    t = backend.meta.threshold.value if threshold is None else threshold
    result = metrics(scored, t)
    result["pixel_auroc"] = pixel_auroc(scored, backend)
    result["model_id"] = backend.meta.model_id
    result["data"] = str(data)
    result["scores"] = [
        {"file": str(it.path), "defect": it.defect, "score": float(v)} for it, v in zip(items, scored.scores)
    ]
    if report is not None:
        from .report import write_report

        report = Path(report)
        report.mkdir(parents=True, exist_ok=True)
        (report / "metrics.json").write_text(json.dumps(result, indent=2))
        write_report(scored, result, report, backend.meta.model_id)
    return result


def summary_lines(result: dict) -> list[str]:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"model {result['model_id']} on {result['data']}: {result['good']} good, {result['defective']} defective",
        f"image AUROC {num(result['image_auroc'])}   pixel AUROC {num(result['pixel_auroc'])}",
        f"at threshold {result['threshold']:.5f}: false rejects {pct(result['false_reject_rate'])}, escapes {pct(result['escape_rate'])}",
    ]
    for name, d in result["per_defect"].items():
        lines.append(f"  {name:<12} {d['images']:>4} images  AUROC {num(d['auroc_vs_good'])}  escapes {pct(d['escape_rate'])}")
    return lines
