"""Batch-1 latency of several model files side by side, interleaved rounds (robust to bursts of load).

    .venv/bin/python benchmarks/compare_models.py runs/timing_b3.onnx runs/mt.onnx runs/mt.int8.onnx --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from inspector.bench.hardware import load_average  # noqa: E402
from inspector.bench.timing import repeat, summarize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    x = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    bes = {str(m): OnnxRuntimeBackend(m, device="cpu") for m in args.models}
    for be in bes.values():
        repeat(lambda: be.infer(x), 0.5)
    out = {"load_average": {"before": load_average()}, "models": {}}
    rounds = {k: [] for k in bes}
    for _ in range(args.rounds):
        for k, be in bes.items():
            rounds[k].append(summarize(repeat(lambda: be.infer(x), args.seconds, min_iters=5, warmup_iters=1))["p50"])
    out["load_average"]["after"] = load_average()
    for k, be in bes.items():
        out["models"][k] = {"model_id": be.meta.model_id, "backbone": be.meta.backbone, "head": be.meta.head,
                            "precision": be.meta.precision, "p50_ms": round(float(np.median(rounds[k])), 2),
                            "best_round_p50_ms": round(min(rounds[k]), 2), "round_p50s": rounds[k]}
        v = out["models"][k]
        print(f"{k:70s} {v['backbone']:18s} {v['head']:5s} {v['precision']:5s} p50 {v['p50_ms']:6.2f} ms (best round {v['best_round_p50_ms']:.2f})")
    print(f"load {out['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
