"""`inspector bench` and `inspector quantize`. Registered in inspector/cli.py; heavy imports wait until they run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import InspectorError


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise InspectorError(f"--batch: expected batch sizes >= 1 separated by commas, got {text!r}")
    return values


def bench_command(
    model: Optional[Path] = typer.Option(None, "--model", help="ONNX model: onnxruntime CPU/CUDA and PyTorch eager."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT .plan (build-engine)."),
    batch: str = typer.Option("1,8,32", "--batch", help="Batch sizes for throughput (batch 1 also gives latency)."),
    seconds: float = typer.Option(3.0, "--seconds", help="Seconds per measurement (after warm-up)."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Images: preprocessing cost, and the agent end to end."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file."),
    backends: Optional[str] = typer.Option(None, "--backends", help="Only these, comma-separated (e.g. onnxruntime-cpu,pytorch)."),
    no_torch: bool = typer.Option(False, "--no-torch", help="Skip PyTorch eager even where the train extra is installed."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for onnxruntime and torch (default: all cores)."),
    frames: int = typer.Option(200, "--frames", help="End to end: at most this many frames of --folder (0 = all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the timed inputs."),
) -> None:
    """Latency and throughput of every backend here, host preprocessing, the agent end to end; beside the paper."""
    from .report import table
    from .run import BenchConfig, run_bench

    cfg = BenchConfig(model=model, engine=engine, batches=_batches(batch), seconds=seconds, folder=folder, seed=seed,
                      backends=tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else None,
                      torch=not no_torch, threads=threads, e2e_frames=frames or None)
    res = run_bench(cfg, log=lambda m: typer.echo(m, err=True))
    for line in table(res):
        typer.echo(line)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2))
        typer.echo(f"wrote {json_out}")


def quantize_command(
    model: Path = typer.Argument(..., help="FP32 ONNX model from `inspector train`."),
    output: Path = typer.Option(..., "-o", "--output", help="INT8 ONNX file to write (e.g. model.int8.onnx)."),
    calib: Path = typer.Option(..., "--calib", help="Good images to calibrate on: an MVTec category (train/good) or a folder."),
    calib_images: int = typer.Option(64, "--calib-images", help="How many of them (evenly spaced)."),
    fmt: str = typer.Option("qdq", "--format", help="qdq | qoperator."),
    ops: str = typer.Option("Conv,Clip,Relu", "--ops", help="Op types to quantise, comma-separated."),
    keep_fp32: str = typer.Option("head.,embedder.,backbone.features.conv_stem,backbone.features.blocks.0", "--keep-fp32",
                                   help="Weight-name prefixes left in FP32, comma-separated ('' = none); default: head, stem, first block."),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="Weight scales per output channel."),
    reduce_range: bool = typer.Option(True, "--reduce-range/--full-range", help="7-bit weights (no u8s8 saturation on AVX2 without VNNI)."),
    method: str = typer.Option("minmax", "--method", help="Activation ranges: minmax | entropy | percentile."),
    check: Path = typer.Option(None, "--check", help="MVTec category whose test/ images measure the AUROC cost (default: --calib when it is one)."),
    max_auroc_loss: float = typer.Option(0.5, "--max-auroc-loss", help="Image-AUROC points INT8 may lose against FP32 there before the model is refused."),
) -> None:
    """Static INT8 quantisation (onnxruntime QDQ), calibrated on good images; the threshold is re-set for INT8."""
    from ..quantize import QuantConfig, quantize_model

    cfg = QuantConfig(fmt=fmt, ops=tuple(o.strip() for o in ops.split(",") if o.strip()), keep_fp32=tuple(k.strip() for k in keep_fp32.split(",") if k.strip()),
                      per_channel=per_channel, reduce_range=reduce_range, method=method, images=calib_images,
                      max_auroc_loss=max_auroc_loss)
    meta = quantize_model(model, output, calib, cfg, log=lambda m: typer.echo(m, err=True), check=check)
    typer.echo(f"wrote {output}: {meta.model_id}, precision {meta.precision}, threshold {meta.threshold.value:.5f}")
