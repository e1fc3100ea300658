"""PyTorch eager: the reference implementation's inference path, for timing only.

Imported lazily (only when `inspector bench` finds the train extra installed), so nothing in
inspector/ imports torch at module import time. The model timed is trainer.model.InferenceModel
built for the backbone named in the model's metadata, with *untrained* weights: random backbone,
random embedder, random center. Latency does not depend on weight values (same graph, same
shapes, same kernels), so this times exactly what a trained model costs. These weights never
leave the benchmark: the product's trainer keeps refusing to build a model without real weights.
"""

from __future__ import annotations

import os

from inspector.modelmeta import ModelMeta


def _torch():
    # OpenMP threads that spin after each op steal the only other core from the host threads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    return torch


def untrained_inference_model(backbone: str, size: int = 224, centers: int = 1, seed: int = 0,
                              head: str = "cse", bank_size: int | None = None):
    """trainer.model.InferenceModel for `backbone` with random weights (eval mode, CPU).

    head "cse": embedder + cosine to `centers` random centers; "patch": a random memory bank of
    `bank_size` patches (its size, not its values, sets the cost).
    """
    torch = _torch()
    import timm

    from trainer import model as tm
    from trainer.backbones import Backbone, get_spec

    torch.manual_seed(seed)
    spec = get_spec(backbone)
    classifier = timm.create_model(spec.timm_name, pretrained=False)  # random: timing only
    bb = Backbone(spec, classifier, size)
    c3, c4 = bb.channels
    cells = size // 32
    if head == "patch":
        if not hasattr(tm, "PatchHead"):
            raise ValueError("this trainer has no patch head")
        return tm.InferenceModel(bb, tm.PatchHead(torch.randn(bank_size or 1024, c3 + c4))).eval()
    if head != "cse":
        raise ValueError(f"head {head!r}: the timing model knows cse and patch")
    emb, center_t = tm.Embedder(c3 + c4), torch.randn(centers, tm.EMBED_DIM, cells, cells)
    if hasattr(tm, "CSEHead"):
        return tm.InferenceModel(bb, tm.CSEHead(emb, center_t)).eval()
    return tm.InferenceModel(bb, emb, tm.CosineHead(center_t)).eval()  # the first trainer's signature


def onnx_shapes(path) -> dict:
    """What sets the cost of a model's head, read from its ONNX file: centers and memory-bank size."""
    import onnx
    from onnx import numpy_helper

    out: dict = {}
    for init in onnx.load(str(path), load_external_data=False).graph.initializer:
        name = init.name.lower()
        if "bank_t" in name and len(init.dims) == 2:
            out["bank_size"] = int(init.dims[1])
        elif name.endswith("centers") and len(init.dims) == 4:
            out["centers"] = int(init.dims[0])
    return out


class TorchEager:
    """Backend-like wrapper: uint8 [N, H, W, 3] numpy in, (score, map) numpy out, on CPU or CUDA."""

    def __init__(self, meta: ModelMeta, device: str = "cpu", threads: int = 0, seed: int = 0,
                 shapes: dict | None = None):
        torch = _torch()
        self.torch = torch
        if device == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.device = device
        self.meta = meta
        pre = meta.preprocess
        if pre.crop_h != pre.crop_w:
            raise ValueError("the PyTorch eager timing model needs a square crop")
        shapes = shapes or {}
        self.model = untrained_inference_model(meta.backbone, pre.crop_h, centers=shapes.get("centers", 1), seed=seed,
                                               head=meta.head, bank_size=shapes.get("bank_size")).to(device)
        self.name = f"pytorch-eager-{device}"
        self.precision = "fp32"
        self.versions = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def infer(self, images):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device, non_blocking=False)
            score, amap = self.model(x)
            self.sync()
            return score.cpu().numpy(), amap.cpu().numpy()

    def close(self) -> None:
        self.model = None


def cuda_available() -> bool:
    torch = _torch()
    return bool(torch.cuda.is_available())
