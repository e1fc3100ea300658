"""`inspector run`: the command. Registered in inspector/cli.py; heavy imports wait until it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError


def _ints(text: Optional[str], n: int, key: str) -> Optional[list[int]]:
    """'a,b,c' -> [a, b, c] (n integers), or a ConfigError naming the flag."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",")] if n == 2 else [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n:
        raise ConfigError(f"--{key}: expected {n} integers separated by commas, got {text!r}")
    return values


def _flag(value: bool) -> Optional[bool]:
    return True if value else None  # not given: leave the config file's value


def run_command(
    camera: Optional[int] = typer.Option(None, "--camera", help="Camera index (OpenCV)."),
    video: Optional[str] = typer.Option(None, "--video", help="Video file or stream URL (rtsp://, http://...)."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Folder of images, scored in sorted order."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT .plan (built with build-engine)."),
    model: Optional[Path] = typer.Option(None, "--model", help="ONNX model from `inspector train`."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of run settings (flags override it); see deploy/agent.yaml."),
    publish: Optional[str] = typer.Option(None, "--publish", help="ZeroMQ PUB endpoint to bind (default: tcp://*:5556)."),
    recovery: Optional[str] = typer.Option(None, "--recovery", help="Recovery (ROUTER) endpoint to bind (default: tcp://*:5557)."),
    station: Optional[str] = typer.Option(None, "--station", help="Station name, the first topic part (default: station1)."),
    source_name: Optional[str] = typer.Option(None, "--source-name", help="Source name in topics (default: cam<N>, video stem, folder name)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the model's calibrated threshold."),
    backend: Optional[str] = typer.Option(None, "--backend", help="auto | tensorrt | onnxruntime (default: auto)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Micro-batch size when frames queue up (default: 4)."),
    in_flight: Optional[int] = typer.Option(None, "--in-flight", help="Batches in flight between preprocessing and publishing (default: 2)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames (drain, exit 0)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after S seconds (drain, exit 0)."),
    watch: bool = typer.Option(False, "--watch", help="Folder: keep scoring new files."),
    fast: bool = typer.Option(False, "--fast", help="Video file: as fast as possible, not at its native rate."),
    loop: bool = typer.Option(False, "--loop", help="Video file: start again at the end."),
    live: bool = typer.Option(False, "--live", help="Video: treat it like a camera (newest frame only, reconnect)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Region of interest X,Y,W,H in frame pixels."),
    tile: Optional[str] = typer.Option(None, "--tile", help="Tile size H,W: score tiles, frame score = max."),
    tile_stride: Optional[str] = typer.Option(None, "--tile-stride", help="Tile step H,W (default: tile x crop/resize)."),
    log_db: Optional[Path] = typer.Option(None, "--log-db", help="Durable SQLite result log (default: inspector-results.db)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="onnxruntime threads (default: all cores)."),
    publish_map: bool = typer.Option(False, "--publish-map", help="Include the anomaly map in each result."),
    linger: Optional[float] = typer.Option(None, "--linger", help="Seconds to keep heartbeat and recovery up after draining (default: 1)."),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="debug | info | warning | error (default: info)."),
) -> None:
    """Run the inspection agent: score camera, video or folder frames and publish pass/fail over ZeroMQ."""
    from .agent import Agent
    from .config import resolve_run
    from .jsonlog import setup
    from .signals import StopSignals

    cfg = resolve_run(config, {
        "camera": camera, "video": video, "folder": str(folder) if folder else None,
        "engine": str(engine) if engine else None, "model": str(model) if model else None,
        "publish": publish, "recovery": recovery, "station": station, "source_name": source_name,
        "threshold": threshold, "backend": backend, "batch": batch, "in_flight": in_flight,
        "max_frames": max_frames, "duration": duration, "watch": _flag(watch), "fast": _flag(fast),
        "loop": _flag(loop), "live": _flag(live), "roi": _ints(roi, 4, "roi"), "tile": _ints(tile, 2, "tile"),
        "tile_stride": _ints(tile_stride, 2, "tile-stride"), "log_db": str(log_db) if log_db else None,
        "threads": threads, "publish_map": _flag(publish_map), "linger_s": linger, "log_level": log_level,
    })
    setup(cfg.log_level)
    agent = Agent(cfg)
    with StopSignals(lambda name: agent.stop(f"{name} received")):
        summary = agent.run()
    tput = f", {summary['throughput_fps']:.2f} frames/s" if summary["throughput_fps"] else ""
    typer.echo(f"published {summary['published']} results ({summary['fails']} fail, {summary['errors']} error; "
               f"{summary['dropped']} dropped) up to seq {summary['last_seq']}{tput}; stopped: {summary['reason']}")
    if summary["failed"]:
        raise typer.Exit(1)  # an internal failure, not a clean stop: let systemd restart the agent
