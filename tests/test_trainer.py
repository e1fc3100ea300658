"""The trainer on real images: the exported ONNX graph, its metadata, its agreement with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="trainer tests need the train extra (torch)")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from inspector.dataset import train_images  # noqa: E402
from inspector.modelmeta import META_KEY, ModelMeta  # noqa: E402
from trainer.model import channel_cosine  # noqa: E402
from trainer.train import load_crops, split  # noqa: E402


def test_onnx_matches_pytorch_on_real_images(trained):
    result, path = trained
    crops = load_crops(result.val_images, result.meta.preprocess)
    score, amap = ort.InferenceSession(str(path)).run(None, {"image": crops})
    with torch.no_grad():
        t_score, t_map = result.model(torch.from_numpy(crops))
    assert np.abs(score - t_score.numpy()).max() < 1e-4
    assert np.abs(amap - t_map.numpy()).max() < 1e-4
    # the score is the mean of its own 7x7 distance map (k = 1)
    assert np.allclose(amap.mean(axis=(1, 2)), score, atol=1e-6)


def test_graph_contract(model_path):
    proto = onnx.load(str(model_path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert isinstance(dims[0], str) and dims[1:] == [224, 224, 3]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert isinstance(outs["score"][0], str) and len(outs["score"]) == 1
    assert outs["anomaly_map"][1:] == [7, 7]
    # TensorRT rejects Pad whose pads are computed at run time; none may be fed by anything but constants.
    consts = {i.name for i in proto.graph.initializer} | {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    for node in proto.graph.node:
        if node.op_type == "Pad":
            assert all(i in consts for i in node.input[1:] if i), node.name
        assert node.op_type not in ("Shape", "If", "Loop", "NonZero"), node.op_type


def test_metadata_is_complete(trained):
    result, path = trained
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = ModelMeta.from_json(props[META_KEY], str(path))
    assert meta == ModelMeta.from_json(result.meta.to_json())
    assert meta.head == "cse" and meta.backbone == "efficientnet_lite0"
    assert meta.preprocess.crop_h == 224 and meta.preprocess.resize_h == 256
    assert meta.threshold.method == "frr" and meta.threshold.n_images == len(result.val_images)
    assert meta.good_scores["n"] == len(result.val_images)
    assert meta.training["train_images"] + meta.training["val_images"] == 32
    assert "sha256:" in meta.weights_id and meta.software["torch"]
    json.loads(props[META_KEY])


def test_threshold_set_on_held_out_goods_only(trained, piped):
    """Validation images are disjoint from the k-means training images, and the threshold rejects
    at most the target fraction of them (and nothing from test/)."""
    result, path = trained
    names = {p.name for p in result.val_images}
    all_train = {p.name for p in train_images(piped)}
    assert names < all_train and not any("test" in p.parts for p in result.val_images)
    crops = load_crops(result.val_images, result.meta.preprocess)
    scores = ort.InferenceSession(str(path)).run(["score"], {"image": crops})[0]
    frr = (scores >= result.meta.threshold.value).mean()
    assert frr <= max(result.meta.threshold.param, 1 / len(scores))


def test_batchnorm_keeps_learning_after_validation(trained):
    """The reference code froze BatchNorm after the first validation; here every epoch trains it."""
    result, _ = trained
    steps = -(-result.meta.training["train_images"] // result.meta.training["batch_size"])
    best = result.meta.training["best_epoch"]
    assert best >= 2, "the fixture's best epoch should be a later one for this check to bite"
    for bn in (m for m in result.model.head.embedder.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        # two train-mode passes per step (both images of each pair); frozen BN would stop at 2 * steps
        assert int(bn.num_batches_tracked) == 2 * best * steps


def test_cosine_is_over_channels():
    a = torch.randn(3, 64, 7, 7)
    scale = torch.rand(3, 1, 7, 7) + 0.1  # rescaling each position's channel vector keeps the cosine
    assert torch.allclose(channel_cosine(a, a * scale), torch.ones(3), atol=1e-5)
    b = torch.randn(3, 64, 7, 7)
    manual = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert torch.allclose(channel_cosine(a, b), manual.mean((1, 2)), atol=1e-5)


def test_split_is_seeded_and_disjoint():
    tr, va = split(100, 0.3, seed=7)
    tr2, va2 = split(100, 0.3, seed=7)
    assert np.array_equal(va, va2) and len(va) == 30 and len(tr) == 70
    assert not set(tr) & set(va)
    assert not np.array_equal(va, split(100, 0.3, seed=8)[1])


def test_a_split_leaving_one_training_image_is_a_one_line_error(piped, tmp_path):
    from inspector.errors import InspectorError
    from trainer.config import TrainConfig
    from trainer.train import train

    for p in sorted((piped / "train" / "good").iterdir())[:6]:
        (tmp_path / p.name).symlink_to(p)
    with pytest.raises(InspectorError, match=r"val_fraction 0.9 leaves 1 of 6 good images"):
        train(tmp_path, TrainConfig(backbone="efficientnet_lite0", epochs=1, val_fraction=0.9), log=lambda m: None)
