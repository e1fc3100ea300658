"""ONNX export of the fused inference model, with the model's metadata attached."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import onnx
import torch

from inspector.modelmeta import META_KEY, ModelMeta

from .model import InferenceModel

OPSET = 18


def export_onnx(model: InferenceModel, meta: ModelMeta, path: str | Path) -> Path:
    """uint8 `image` [N, H, W, 3] -> `score` [N], `anomaly_map` [N, h, w]; N dynamic, all else static."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = meta.preprocess
    dummy = torch.zeros(2, pre.crop_h, pre.crop_w, 3, dtype=torch.uint8)
    model = model.cpu().eval()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # The dynamo exporter folds timm's "same" padding into Conv pads (the TorchScript one leaves
        # Pad nodes fed by shape arithmetic, which TensorRT rejects) and runs onnxscript's optimiser.
        program = torch.onnx.export(
            model, (dummy,), dynamo=True, opset_version=OPSET, external_data=False,
            input_names=["image"], output_names=["score", "anomaly_map"],
            dynamic_shapes={"image_u8": {0: torch.export.Dim("N", min=1, max=4096)}},
        )
    proto = program.model_proto
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def set_metadata(proto: onnx.ModelProto, meta: ModelMeta) -> None:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    proto.producer_name, proto.producer_version = "surface-inspector", meta.software.get("inspector", "")
    proto.doc_string = f"CSE surface anomaly model {meta.model_id} ({meta.backbone}, {meta.category})"
