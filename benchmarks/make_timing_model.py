"""Build an ONNX *timing* model: the product's exact graph with untrained (random) weights.

    .venv/bin/python benchmarks/make_timing_model.py -o runs/timing_b3.onnx --backbone efficientnet_b3

Latency does not depend on weight values, and this machine has no offline ImageNet weights for
efficientnet_b3 (the paper's backbone), so the CPU latency work times this file. It is built here,
explicitly, never by `inspector train`: the product's trainer refuses to run without real weights.
Its metadata says so (weights_id "untrained", category "timing-only"); its scores mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector import __version__  # noqa: E402
from trainer.torch_eager import untrained_inference_model  # noqa: E402
from inspector.modelmeta import ModelMeta, Preprocess, Threshold  # noqa: E402


def timing_meta(backbone: str, size: int, resize: int) -> ModelMeta:
    import torch

    return ModelMeta(
        model_id=f"timing-{backbone}-{size}-untrained",
        category="timing-only",
        head="cse",
        backbone=backbone,
        weights_id="untrained (random; timing only, scores are meaningless)",
        preprocess=Preprocess(resize, resize, size, size, "area"),
        threshold=Threshold(value=1.0, method="max", param=0.0, n_images=0),
        map_h=size // 32,
        map_w=size // 32,
        training={"note": "built by benchmarks/make_timing_model.py for latency measurements only"},
        software={"inspector": __version__, "torch": torch.__version__},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=Path("runs/timing_b3.onnx"))
    ap.add_argument("--backbone", default="efficientnet_b3")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from trainer.export import export_onnx

    model = untrained_inference_model(args.backbone, args.size, seed=args.seed)
    path = export_onnx(model, timing_meta(args.backbone, args.size, args.resize), args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {args.backbone} at {args.size}, untrained (timing only)")


if __name__ == "__main__":
    main()
