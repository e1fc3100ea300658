"""The .plan container: one file that carries everything the agent needs to run a TensorRT engine.

Layout (little endian):

    offset 0   8 bytes   magic b"INSPPLAN"
    offset 8   u16       container format version (1)
    offset 10  u16       reserved (0)
    offset 12  u32       header length H
    offset 16  H bytes   header, UTF-8 JSON (below)
    16 + H     the raw TensorRT engine, exactly as IBuilder.build_serialized_network wrote it

Header keys: "format" ("inspector.plan/1"), "tensorrt" (the version that built it), "gpu" {"name",
"compute_capability"}, "precision" ("fp16"|"fp32"), "batch" {"min","opt","max"}, "profiles",
"engine" {"bytes","sha256"}, "self_check" (what the builder measured against onnxruntime FP32),
"source" (the ONNX it came from), "built" (UTC time), "model" (the model metadata, the same JSON
object the ONNX carries under metadata_props["inspector"]: preprocessing, threshold, ids).

A TensorRT engine only runs under the TensorRT version and on the GPU model it was built for;
check_compatible() turns a mismatch into one clear message before TensorRT sees the bytes.
This module needs neither TensorRT nor CUDA.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import ModelError
from inspector.modelmeta import ModelMeta

MAGIC = b"INSPPLAN"
CONTAINER_VERSION = 1
FORMAT = "inspector.plan/1"
PRECISIONS = ("fp16", "fp32")
MAX_BATCH = 4096  # the exported ONNX's dynamic N is declared 1..4096
_PREFIX = struct.Struct("<8sHHI")
MAX_HEADER = 16 << 20


@dataclass(frozen=True)
class BatchRange:
    """The optimisation profile of the dynamic batch dimension N."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.min, self.opt, self.max)):
            raise ModelError(f"batch {self.min}:{self.opt}:{self.max}: must be whole numbers")
        if not 1 <= self.min <= self.opt <= self.max <= MAX_BATCH:
            raise ModelError(f"batch {self.min}:{self.opt}:{self.max}: must satisfy 1 <= MIN <= OPT <= MAX <= {MAX_BATCH}")

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """'MIN:OPT:MAX' (or a single N for a fixed batch)."""
        parts = str(text).strip().split(":")
        if len(parts) == 1:
            parts = parts * 3
        if len(parts) != 3 or not all(re.fullmatch(r"\d+", p.strip()) for p in parts):
            raise ModelError(f"--batch {text!r}: not MIN:OPT:MAX (three whole numbers, e.g. 1:8:32)")
        try:
            return cls(*(int(p) for p in parts))
        except ModelError as exc:
            raise ModelError(f"--batch {text!r}: {str(exc).split(': ', 1)[-1]}") from None

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
class PlanHeader:
    tensorrt: str
    gpu_name: str
    compute_capability: str
    precision: str
    batch: BatchRange
    engine_bytes: int
    engine_sha256: str
    profiles: int = 1
    self_check: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    built: str = ""

    def to_dict(self, meta: ModelMeta) -> dict[str, Any]:
        return {
            "format": FORMAT, "tensorrt": self.tensorrt,
            "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability},
            "precision": self.precision, "batch": asdict(self.batch), "profiles": self.profiles,
            "engine": {"bytes": self.engine_bytes, "sha256": self.engine_sha256},
            "self_check": self.self_check, "source": self.source, "built": self.built,
            "model": json.loads(meta.to_json()),
        }


@dataclass(frozen=True)
class Plan:
    header: PlanHeader
    meta: ModelMeta
    engine: bytes


