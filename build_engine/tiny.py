"""A small synthetic model in the inspector's ONNX contract, built without torch.

Same I/O (uint8 `image` [N, 224, 224, 3] BGR -> float32 `score` [N], `anomaly_map` [N, 7, 7]), the
same metadata schema, and the same kind of head as the CSE model (L2 normalisation, cosine to a
centre, 1 - cos, mean over positions), on a three-convolution random feature extractor. For device
checks and fast tests of the build path; it detects nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inspector.modelmeta import META_KEY, ModelMeta, Preprocess, Threshold

OPSET = 18


def tiny_meta(model_id: str = "tiny-synthetic", data: str | None = None) -> ModelMeta:
    return ModelMeta(
        model_id=model_id, category="synthetic", head="cse", backbone="tiny-random-conv", weights_id="random seed",
        preprocess=Preprocess(), threshold=Threshold(value=0.5, method="max", param=1.0, n_images=0), map_h=7, map_w=7,
        training={"data": data} if data else {}, software={"inspector": "tiny"},
    )


def tiny_model(seed: int = 0, meta: ModelMeta | None = None, channels: tuple[int, int, int] = (16, 32, 64)) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    meta = meta or tiny_meta()
    inits = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv_weight(name: str, cout: int, cin: int, k: int) -> str:
        w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        return const(name, w)

    c1, c2, c3 = channels
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw_u8"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Cast", ["nchw_u8"], ["nchw"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Mul", ["nchw", const("scale", np.float32(1 / 255))], ["x01"], name="scale01"),
        helper.make_node("Sub", ["x01", const("mean", np.full((1, 3, 1, 1), 0.5, np.float32))], ["xc"], name="centre"),
        helper.make_node("Conv", ["xc", conv_weight("w1", c1, 3, 3), const("b1", np.zeros(c1, np.float32))], ["h1"],
                         strides=[4, 4], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", conv_weight("w2", c2, c1, 3), const("b2", np.zeros(c2, np.float32))], ["h2"],
                         strides=[2, 2], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", conv_weight("w3", c3, c2, 3), const("b3", np.zeros(c3, np.float32))], ["h3"],
                         strides=[2, 2], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Relu", ["h3"], ["r3"], name="relu3"),
        helper.make_node("AveragePool", ["r3"], ["emb"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),  # [N, c3, 7, 7]
        # head: L2 normalise over channels, cosine to one centre, 1 - cos, mean over positions
        helper.make_node("Mul", ["emb", "emb"], ["sq"], name="square"),
        helper.make_node("ReduceSum", ["sq", const("axis_c", np.array([1], np.int64))], ["ss"], keepdims=1, name="sumsq"),
        helper.make_node("Clip", ["ss", const("eps2", np.float32(1e-12))], ["ssc"], name="clamp"),
        helper.make_node("Sqrt", ["ssc"], ["norm"], name="sqrt"),
        helper.make_node("Reciprocal", ["norm"], ["inv"], name="rcp"),
        helper.make_node("Mul", ["emb", "inv"], ["unit"], name="normalise"),
        helper.make_node("Mul", ["unit", const("centre", _unit_centre(rng, c3))], ["prod"], name="times_centre"),
        helper.make_node("ReduceSum", ["prod", "axis_c"], ["cos"], keepdims=0, name="cosine"),
        helper.make_node("Sub", [const("one", np.float32(1.0)), "cos"], ["anomaly_map"], name="one_minus"),
        helper.make_node("ReduceMean", ["anomaly_map", const("axes_hw", np.array([1, 2], np.int64))], ["score"],
                         keepdims=0, name="mean_hw"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_inspector",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 224, 224, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 7, 7])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="surface-inspector-tiny")
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.checker.check_model(model, full_check=True)
    return model


def _unit_centre(rng: np.random.Generator, c: int) -> np.ndarray:
    # A centre near the typical embedding direction (all-positive after ReLU), so scores are ~0.1-0.3.
    v = np.abs(rng.normal(1.0, 0.3, (1, c, 7, 7))).astype(np.float32)
    return v / np.sqrt((v * v).sum(axis=1, keepdims=True))


def write_tiny(path: str | Path, seed: int = 0, data: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_model(seed, tiny_meta(data=data)), str(path))
    return path
