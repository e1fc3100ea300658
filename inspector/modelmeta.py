"""The model's self-description, stored as JSON in the ONNX metadata_props (key "inspector").

The agent, the evaluator and the TensorRT builder read everything they need from it: host-side
preprocessing, the calibrated threshold, ids. The trainer writes it. Schema: README, "Model metadata".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError

META_KEY = "inspector"
SCHEMA = "inspector.model/1"
INTERPOLATIONS = ("area", "linear", "cubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """Host-side steps before the graph: resize to (resize_h, resize_w), then centre-crop."""

    resize_h: int = 256
    resize_w: int = 256
    crop_h: int = 224
    crop_w: int = 224
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"preprocess.interpolation: {self.interpolation!r} is not one of {INTERPOLATIONS}")
        if not (0 < self.crop_h <= self.resize_h and 0 < self.crop_w <= self.resize_w):
            raise ModelError(f"preprocess: crop {self.crop_h}x{self.crop_w} must fit in resize {self.resize_h}x{self.resize_w}")


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str  # "frr" (quantile of held-out good scores), "max" or "sigma"
    param: float  # target FRR for "frr", margin factor for "max", k for "sigma"
    n_images: int  # held-out good images it was set on


@dataclass(frozen=True)
class ModelMeta:
    model_id: str
    category: str
    head: str  # "cse" (cosine to k-means centers) or "patch"
    backbone: str
    weights_id: str
    preprocess: Preprocess
    threshold: Threshold
    map_h: int
    map_w: int
    good_scores: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)
    created: str = ""
    precision: str = "fp32"  # the graph's compute precision: fp32 | int8 (`inspector quantize`) | fp16
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMeta":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ModelError(f"{source}: metadata is not a JSON object")
        if raw.get("schema") != SCHEMA:
            raise ModelError(f"{source}: metadata schema {raw.get('schema')!r} is not {SCHEMA!r}; re-export the model")
        try:
            raw["preprocess"] = Preprocess(**raw["preprocess"])
            raw["threshold"] = Threshold(**raw["threshold"])
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = set(raw) - names
            if unknown:
                raise ModelError(f"{source}: unknown metadata keys {sorted(unknown)}")
            return cls(**raw)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{source}: incomplete or malformed metadata ({exc})") from None
