"""The CPU-latency levers, measured: efficientnet_b3 at 224x224, batch 1, onnxruntime on this machine.

    .venv/bin/python benchmarks/make_timing_model.py -o runs/timing_b3.onnx
    .venv/bin/python benchmarks/levers.py runs/timing_b3.onnx --calib ../shared/data/magnetic_tile \
        --json benchmarks/results/levers.json

Variants (each one model file + one OrtOptions):
- session settings on the FP32 model: graph optimisation level, intra-op threads, spinning,
  sequential vs parallel execution;
- precision: static INT8 (inspector.quantize: QDQ / QOperator, per-channel, which ops), FP16
  (onnxconverter-common, I/O kept uint8/float32);
- operator fusion: what onnxruntime fuses at each level is recorded (node counts of the graph it
  actually runs, from optimized_model_filepath).
Noise: other processes share these 2 cores. Every variant is timed in `--rounds` rounds of
`--seconds`, interleaved round-robin, and reported as the median of its round medians (and the
best round), with the load average before and after.
"""

from __future__ import annotations

import argparse
import functools
import collections
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend, OrtOptions  # noqa: E402
from inspector.bench.hardware import describe, hardware, load_average  # noqa: E402
from inspector.bench.timing import repeat, summarize  # noqa: E402
from inspector.quantize import QuantConfig, quantize_model  # noqa: E402

BASE = OrtOptions(intra_op_threads=2, allow_spinning=True)  # explicit: the names below say "spin"/"no spin"
RECIPE_FP32 = ("head.", "embedder.", "backbone.features.conv_stem", "backbone.features.blocks.0")
SESSION_VARIANTS = {
    "fp32, opt all, 2 threads, spin": BASE,
    "fp32, opt all, 2 threads, no spin": dataclasses.replace(BASE, allow_spinning=False),
    "fp32, opt extended": dataclasses.replace(BASE, graph_optimization="extended"),
    "fp32, opt basic": dataclasses.replace(BASE, graph_optimization="basic"),
    "fp32, opt disabled": dataclasses.replace(BASE, graph_optimization="disable"),
    "fp32, 1 thread": dataclasses.replace(BASE, intra_op_threads=1),
    "fp32, parallel, 2 inter": dataclasses.replace(BASE, execution_mode="parallel", inter_op_threads=2),
}
def quant_variants(backbone: str) -> dict[str, QuantConfig]:
    Q = functools.partial(QuantConfig, ops=("Conv",), reduce_range=False, keep_fp32=("head.", "embedder."))
    # The activation after each conv: ReLU6 (Clip) in the lite models, SiLU (Sigmoid, Mul) in b3.
    act = ("Clip", "Relu") if "lite" in backbone else ("Sigmoid", "Mul")
    return {
        "int8 qdq conv, head fp32": Q(ops=("Conv",)),
        "int8 qdq conv, head fp32, reduce-range": Q(ops=("Conv",), reduce_range=True),
        f"int8 qdq conv+{'+'.join(a.lower() for a in act)}, head fp32, reduce-range":
            Q(ops=("Conv",) + act, reduce_range=True),
        f"int8 qdq conv+{'+'.join(a.lower() for a in act)}+add, head fp32, reduce-range":
            Q(ops=("Conv", "Add") + act, reduce_range=True),
        "int8 qoperator conv, head fp32, reduce-range": Q(ops=("Conv",), fmt="qoperator", reduce_range=True),
        # The recipe that keeps lite2's AUROC within 0.5 point (benchmarks/results/quant_sweep_patch.json):
        f"int8 qdq conv+{'+'.join(a.lower() for a in act)}, head+stem+block 0 fp32, reduce-range":
            Q(ops=("Conv",) + act, reduce_range=True, keep_fp32=RECIPE_FP32),
        # inspector quantize's defaults
        "int8 inspector quantize defaults": QuantConfig(),
    }


def fp16_model(src: Path, dst: Path) -> None:
    """The mixed-precision graph build-engine writes for TensorRT (FP16 feature extractor, FP32 input
    stage and head): what FP16 means for this model, here run on onnxruntime's CPU provider."""
    from build_engine.fp16 import convert_file

    convert_file(src, dst)


