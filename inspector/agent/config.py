"""RunConfig: every setting of `inspector run`. Defaults here < the YAML file (--config) < flags.

Flags replace the file's choice of source and model as a whole: `--folder X` on the command line
drops the file's `camera:`/`video:`, `--model Y` drops its `engine:`. Every other flag overrides
its own key only. Each bad key or value is a ConfigError naming it (and the file).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import BACKENDS
from ..configfile import build, load_yaml, require

SOURCE_KEYS = ("camera", "video", "folder")
MODEL_KEYS = ("engine", "model")
ENDPOINT = re.compile(r"^(tcp://[^\s/]+:(\d+|\*)|ipc://\S+|inproc://\S+)$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
PLAN_SUFFIXES = (".plan", ".engine")


@dataclass
class RunConfig:
    # --- source: exactly one of camera / video / folder
    camera: int | None = None  # OpenCV camera index
    video: str | None = None  # a video file, or a stream URL (rtsp://, http://, ...)
    folder: str | None = None  # a folder of images, scored in sorted order
    watch: bool = False  # folder: after the existing files, keep scoring new ones
    settle_s: float = 0.5  # folder: a file is read once its size and mtime are unchanged this long
    poll_s: float = 0.2  # folder --watch: how often the folder is listed
    fast: bool = False  # video file: as fast as possible instead of its native frame rate
    loop: bool = False  # video file: start again at the end
    live: bool = False  # video: treat it like a camera (newest frame only, reconnect on failure)
    reconnect_min_s: float = 0.5  # camera/stream: first retry delay after an outage, doubled each time ...
    reconnect_max_s: float = 10.0  # ... up to this
    source_name: str | None = None  # the <source> part of topics [default: cam<N>, the video's stem, the folder's name]
    # --- region of interest and tiling (applied to every frame, before the model's preprocessing)
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height in frame pixels
    tile: tuple[int, int] | None = None  # tile height, width in pixels; None = the whole ROI is one image
    tile_stride: tuple[int, int] | None = None  # step between tiles [default: the tile size, no overlap]
    # --- model: exactly one of engine (TensorRT .plan) / model (.onnx)
    engine: str | None = None
    model: str | None = None
    backend: str = "auto"  # auto | onnxruntime | tensorrt
    threads: int = 0  # onnxruntime intra-op threads; 0 = all cores
    ort_spinning: bool = False  # onnxruntime threads spin between ops; off leaves the CPU to the pipeline's threads
    threshold: float | None = None  # override the model's calibrated threshold
    # --- pipeline
    batch: int = 4  # micro-batch size (model inputs per inference call) when frames queue up
    in_flight: int = 2  # batches handed to inference and not yet published
    infer_threads: int = 1  # concurrent backend.infer calls; backends with submit/collect (TensorRT) use one thread
    queue_size: int = 16  # frames read and waiting for preprocessing
    max_frames: int | None = None  # stop after this many frames (then drain and exit 0)
    duration: float | None = None  # stop after this many seconds (then drain and exit 0)
    warmup: bool = True  # one inference before the source opens, so the first frame is not slow
    # --- publishing, durable log, recovery
    station: str = "station1"
    publish: str = "tcp://*:5556"  # ZeroMQ PUB endpoint (bound)
    recovery: str = "tcp://*:5557"  # ZeroMQ ROUTER endpoint answering "since N" and "status" (bound)
    log_db: str = "inspector-results.db"  # SQLite (WAL) log of every published result
    log_retain: int = 1_000_000  # results kept in the log; older ones are pruned
    log_sync: str = "normal"  # SQLite synchronous: normal (safe against crashes) | full (also power loss)
    heartbeat_s: float = 1.0
    publish_map: bool = False  # include the (stitched) anomaly map in each result
    linger_s: float = 1.0  # after draining: keep heartbeat and recovery up this long before exiting
    log_level: str = "info"

    # ------------------------------------------------------------------ checks
    def validate(self, source: str) -> None:
        given = [k for k in SOURCE_KEYS if getattr(self, k) is not None]
        require(len(given) == 1, source, "source",
                "give exactly one of camera, video or folder" + (f" (got {', '.join(given)})" if given else ""))
        models = [k for k in MODEL_KEYS if getattr(self, k) is not None]
        require(len(models) == 1, source, "model",
                "give exactly one of engine (.plan) or model (.onnx)" + (f" (got {', '.join(models)})" if models else ""))
        if self.camera is not None:
            require(self.camera >= 0, source, "camera", "an index >= 0")
        if self.video is not None:
            require(bool(self.video.strip()), source, "video", "must not be empty")
        if self.folder is not None:
            require(bool(self.folder.strip()), source, "folder", "must not be empty")
        require(not self.watch or self.folder is not None, source, "watch", "only applies to a folder source")
        require(not (self.fast or self.loop) or self.video is not None, source, "fast" if self.fast else "loop",
                "only applies to a video source")
        require(not self.live or self.video is not None, source, "live", "only applies to a video source")
        for key in ("settle_s", "poll_s", "reconnect_min_s", "reconnect_max_s", "heartbeat_s"):
            value = getattr(self, key)
            require(math.isfinite(value) and value > 0, source, key, f"must be > 0 (got {value})")
        require(self.reconnect_max_s >= self.reconnect_min_s, source, "reconnect_max_s", "must be >= reconnect_min_s")
        require(math.isfinite(self.linger_s) and self.linger_s >= 0, source, "linger_s", "must be >= 0")
        if self.source_name is not None:
            require(bool(NAME.match(self.source_name)), source, "source_name",
                    f"{self.source_name!r}: letters, digits, _ . - only (it is a topic part)")
        require(bool(NAME.match(self.station)), source, "station",
                f"{self.station!r}: letters, digits, _ . - only (it is a topic part)")
        if self.roi is not None:
            x, y, w, h = self.roi
            require(x >= 0 and y >= 0 and w >= 8 and h >= 8, source, "roi", f"{list(self.roi)}: x, y >= 0 and width, height >= 8")
        if self.tile is not None:
            require(min(self.tile) >= 8, source, "tile", f"{list(self.tile)}: height and width must be >= 8")
        if self.tile_stride is not None:
            require(self.tile is not None, source, "tile_stride", "needs tile")
            require(min(self.tile_stride) >= 1, source, "tile_stride", "must be >= 1")
            require(self.tile_stride[0] <= self.tile[0] and self.tile_stride[1] <= self.tile[1], source, "tile_stride",
                    f"{list(self.tile_stride)} must not exceed tile {list(self.tile)} (tiles would leave gaps)")
        require(self.backend in BACKENDS, source, "backend", f"{self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.engine is not None:
            require(Path(self.engine).suffix in PLAN_SUFFIXES, source, "engine",
                    f"{self.engine}: expected a TensorRT .plan (use model: for an .onnx file)")
            require(self.backend in ("auto", "tensorrt"), source, "backend", f"{self.backend} cannot run a TensorRT engine")
        if self.model is not None:
            require(Path(self.model).suffix not in PLAN_SUFFIXES, source, "model",
                    f"{self.model}: a TensorRT plan goes in engine: (--engine)")
            require(self.backend in ("auto", "onnxruntime"), source, "backend",
                    f"{self.backend} runs .plan engines; build one from the .onnx with build-engine")
        require(self.threads >= 0, source, "threads", "must be >= 0")
        if self.threshold is not None:
            require(math.isfinite(self.threshold) and self.threshold > 0, source, "threshold", f"must be > 0 (got {self.threshold})")
        require(1 <= self.batch <= 1024, source, "batch", f"must be in [1, 1024] (got {self.batch})")
        require(1 <= self.in_flight <= 64, source, "in_flight", f"must be in [1, 64] (got {self.in_flight})")
        require(1 <= self.infer_threads <= self.in_flight, source, "infer_threads", f"must be in [1, in_flight={self.in_flight}]")
        require(1 <= self.queue_size <= 100_000, source, "queue_size", f"must be in [1, 100000] (got {self.queue_size})")
        if self.max_frames is not None:
            require(self.max_frames >= 1, source, "max_frames", "must be >= 1")
        if self.duration is not None:
            require(math.isfinite(self.duration) and self.duration > 0, source, "duration", "must be > 0")
        for key in ("publish", "recovery"):
            value = getattr(self, key)
            require(bool(ENDPOINT.match(value)), source, key, f"{value!r} is not a ZeroMQ endpoint like tcp://*:5556")
        require(self.publish != self.recovery or self.publish.endswith(":*"), source, "recovery", "must differ from publish")
        require(bool(self.log_db.strip()), source, "log_db", "must not be empty")
        require(self.log_retain >= 1, source, "log_retain", "must be >= 1")
        require(self.log_sync in ("normal", "full"), source, "log_sync", "must be normal or full")
        require(self.log_level in LOG_LEVELS, source, "log_level", f"{self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    # ------------------------------------------------------------------ derived
    @property
    def model_file(self) -> Path:
        return Path(self.engine if self.engine is not None else self.model)  # type: ignore[arg-type]

    @property
    def source_kind(self) -> str:
        """camera | stream | video | folder."""
        if self.camera is not None:
            return "camera"
        if self.folder is not None:
            return "folder"
        return "stream" if is_url(self.video or "") else "video"

    @property
    def source_label(self) -> str:
        if self.source_name:
            return self.source_name
        if self.camera is not None:
            return f"cam{self.camera}"
        if self.folder is not None:
            name = Path(self.folder).resolve().name
        elif is_url(self.video or ""):
            name = "stream"
        else:
            name = Path(self.video or "video").stem
        clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("._-")[:64]
        return clean or "source"


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text))


def resolve_run(config_file: str | Path | None, flags: dict[str, Any]) -> RunConfig:
    """defaults < YAML < flags, like configfile.resolve, except that a source or model flag replaces the file's.

    Flags that are None were not given. Errors name the key and the file (plus "+ flags" when flags were given).
    """
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    source = str(config_file) if config_file else "command line"
    given = {k: v for k, v in flags.items() if v is not None}
    merged = dict(values)
    for group in (SOURCE_KEYS, MODEL_KEYS):
        if any(k in given for k in group):
            for k in group:
                merged.pop(k, None)
    merged.update(given)
    return build(RunConfig, merged, source if not given or not config_file else f"{source} + flags")
