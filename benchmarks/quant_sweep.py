"""Quantisation variants: image AUROC on a category's test set, FP32 vs each INT8 variant.

    .venv/bin/python benchmarks/quant_sweep.py runs/mt.onnx ../shared/data/magnetic_tile --json benchmarks/results/quant_sweep.json

Test crops are read once and scored by every variant (same crops, same order). Latency of the
variants is measured separately on the efficientnet_b3 timing model (benchmarks/levers.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from inspector.dataset import test_items  # noqa: E402
from inspector.images import read_image  # noqa: E402
from inspector.preprocess import prepare  # noqa: E402
from inspector.quantize import QuantConfig, quantize_model  # noqa: E402

HEAD = ("head.", "embedder.")
STAGE = "backbone.features.blocks."
STEM = ("backbone.features.conv_stem",)
ACT = ("Conv", "Clip", "Relu")  # activations quantised after the clip: ranges of what the next conv reads
# Explicit settings (the sweep's baseline), whatever inspector quantize's defaults are now.
Q = functools.partial(QuantConfig, ops=("Conv",), reduce_range=False, keep_fp32=HEAD)
VARIANTS = {
    "conv only, head fp32": Q(ops=("Conv",)),
    "conv+clip, head fp32": Q(ops=ACT),
    "conv+clip, head fp32, reduce-range": Q(ops=ACT, reduce_range=True),
    "conv+clip, head fp32, reduce-range, u8u8": Q(ops=ACT, reduce_range=True, weight_type="uint8"),
    "conv+clip, head+stem fp32, reduce-range": Q(ops=ACT, reduce_range=True, keep_fp32=HEAD + ("backbone.features.conv_stem",)),
    "conv+clip, head+blocks 5-6 fp32, reduce-range": Q(ops=ACT, reduce_range=True, keep_fp32=HEAD + (STAGE + "5", STAGE + "6")),
    "conv+clip, head fp32, reduce-range, percentile": Q(ops=ACT, reduce_range=True, method="percentile"),
    "conv+clip, head fp32, reduce-range, entropy": Q(ops=ACT, reduce_range=True, method="entropy"),
    "conv+clip, head fp32, reduce-range, 256 images": Q(ops=ACT, reduce_range=True, images=256),
    "conv+clip, head fp32, reduce-range, qoperator": Q(ops=ACT, reduce_range=True, fmt="qoperator"),
    "conv+clip, head fp32, reduce-range, per-tensor": Q(ops=ACT, reduce_range=True, per_channel=False),
    "conv+clip, head+stem+block 0 fp32, reduce-range": Q(ops=ACT, reduce_range=True, keep_fp32=HEAD + STEM + (STAGE + "0",)),
    "conv+clip, head+stem+blocks 0-1 fp32, reduce-range": Q(ops=ACT, reduce_range=True, keep_fp32=HEAD + STEM + (STAGE + "0", STAGE + "1")),
    "conv+clip+add, head+stem fp32, reduce-range": Q(ops=ACT + ("Add",), reduce_range=True, keep_fp32=HEAD + STEM),
    "conv+clip, head+stem fp32, reduce-range, 256 images": Q(ops=ACT, reduce_range=True, images=256, keep_fp32=HEAD + STEM),
    "conv+clip, head+stem+block 0 fp32, reduce-range, 256 images": Q(ops=ACT, reduce_range=True, images=256, keep_fp32=HEAD + STEM + (STAGE + "0",)),
}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def scores(path: Path, crops: np.ndarray) -> np.ndarray:
    with OnnxRuntimeBackend(path) as be:
        return np.concatenate([be.infer(crops[i : i + 16])[0] for i in range(0, len(crops), 16)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--variants", default="|".join(VARIANTS), help="names separated by |")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="folder to keep the quantised files in")
    args = ap.parse_args()
    items = test_items(args.data)
    y = np.array([it.is_anomalous for it in items])
    with OnnxRuntimeBackend(args.model) as be:
        pre = be.meta.preprocess
    crops = np.stack([prepare(read_image(it.path), pre) for it in items])
    base = scores(args.model, crops)
    out = {"model": str(args.model), "data": str(args.data), "fp32_auroc": float(roc_auc_score(y, base)), "variants": {}}
    print(f"fp32: AUROC {out['fp32_auroc']:.4f}", flush=True)
    # The model's own noise floor: FP32 on the same crops with +-1 grey level of seeded noise added.
    noisy = np.clip(crops.astype(np.int16) + np.random.default_rng(0).integers(-1, 2, crops.shape), 0, 255).astype(np.uint8)
    s = scores(args.model, noisy)
    out["fp32_plus_1_grey_level_noise"] = {"auroc": float(roc_auc_score(y, s)),
                                           "delta_points": 100 * (float(roc_auc_score(y, s)) - out["fp32_auroc"]),
                                           "spearman_vs_fp32": spearman(base, s)}
    print(f"fp32 + 1 grey level noise: AUROC {out['fp32_plus_1_grey_level_noise']['auroc']:.4f}", flush=True)
    if args.json and args.json.is_file():  # add to an earlier sweep of the same model
        old = json.loads(args.json.read_text())
        if old.get("model") == out["model"] and abs(old.get("fp32_auroc", -1) - out["fp32_auroc"]) < 1e-9:
            out["variants"] = old.get("variants", {})
    tmpdir = args.keep or Path(tempfile.mkdtemp())
    tmpdir.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split("|"):
        cfg = VARIANTS[name]
        dst = tmpdir / f"{args.model.stem}.{''.join(c if c.isalnum() else '_' for c in name)}.onnx"
        t0 = time.time()
        quantize_model(args.model, dst, args.data, cfg, recalibrate=False, measure_cost=False)
        s = scores(dst, crops)
        auc = float(roc_auc_score(y, s))
        row = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}, "file": str(dst),
               "auroc": auc, "delta_points": 100 * (auc - out["fp32_auroc"]),
               "spearman_vs_fp32": spearman(base, s),
               "seconds": round(time.time() - t0, 1)}
        out["variants"][name] = row
        print(f"{name}: AUROC {auc:.4f} ({row['delta_points']:+.2f} points), rank corr {row['spearman_vs_fp32']:.3f}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
