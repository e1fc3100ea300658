"""The `build-engine` command line.

    build-engine MODEL.onnx [-o MODEL.plan] [--precision fp16|fp32] [--batch 1:8:32] [--workspace MB]
                 [--timing-cache FILE] [--samples DIR] [--raw]
    build-engine fp16 MODEL.onnx [-o MODEL.fp16.onnx] [--samples DIR]   mixed-precision ONNX + CPU accuracy (no GPU)
    build-engine extract MODEL.plan [-o MODEL.engine]                    the bare engine, for trtexec or Triton
    build-engine info MODEL.plan [--json]                                what a plan holds and was built for
    build-engine env                                                     TensorRT / cuda-python / GPU on this machine
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from inspector.cli import run_app
from inspector.errors import InspectorError

from .plan import BatchRange

TOOLS = ("fp16", "extract", "info", "env")

build_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
tools_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="build-engine's tools (the build itself: `build-engine MODEL.onnx`).")


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


@build_app.command()
def build(
    model: Path = typer.Argument(..., help="The FP32 .onnx from `inspector train`."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write (default: MODEL.plan; MODEL.engine with --raw)."),
    precision: str = typer.Option("fp16", help="fp16 (a mixed-precision graph: FP16 features, FP32 scoring) | fp32."),
    batch: str = typer.Option("1:8:32", help="Optimisation profile of the batch dimension, MIN:OPT:MAX."),
    workspace: Optional[int] = typer.Option(None, help="Builder workspace limit in MB (default: TensorRT's)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file, read if present and written back (faster rebuilds)."),
    samples: Optional[Path] = typer.Option(None, help="Real images for the self-check: an MVTec category or a folder (default: the training data recorded in the model)."),
    max_samples: int = typer.Option(32, help="Sample images used by the self-check."),
    tolerance: float = typer.Option(1e-3, help="Max relative score deviation from onnxruntime FP32 before the engine is refused."),
    profiles: int = typer.Option(1, help="Identical optimisation profiles, one per concurrently running execution context."),
    raw: bool = typer.Option(False, "--raw", help="Write the bare TensorRT engine (for trtexec / Triton) instead of the .plan."),
    device: int = typer.Option(0, help="CUDA device to build on."),
) -> None:
    """Compile an inspector ONNX model into a TensorRT engine for this machine's GPU, in a self-describing .plan.

    Other commands: `build-engine fp16|extract|info|env --help`.
    """
    from .builder import BuildOptions
    from .builder import build as run_build

    opts = BuildOptions(precision=precision, batch=BatchRange.parse(batch), workspace_mb=workspace, timing_cache=timing_cache,
                        samples=samples, max_samples=max_samples, tolerance=tolerance, profiles=profiles, raw=raw, device=device)
    opts.validate()
    if not model.is_file():
        raise InspectorError(f"{model}: model file not found")
    result = run_build(model, output, opts, log=_echo)
    kind = "engine" if raw else "plan"
    typer.echo(f"wrote {result.output} ({kind}, {result.precision}, {result.engine_bytes / 1e6:.1f} MB engine), "
               f"self-check max relative deviation {result.self_check['max_rel']:.2e} on {result.self_check['images']} images, "
               f"{result.seconds:.0f} s")


@tools_app.command("fp16")
def fp16_cmd(
    model: Path = typer.Argument(..., help="The FP32 .onnx from `inspector train`."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Mixed-precision ONNX to write (default: MODEL.fp16.onnx)."),
    samples: Optional[Path] = typer.Option(None, help="Real images for the accuracy check (default: the training data recorded in the model)."),
    max_samples: int = typer.Option(32, help="Images used by the accuracy check."),
    tolerance: float = typer.Option(1e-3, help="Max relative score deviation from the FP32 graph."),
    json_out: bool = typer.Option(False, "--json", help="Print the accuracy figures as JSON."),
) -> None:
    """Write the mixed-precision ONNX a strongly typed TensorRT build takes, and check it on the CPU."""
    from . import fp16

    if not model.is_file():
        raise InspectorError(f"{model}: model file not found")
    if not 0 < tolerance < 1:
        raise InspectorError(f"--tolerance: {tolerance} must be a relative deviation between 0 and 1")
    src = fp16.load_model(model)
    meta = fp16.read_meta(src, str(model))
    out = output or model.with_suffix(".fp16.onnx")
    conv = fp16.convert_fp16(src, source=str(model))
    from .plan import write_atomic

    write_atomic(out, conv.model.SerializeToString())
    _echo(f"wrote {out}: {conv.summary()}")
    folder = samples or (Path(meta.training["data"]) if (meta.training or {}).get("data") else None)
    if folder is None or not folder.is_dir():
        raise InspectorError(f"--samples DIR is needed for the accuracy check (the training data {folder} is not here)")
    paths, images = fp16.load_samples(folder, meta, max_samples)
    acc = fp16.check_accuracy(src, conv.model, images, [str(p) for p in paths], tolerance)
    if json_out:
        typer.echo(json.dumps({"images": acc.n_images, "samples": str(folder), "max_rel_onnxruntime": acc.max_rel,
                               "max_rel_emulated": acc.max_rel_emulated, "mean_rel_emulated": acc.mean_rel,
                               "map_max_abs": acc.map_max_abs, "worst": acc.worst_image, "tolerance": tolerance,
                               "ok": acc.ok, **acc.seconds}))
    else:
        typer.echo(acc.line())
    if not acc.ok:
        _echo(f"warning: over the tolerance {tolerance:.0e}: `build-engine {model}` would refuse this FP16 engine")
        raise typer.Exit(1)


@tools_app.command()
def extract(
    plan: Path = typer.Argument(..., help="A .plan from build-engine."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Engine file to write (default: PLAN.engine)."),
) -> None:
    """Write the plan's bare TensorRT engine (trtexec --loadEngine, Triton's model.plan)."""
    from .plan import read_plan, write_atomic

    p = read_plan(plan)
    out = output or plan.with_suffix(".engine")
    if out.resolve() == plan.resolve():
        raise InspectorError(f"-o {out}: would overwrite the plan itself")
    write_atomic(out, p.engine)
    typer.echo(f"wrote {out} ({len(p.engine) / 1e6:.1f} MB, TensorRT {p.header.tensorrt}, {p.header.gpu_name})")


@tools_app.command()
def info(
    plan: Path = typer.Argument(..., help="A .plan from build-engine."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole header as JSON."),
) -> None:
    """What a plan holds: model, TensorRT version and GPU it was built for, batch profile, self-check."""
    from .plan import read_plan

    p = read_plan(plan)
    h = p.header
    if json_out:
        typer.echo(json.dumps(h.to_dict(p.meta), indent=2, sort_keys=True))
        return
    check = h.self_check
    for line in (
        f"model      {p.meta.model_id} ({p.meta.backbone}, {p.meta.head}, category {p.meta.category})",
        f"threshold  {p.meta.threshold.value:.5f} ({p.meta.threshold.method})",
        f"built for  TensorRT {h.tensorrt}, {h.gpu_name} (compute capability {h.compute_capability}), {h.built}",
        f"engine     {h.precision}, batch {h.batch}, {h.profiles} profile(s), {h.engine_bytes / 1e6:.1f} MB",
        f"self-check max relative deviation {check.get('max_rel', float('nan')):.2e} on {check.get('images', 0)} images"
        f" (tolerance {check.get('tolerance', float('nan')):.0e})",
    ):
        typer.echo(line)


@tools_app.command()
def env() -> None:
    """Report TensorRT, cuda-python and the GPU on this machine (what a build needs)."""
    from .builder import MissingToolError, environment

    try:
        trt, _, gpu = environment()
    except MissingToolError as exc:
        typer.echo(str(exc))
        raise typer.Exit(1)
    typer.echo(f"TensorRT {trt.__version__}, {gpu.name} (compute capability {gpu.compute_capability}, {gpu.memory_mb} MB)")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    app = tools_app if argv and argv[0] in TOOLS else build_app
    run_app(app, args=argv, prog_name="build-engine")


if __name__ == "__main__":
    main()
