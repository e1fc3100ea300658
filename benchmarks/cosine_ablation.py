"""Which contrastive cosine: over channels per position (ours) vs along image width (reference code).

    python benchmarks/cosine_ablation.py --data ../shared/data/magnetic_tile --epochs 10

Trains the CSE head twice with the same seed, split and epochs; prints image AUROC of each.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from inspector.backends import open_backend
    from inspector.evaluate import evaluate
    from trainer.config import TrainConfig
    from trainer.export import export_onnx
    from trainer.train import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cosine in ("channels", "width"):
            res = train(args.data, TrainConfig(backbone=args.backbone, epochs=args.epochs, cosine=cosine), log=print)
            path = export_onnx(res.model, res.meta, Path(tmp) / f"{cosine}.onnx")
            with open_backend(path) as be:
                out[cosine] = evaluate(be, args.data)["image_auroc"]
            print(f"cosine {cosine}: image AUROC {out[cosine]:.4f}", flush=True)
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