def pack(meta: ModelMeta, engine: bytes, *, tensorrt: str, gpu_name: str, compute_capability: str,
         precision: str, batch: BatchRange, profiles: int = 1, self_check: dict | None = None,
         source: dict | None = None) -> bytes:
    """The container's bytes for an engine and the model it was built from."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision: {precision!r} is not one of {PRECISIONS}")
    if not engine:
        raise ModelError("plan: the engine is empty")
    header = PlanHeader(
        tensorrt=str(tensorrt), gpu_name=str(gpu_name), compute_capability=str(compute_capability),
        precision=precision, batch=batch, engine_bytes=len(engine), engine_sha256=hashlib.sha256(engine).hexdigest(),
        profiles=int(profiles), self_check=dict(self_check or {}), source=dict(source or {}),
        built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    text = json.dumps(header.to_dict(meta), sort_keys=True).encode("utf-8")
    return _PREFIX.pack(MAGIC, CONTAINER_VERSION, 0, len(text)) + text + bytes(engine)


def unpack(data: bytes, source: str = "plan") -> Plan:
    """Parse a container; a foreign, truncated or corrupt file raises ModelError naming what is wrong."""
    data = memoryview(data)
    if len(data) < _PREFIX.size:
        raise ModelError(f"{source}: not an inspector plan (only {len(data)} bytes)")
    magic, version, _, hlen = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise ModelError(f"{source}: not an inspector plan (no {MAGIC.decode()} header); a raw TensorRT engine "
                         "lacks the model metadata: build the plan with `build-engine MODEL.onnx`")
    if version > CONTAINER_VERSION:
        raise ModelError(f"{source}: plan container version {version} is newer than this inspector reads ({CONTAINER_VERSION}); upgrade the agent")
    if version != CONTAINER_VERSION:
        raise ModelError(f"{source}: unknown plan container version {version}")
    if hlen > MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise ModelError(f"{source}: truncated or corrupt plan (header of {hlen} bytes, file of {len(data)})")
    try:
        raw = json.loads(bytes(data[_PREFIX.size : _PREFIX.size + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{source}: corrupt plan header ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        fmt = raw.get("format") if isinstance(raw, dict) else None
        raise ModelError(f"{source}: plan header format {fmt!r} is not {FORMAT!r}")
    try:
        header = PlanHeader(
            tensorrt=str(raw["tensorrt"]), gpu_name=str(raw["gpu"]["name"]),
            compute_capability=str(raw["gpu"]["compute_capability"]), precision=str(raw["precision"]),
            batch=BatchRange(**raw["batch"]), engine_bytes=int(raw["engine"]["bytes"]),
            engine_sha256=str(raw["engine"]["sha256"]), profiles=int(raw.get("profiles", 1)),
            self_check=dict(raw.get("self_check") or {}), source=dict(raw.get("source") or {}),
            built=str(raw.get("built", "")),
        )
        model = raw["model"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: incomplete plan header ({type(exc).__name__}: {exc})") from None
    meta = ModelMeta.from_json(json.dumps(model), source)
    engine = bytes(data[_PREFIX.size + hlen :])
    if len(engine) != header.engine_bytes:
        raise ModelError(f"{source}: truncated or corrupt plan (engine of {len(engine)} bytes, header says {header.engine_bytes})")
    if hashlib.sha256(engine).hexdigest() != header.engine_sha256:
        raise ModelError(f"{source}: corrupt plan (engine checksum mismatch)")
    return Plan(header, meta, engine)


def read_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: plan file not found")
    return unpack(path.read_bytes(), str(path))


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write via a temporary file in the same folder, so a crash never leaves half a plan."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _version_key(version: str) -> tuple[int, ...]:
    """'10.13.3.9' -> (10, 13, 3, 9); trailing tags (.post1, +cuda12) are not part of the engine's ABI."""
    nums = re.findall(r"\d+", str(version).split("+")[0].split("post")[0])
    return tuple(int(n) for n in nums[:4])


def check_compatible(header: PlanHeader, tensorrt: str, gpu_name: str, compute_capability: str, source: str = "plan") -> None:
    """Refuse a plan built with another TensorRT version or for another GPU, naming both sides."""
    problems = []
    if _version_key(header.tensorrt) != _version_key(tensorrt):
        problems.append(f"TensorRT {header.tensorrt} built it, this machine runs TensorRT {tensorrt}")
    if str(header.compute_capability) != str(compute_capability):
        problems.append(f"built for compute capability {header.compute_capability} ({header.gpu_name}), "
                        f"this GPU is {compute_capability} ({gpu_name})")
    elif header.gpu_name.strip() != str(gpu_name).strip():
        problems.append(f"built for {header.gpu_name}, this GPU is {gpu_name}")
    if problems:
        raise ModelError(f"{source}: plan does not fit this machine: {'; '.join(problems)}. "
                         "TensorRT engines are tied to the TensorRT version and the GPU model: rebuild it here "
                         "with `build-engine MODEL.onnx`")
