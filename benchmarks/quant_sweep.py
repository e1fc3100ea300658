"""Quantisation variants: image AUROC on a category's test set, FP32 vs each INT8 variant.

    .venv/bin/python benchmarks/quant_sweep.py runs/mt.onnx ../shared/data/magnetic_tile --json benchmarks/results/quant_sweep.json

Test crops are read once and scored by every variant (same crops, same order). Latency of the
variants is measured separately on the efficientnet_b3 timing model (benchmarks/levers.py).
"""

from __future__ import annotations

import argparse
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
VARIANTS = {
    "conv, head fp32, minmax": QuantConfig(),
    "conv, head + blocks 5-6 fp32": QuantConfig(keep_fp32=HEAD + (STAGE + "5", STAGE + "6")),
    "conv, head + blocks 4-6 fp32": QuantConfig(keep_fp32=HEAD + tuple(STAGE + str(i) for i in (4, 5, 6))),
    "conv, head fp32, percentile": QuantConfig(method="percentile"),
    "conv, head fp32, entropy": QuantConfig(method="entropy"),
    "conv, head fp32, 256 images": QuantConfig(images=256),
    "conv, head fp32, per-tensor": QuantConfig(per_channel=False),
    "conv, head fp32, reduce-range": QuantConfig(reduce_range=True),
    "conv, everything int8": QuantConfig(keep_fp32=()),
    "conv, head fp32, qoperator": QuantConfig(fmt="qoperator"),
}


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
    tmpdir = args.keep or Path(tempfile.mkdtemp())
    tmpdir.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split("|"):
        cfg = VARIANTS[name]
        dst = tmpdir / f"{args.model.stem}.{''.join(c if c.isalnum() else '_' for c in name)}.onnx"
        t0 = time.time()
        quantize_model(args.model, dst, args.data, cfg, recalibrate=False)
        s = scores(dst, crops)
        auc = float(roc_auc_score(y, s))
        row = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}, "file": str(dst),
               "auroc": auc, "delta_points": 100 * (auc - out["fp32_auroc"]),
               "spearman_vs_fp32": float(np.corrcoef(np.argsort(np.argsort(base)), np.argsort(np.argsort(s)))[0, 1]),
               "seconds": round(time.time() - t0, 1)}
        out["variants"][name] = row
        print(f"{name}: AUROC {auc:.4f} ({row['delta_points']:+.2f} points), rank corr {row['spearman_vs_fp32']:.3f}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
