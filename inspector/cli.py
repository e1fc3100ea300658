"""The `inspector` command line. Training is imported lazily: the runtime needs no torch."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import InspectorError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Surface inspection: train a CSE model, evaluate it, run it on the line.")


@app.command()
def train(
    data: Path = typer.Argument(..., help="MVTec-layout category folder (train/good/...) or a folder of good images."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write [default: <category>.onnx]."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of training settings (flags override it)."),
    scoring: Optional[str] = typer.Option(None, help="cse (the paper's) | patch (memory bank) | auto (both, pick by validation) [default: cse]."),
    backbone: Optional[str] = typer.Option(None, help="efficientnet_b3 | efficientnet_lite0/1/2 [default: efficientnet_lite2]."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (state dict) instead of the packaged/online ones."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs [default: 30]."),
    batch_size: Optional[int] = typer.Option(None, help="Pairs per step [default: 8]."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate; the one-cycle peak is 10x [default: 4e-4]."),
    clusters: Optional[int] = typer.Option(None, help="k-means centers of good embeddings [default: 1]."),
    anomaly_source: Optional[Path] = typer.Option(None, help="Folder of texture images (e.g. DTD) for textural defects."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda [default: cpu]."),
    seed: Optional[int] = typer.Option(None, help="Random seed [default: 0]."),
) -> None:
    """Train a CSE model on good images and export one ONNX file with its metadata."""
    try:
        from trainer.config import TrainConfig
        from trainer.export import export_onnx
        from trainer.train import train as run_training
    except ImportError as exc:
        raise InspectorError(f"training needs the train extra ({exc.name} is missing): pip install '.[train]'") from None
    from inspector.configfile import resolve

    cfg = resolve(TrainConfig, config, {
        "scoring": scoring, "backbone": backbone, "weights": str(weights) if weights else None, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "clusters": clusters, "anomaly_source": str(anomaly_source) if anomaly_source else None,
        "device": device, "seed": seed,
    })
    if output is not None and output.is_dir():  # said before minutes of training, not after
        raise InspectorError(f"-o {output}: is a folder; give the model's file name")
    result = run_training(data, cfg, log=lambda m: typer.echo(m, err=True))
    out = output or Path(f"{result.meta.category}.onnx")
    if result.alternative is not None:  # auto: keep the other head beside it, for `evaluate` to compare
        alt = out.with_name(f"{out.stem}.{result.alternative_meta.head}{out.suffix}")
        result.meta.training["selection"]["alternative"] = alt.name
        export_onnx(result.alternative, result.alternative_meta, alt)
        typer.echo(f"wrote {alt} (the {result.alternative_meta.head} head, not chosen)")
    export_onnx(result.model, result.meta, out)
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), {result.meta.head} head, model id {result.meta.model_id}, "
               f"threshold {result.meta.threshold.value:.5f}")


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="The .onnx model (or a .plan with --backend tensorrt)."),
    data: Path = typer.Argument(..., help="MVTec-layout category folder with test/good and test/<defect>."),
    report: Optional[Path] = typer.Option(None, help="Folder for metrics.json and PNGs (ROC, histogram, heatmaps)."),
    threshold: Optional[float] = typer.Option(None, help="Override the model's calibrated threshold."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | tensorrt."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a summary."),
) -> None:
    """Image AUROC, pixel AUROC, false-reject and escape rates at the stored threshold."""
    from .backends import open_backend
    from .evaluate import evaluate as run_eval, summary_lines
    from .errors import ModelError

    if threshold is not None and not math.isfinite(threshold):
        raise InspectorError(f"--threshold: {threshold} is not a finite number")
    with open_backend(model, backend) as be:
        result = run_eval(be, data, report, threshold)
        meta = be.meta
    selection = meta.training.get("selection")
    alt_file = model.with_name(selection["alternative"]) if selection and selection.get("alternative") else None
    if alt_file is not None and alt_file.is_file():  # auto-trained: evaluate the other head too
        with open_backend(alt_file, backend) as be:
            if be.meta.head == meta.head or be.meta.category != meta.category:
                raise ModelError(f"{alt_file}: not the alternative of {model.name} (a {be.meta.category} {be.meta.head} model, "
                                 f"expected {meta.category}'s other head)")
            result["alternative"] = {k: v for k, v in run_eval(be, data).items() if k != "scores"}
            result["alternative"]["head"] = be.meta.head
    if selection:
        result["selection"] = selection
    if json_out:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "scores"}, indent=2))
    else:
        for line in summary_lines(result):
            typer.echo(line)
        if selection:
            figs = selection["synthetic_auroc"]
            typer.echo(f"auto chose the {selection['chosen']} head: synthetic-defect validation AUROC "
                       + ", ".join(f"{k} {v:.4f}" for k, v in figs.items())
                       + (f"; {selection['reason']}" if selection.get("reason") else ""))
            if "alternative" in result:
                alt = result["alternative"]
                fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731  (no defects: no AUROC)
                typer.echo(f"on these real defects: {selection['chosen']} {fmt(result['image_auroc'])}, "
                           f"{alt['head']} {fmt(alt['image_auroc'])} ({alt_file.name})")
            elif alt_file is not None:
                typer.echo(f"the other head's file {alt_file} is not there: only the chosen head was evaluated")
        if report:
            typer.echo(f"report: {report}/metrics.json, roc.png, histogram.png, worst_good.png, worst_defective.png")


from .agent.cli_run import run_command  # noqa: E402  (the agent, issue 3)

app.command("run")(run_command)

from .bench.cli import bench_command, quantize_command  # noqa: E402  (benchmarks and INT8, issue 5)

app.command("bench")(bench_command)
app.command("quantize")(quantize_command)


def run_app(typer_app: typer.Typer, **kwargs) -> None:
    """Run a Typer app with the products' error contract: a user's mistake is one line, exit 2."""
    try:
        typer_app(**kwargs)
    except InspectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