def optimized_ops(path: Path, opts: OrtOptions) -> dict:
    """The graph onnxruntime really runs at these options: op counts after its fusions."""
    with tempfile.TemporaryDirectory() as tmp:
        so = opts.session_options()
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        g = onnx.load(so.optimized_model_filepath).graph
        return dict(collections.Counter(n.op_type for n in g.node).most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="the timing model (benchmarks/make_timing_model.py)")
    ap.add_argument("--calib", type=Path, required=True, help="good images for INT8 calibration")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="variant names to run, separated by |")
    ap.add_argument("--work", type=Path, default=Path("runs/levers"), help="where the variant model files go")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prepare-only", action="store_true", help="write the variant model files and stop")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    only = {s for s in args.only.split("|") if s}
    variants: dict[str, tuple[Path, OrtOptions]] = {n: (args.model, o) for n, o in SESSION_VARIANTS.items()}
    from inspector.backends.onnxruntime_backend import read_onnx_meta

    backbone = read_onnx_meta(ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"]), args.model).backbone
    for name, qc in quant_variants(backbone).items():
        if only and name not in only:
            continue
        dst = args.work / f"{args.model.stem}.{''.join(c if c.isalnum() else '_' for c in name)}.onnx"
        if not dst.exists():
            print(f"quantizing: {name}", file=sys.stderr, flush=True)
            quantize_model(args.model, dst, args.calib, qc, recalibrate=False, measure_cost=False)
        variants[name] = (dst, BASE)
        variants[name + ", no spin"] = (dst, dataclasses.replace(BASE, allow_spinning=False))
    fp16 = args.work / f"{args.model.stem}.fp16.onnx"
    if not only or "fp16" in only:
        try:
            if not fp16.exists():
                fp16_model(args.model, fp16)
            variants["fp16 (cpu)"] = (fp16, BASE)
        except Exception as exc:
            print(f"fp16: {type(exc).__name__}: {exc}", file=sys.stderr)
    if only:
        variants = {k: v for k, v in variants.items() if k in only or k.removesuffix(", no spin") in only}
    if args.prepare_only:
        print("\n".join(f"{k}: {p}" for k, (p, _) in variants.items()))
        return

    x = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    sessions = {}
    for name, (path, opts) in variants.items():
        be = OnnxRuntimeBackend(path, device="cpu", options=opts)
        repeat(lambda: be.infer(x), 0.5, warmup_iters=3)
        sessions[name] = be
    out = {"schema": "inspector.levers/1", "model": str(args.model), "hardware": hardware(),
           "load_average": {"before": load_average()}, "seconds": args.seconds, "rounds": args.rounds,
           "batch": 1, "variants": {}}
    print(f"{describe(out['hardware'])}; load {out['load_average']['before']}", file=sys.stderr)
    per_round: dict[str, list[dict]] = {n: [] for n in sessions}
    for r in range(args.rounds):
        for name, be in sessions.items():
            per_round[name].append(summarize(repeat(lambda: be.infer(x), args.seconds, min_iters=5, warmup_iters=1)))
        print(f"round {r + 1}/{args.rounds} done, load {load_average()}", file=sys.stderr, flush=True)
    for name, rounds in per_round.items():
        path, opts = variants[name]
        meds = [rd["p50"] for rd in rounds]
        out["variants"][name] = {
            "file": str(path), "options": dataclasses.asdict(opts), "size_mb": round(path.stat().st_size / 1e6, 1),
            "p50_ms": round(float(np.median(meds)), 3), "best_round_p50_ms": round(min(meds), 3),
            "p90_ms": round(float(np.median([rd["p90"] for rd in rounds])), 3),
            "p99_ms": round(float(np.median([rd["p99"] for rd in rounds])), 3), "rounds": rounds,
            "graph_ops": optimized_ops(path, opts),
        }
    out["load_average"]["after"] = load_average()
    width = max(len(n) for n in out["variants"])
    for name, v in sorted(out["variants"].items(), key=lambda kv: kv[1]["p50_ms"]):
        print(f"{name:<{width}}  p50 {v['p50_ms']:7.2f} ms  (best round {v['best_round_p50_ms']:.2f}, p99 {v['p99_ms']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
