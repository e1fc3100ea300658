"""Per-category results table: train (both heads, auto's pick), evaluate, time, on the real data.

    python benchmarks/categories.py --data ../shared/data --out runs/categories

Trains with --scoring auto on magnetic_tile and the 8 PIPED classes (lite2 backbone, default
epochs), so each category yields the CSE head, the patch head and auto's choice in one training.
Writes runs/categories/<category>.onnx (+ .<other>.onnx), results.json and table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from inspector.backends import open_backend  # noqa: E402
from inspector.evaluate import evaluate  # noqa: E402


def categories(data: Path) -> list[Path]:
    found = [data / "magnetic_tile"] + sorted((data / "piped").iterdir())
    return [p for p in found if (p / "train" / "good").is_dir()]


def latency_ms(model: Path, runs: int = 30) -> float:
    """Median onnxruntime CPU latency at batch 1 (backend only, all cores)."""
    with open_backend(model) as be:
        pre = be.meta.preprocess
        x = np.random.default_rng(0).integers(0, 256, (1, pre.crop_h, pre.crop_w, 3), dtype=np.uint8)
        for _ in range(5):
            be.infer(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            be.infer(x)
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/categories"))
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--epochs", type=int, default=None, help="default: the trainer's default")
    ap.add_argument("--only", nargs="*", help="category names to run (default: all 9)")
    args = ap.parse_args()

    from trainer.config import TrainConfig
    from trainer.export import export_onnx
    from trainer.train import train

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    cats = [c for c in categories(args.data) if not args.only or c.name in args.only]
    for i, cat in enumerate(cats, 1):
        print(f"== [{i}/{len(cats)}] {cat.name}", flush=True)
        cfg = TrainConfig(backbone=args.backbone, scoring="auto", **({"epochs": args.epochs} if args.epochs else {}))
        res = train(cat, cfg, log=lambda m: print(m, flush=True))
        main_path = args.out / f"{cat.name}.onnx"
        alt_path = args.out / f"{cat.name}.{res.alternative_meta.head}.onnx"
        res.meta.training["selection"]["alternative"] = alt_path.name
        export_onnx(res.alternative, res.alternative_meta, alt_path)
        export_onnx(res.model, res.meta, main_path)
        row = {"category": cat.name, "chosen": res.meta.head, "synthetic_auroc": res.meta.training["selection"]["synthetic_auroc"],
               "feature_seconds": res.meta.training["feature_seconds"]}
        for path, meta in ((main_path, res.meta), (alt_path, res.alternative_meta)):
            with open_backend(path) as be:
                ev = evaluate(be, cat)
            row[meta.head] = {
                "image_auroc": ev["image_auroc"], "pixel_auroc": ev["pixel_auroc"],
                "false_reject_rate": ev["false_reject_rate"], "escape_rate": ev["escape_rate"],
                "latency_ms": latency_ms(path), "size_mb": path.stat().st_size / 1e6,
                "train_seconds": meta.training["head_seconds"] + meta.training["feature_seconds"],
                "file": str(path),
            }
        better = max(("cse", "patch"), key=lambda h: row[h]["image_auroc"])
        row["auto_right"] = row["chosen"] == better or row["cse"]["image_auroc"] == row["patch"]["image_auroc"]
        results[cat.name] = row
        results_path.write_text(json.dumps(results, indent=2))
        print(f"   cse {row['cse']['image_auroc']:.4f}  patch {row['patch']['image_auroc']:.4f}  auto -> {row['chosen']}", flush=True)
    table = markdown(results)
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


def markdown(results: dict) -> str:
    """The README's table, as is."""
    lines = [
        "| category | CSE image AUROC | patch image AUROC | CSE pixel AUROC | patch pixel AUROC | CSE train s | patch train s "
        "| CSE ms | patch ms | CSE MB | patch MB | auto picks | right? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c, p = r["cse"], r["patch"]
        tie = c["image_auroc"] == p["image_auroc"]
        lines.append(
            f"| {name} | {c['image_auroc']:.3f} | {p['image_auroc']:.3f} | {c['pixel_auroc']:.3f} | {p['pixel_auroc']:.3f} "
            f"| {c['train_seconds']:.0f} | {p['train_seconds']:.0f} | {c['latency_ms']:.1f} | {p['latency_ms']:.1f} "
            f"| {c['size_mb']:.1f} | {p['size_mb']:.1f} | {r['chosen']} | {'tie' if tie else 'yes' if r['auto_right'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
