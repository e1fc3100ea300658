"""Evaluation report PNGs: ROC curve, score histogram with the threshold, heatmap overlays."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import matplotlib

matplotlib.use("Agg")  # files only; line PCs have no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

if TYPE_CHECKING:
    from .evaluate import Scored


def write_report(scored: "Scored", result: dict, out: Path, title: str, worst: int = 6) -> list[Path]:
    y = np.array([it.is_anomalous for it in scored.items])
    s, t = scored.scores, result["threshold"]
    written = []
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(fpr, tpr, label=f"AUROC {result['image_auroc']:.4f}")
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(xlabel="false positive rate (good rejected)", ylabel="true positive rate (defect caught)")
        ax.set_title(_wrap(title, 60), fontsize=9)
        ax.legend(loc="lower right")
        written.append(_save(fig, out / "roc.png"))
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(s.min(), s.max(), 50)
    ax.hist(s[~y], bins=bins, alpha=0.6, label=f"good ({(~y).sum()})", color="tab:green")
    if y.any():
        ax.hist(s[y], bins=bins, alpha=0.6, label=f"defective ({y.sum()})", color="tab:red")
    ax.axvline(t, c="k", ls="--", label=f"threshold {t:.4f}")
    ax.set(xlabel="anomaly score", ylabel="images")
    ax.set_title(_wrap(title, 70), fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # image counts
    ax.legend()
    written.append(_save(fig, out / "histogram.png"))
    for name, sel in (("good", ~y), ("defective", y)):
        idx = np.flatnonzero(sel)
        if idx.size:
            idx = idx[np.argsort(-s[idx])][:worst]
            written.append(_heatmaps(scored, idx, t, out / f"worst_{name}.png", f"highest-scored {name} images"))
    return written


def overlay(crop_bgr: np.ndarray, amap: np.ndarray, vmax: float) -> np.ndarray:
    """RGB overlay of an anomaly map (upsampled) on its crop, colour scaled to [0, vmax]."""
    h, w = crop_bgr.shape[:2]
    heat = cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat / max(vmax, 1e-9), 0, 1)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(cv2.addWeighted(crop_bgr, 0.55, colour, 0.45, 0), cv2.COLOR_BGR2RGB)


def _heatmaps(scored: "Scored", idx: np.ndarray, threshold: float, path: Path, title: str) -> Path:
    vmax = float(np.percentile(scored.maps, 99.5))
    fig, axes = plt.subplots(2, len(idx), figsize=(2.4 * len(idx), 5), squeeze=False)
    for col, i in enumerate(idx):
        it = scored.items[i]
        axes[0, col].imshow(cv2.cvtColor(scored.crops[i], cv2.COLOR_BGR2RGB))
        axes[0, col].set_title(f"{it.defect}\n{_wrap(it.path.name, 24)}", fontsize=7)
        axes[1, col].imshow(overlay(scored.crops[i], scored.maps[i], vmax))
        verdict = "FAIL" if scored.scores[i] >= threshold else "pass"
        axes[1, col].set_title(f"{scored.scores[i]:.4f} {verdict}", fontsize=8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    # the overlays' colour scale, one for the whole figure (added after the layout, which it would squeeze)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap="jet"), ax=axes[1, :].tolist(),
                       fraction=0.02, pad=0.01)
    bar.set_label("anomaly map", fontsize=7)
    return _save(fig, path, tight=False)


def _wrap(text: str, width: int) -> str:
    """Long titles, model ids and file names broken onto lines instead of clipped (ids hold no spaces)."""
    if " " in text:
        return "\n".join(textwrap.wrap(text, width))
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def _save(fig, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
