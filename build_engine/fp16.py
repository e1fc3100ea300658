"""Mixed-precision ONNX for a strongly typed TensorRT build, and its accuracy check on the CPU.

TensorRT 11 has no FP16 builder flag: a network runs in FP16 only where the graph says so. This
module writes those types into the graph with onnxconverter-common's float16 converter:

- FP16: the feature extractor (backbone, fusion, embedder: convolutions, batch norms, pooling,
  activations), where the FLOPs are.
- FP32: the input stage (uint8 -> float, channel flip, normalisation, up to the first convolution),
  the scoring head (L2 normalisation, cosine to the centres, 1 - cos, the means, min and argmin),
  and every reduction or normalisation primitive anywhere in the graph (FP32_OPS). 1 - cos of two
  near-parallel unit vectors is a difference of nearly equal numbers, the squared-norm sums can
  exceed FP16's range, and FP16 rounding of a ~0.1 score alone costs ~5e-4 relative.
- I/O types unchanged: `image` uint8 [N, H, W, 3] in, `score` / `anomaly_map` float32 out.

The converter is used through its op block list and node block list; three of its rough edges are
handled around it (see _repair): it round-trips FP32 values through FP16 between two blocked nodes,
it turns blocked graph outputs into FP16 despite keep_io_types, and it leaves float initializers
shared by a blocked and an unblocked node in FP32 (a type error). The result is re-checked: valid
ONNX, same I/O signature, every tensor FLOAT or FLOAT16 where expected.

Accuracy on the CPU: onnxruntime runs the mixed graph, but its CPU provider has no FP16 convolution
kernels on x86 and computes those nodes in FP32 (weights rounded to FP16, activations not), so it
understates what a GPU does. emulate_fp16() therefore also builds an all-FP32 graph that rounds
every tensor the mixed graph holds in FP16 (Cast to FP16 and back after each FP16 node), which is
what TensorRT's FP16 kernels store between layers. check_accuracy() reports both and passes only if
both stay within the tolerance.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inspector.errors import InspectorError, ModelError
from inspector.modelmeta import META_KEY, ModelMeta

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
TOLERANCE = 1e-3  # max relative score deviation from the FP32 graph

# Kept in FP32 wherever they occur: reductions, normalisations and the ops of an L2 norm / cosine.
FP32_OPS = frozenset({
    "ReduceSum", "ReduceMean", "ReduceMin", "ReduceMax", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMin", "ArgMax",
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "LpNormalization", "LpPool",
    "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "Pow", "CumSum", "TopK",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization",
})

# The feature extractor's ops: the FP32 head/input regions stop where these begin.
FEATURE_OPS = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "AveragePool", "MaxPool", "Resize", "Upsample",
})


@dataclass
class Conversion:
    model: onnx.ModelProto
    fp32_nodes: list[str]  # original nodes kept in FP32 (by name)
    fp16_nodes: list[str]  # original nodes converted to FP16
    head: list[str]  # the scoring-head part of fp32_nodes
    input_stage: list[str]
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"mixed precision: {len(self.fp16_nodes)} nodes FP16, {len(self.fp32_nodes)} FP32 "
                f"(input stage {len(self.input_stage)}, scoring head {len(self.head)}, "
                f"other reductions/normalisations {len(self.fp32_nodes) - len(self.head) - len(self.input_stage)})")


@dataclass
class Accuracy:
    n_images: int
    max_rel: float  # onnxruntime running the mixed graph
    max_rel_emulated: float  # FP16 storage emulated on the CPU
    mean_rel: float
    map_max_abs: float  # anomaly map, max abs deviation (emulated)
    worst_image: str
    tolerance: float = TOLERANCE
    seconds: dict[str, float] = field(default_factory=dict)  # ms per image per graph

    @property
    def ok(self) -> bool:
        return max(self.max_rel, self.max_rel_emulated) <= self.tolerance

    def line(self) -> str:
        return (f"FP16 vs FP32 scores on {self.n_images} images: max relative deviation "
                f"{self.max_rel:.2e} (onnxruntime CPU), {self.max_rel_emulated:.2e} (FP16 storage emulated), "
                f"tolerance {self.tolerance:.0e}; anomaly map max abs {self.map_max_abs:.2e}; worst {self.worst_image}")


# ---------------------------------------------------------------------------------------------
# Graph helpers


def read_meta(model: onnx.ModelProto, source: str = "model") -> ModelMeta:
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ModelError(f"{source}: not an inspector model (no {META_KEY!r} metadata); export it with `inspector train`")
    return ModelMeta.from_json(props[META_KEY], source)


def load_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None


def _io_signature(model: onnx.ModelProto) -> list[tuple]:
    def sig(v):
        t = v.type.tensor_type
        return (v.name, t.elem_type, tuple(d.dim_param or d.dim_value for d in t.shape.dim))

    return [("in",) + sig(v) for v in model.graph.input] + [("out",) + sig(v) for v in model.graph.output]


def _name_nodes(graph: onnx.GraphProto) -> None:
    """The block list works by node name: give every node a unique one."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output if o}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, by ONNX type inference on a copy without stale value_info."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=False)
    types = {t.name: t.data_type for t in m.graph.initializer}
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    return types


def fp32_region(graph: onnx.GraphProto) -> tuple[set[str], set[str], set[str]]:
    """(head, input_stage, other) node names to keep in FP32.

    head: everything from the graph outputs back to the last feature-extractor op (the scoring
    head: L2 norm, cosine, means, min/argmin, map selection). input_stage: everything from the
    graph inputs forward to the first feature-extractor op. other: FP32_OPS nodes elsewhere and
    the graph's own Cast nodes (the converter does not retarget a Cast's `to`).
    """
    prod, cons = _producers(graph), _consumers(graph)
    head: set[str] = set()
    stack = [prod[o.name] for o in graph.output if o.name in prod]
    while stack:
        n = stack.pop()
        if n.name in head or n.op_type in FEATURE_OPS:
            continue
        head.add(n.name)
        stack.extend(prod[i] for i in n.input if i in prod)
    inputs: set[str] = set()
    stack = [c for v in graph.input for c in cons.get(v.name, [])]
    while stack:
        n = stack.pop()
        if n.name in inputs or n.op_type in FEATURE_OPS:
            continue
        inputs.add(n.name)
        stack.extend(c for o in n.output for c in cons.get(o, []))
    other = {n.name for n in graph.node if n.op_type in FP32_OPS or n.op_type == "Cast"} - head - inputs
    return head, inputs, other


def _split_shared_constants(graph: onnx.GraphProto, fp32: set[str]) -> None:
    """A float initializer (or Constant) read by both an FP32 and an FP16 node gets a private copy
    for the FP16 readers; Constants read only by FP32 nodes join the FP32 set."""
    cons = _consumers(graph)
    inits = {t.name: t for t in graph.initializer}
    for name, init in list(inits.items()):
        if init.data_type != FLOAT:
            continue
        readers = cons.get(name, [])
        low = [n for n in readers if n.name not in fp32]
        if low and len(low) < len(readers):
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = f"{name}__fp16"
            graph.initializer.append(copy)
            for n in low:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = copy.name
    for idx, node in enumerate(list(graph.node)):
        if node.op_type != "Constant" or not node.output:
            continue
        readers = cons.get(node.output[0], [])
        high = [n for n in readers if n.name in fp32]
        low = [n for n in readers if n.name not in fp32]
        if high and not low:
            fp32.add(node.name)
        elif high and low:
            dup = onnx.NodeProto()
            dup.CopyFrom(node)
            dup.name, dup.output[0] = f"{node.name}__fp32", f"{node.output[0]}__fp32"
            graph.node.insert(idx, dup)
            fp32.add(dup.name)
            for n in high:
                for k, i in enumerate(n.input):
                    if i == node.output[0]:
                        n.input[k] = dup.output[0]


def _rewire(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new


def _drop_dead(graph: onnx.GraphProto) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _is_cast(node: onnx.NodeProto | None, to: int) -> bool:
    return node is not None and node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def _repair(model: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Undo the converter's FP32 -> FP16 -> FP32 round trips and restore the original output types."""
    g = model.graph
    types = _types(model)
    # 1. Cast(FP32 -> FP16) -> Cast(FP16 -> FP32): read the FP32 value directly.
    changed = True
    while changed:
        changed = False
        prod = _producers(g)
        outputs = {o.name for o in g.output}
        for n in list(g.node):
            if not _is_cast(n, FLOAT) or n.output[0] in outputs:
                continue
            up = prod.get(n.input[0])
            if _is_cast(up, FLOAT16) and types.get(up.input[0]) == FLOAT:
                _rewire(g, n.output[0], up.input[0])
                g.node.remove(n)
                changed = True
            elif types.get(n.input[0]) == FLOAT:  # a Cast FP32 -> FP32
                _rewire(g, n.output[0], n.input[0])
                g.node.remove(n)
                changed = True
        _drop_dead(g)
    # 2. Graph outputs back to their original types.
    want = {v.name: v.type.tensor_type.elem_type for v in original.graph.output}
    prod = _producers(g)
    for out in g.output:
        if want.get(out.name) != FLOAT or out.type.tensor_type.elem_type == FLOAT:
            continue
        up = prod.get(out.name)
        src = up.input[0] if _is_cast(up, FLOAT16) else None
        if src is not None and types.get(src) == FLOAT and src in prod:
            # The FP32 value exists: let its producer write the output directly.
            g.node.remove(up)
            maker = prod[src]
            for k, o in enumerate(maker.output):
                if o == src:
                    maker.output[k] = out.name
            _rewire(g, src, out.name)
        else:
            # Produced in FP16: rename it and cast the output to FP32.
            low = f"{out.name}__fp16"
            for n in g.node:
                for k, o in enumerate(n.output):
                    if o == out.name:
                        n.output[k] = low
            _rewire(g, out.name, low)
            g.node.append(helper.make_node("Cast", [low], [out.name], name=f"{out.name}__to_fp32", to=FLOAT))
        out.type.tensor_type.elem_type = FLOAT
    _drop_dead(g)
    _toposort(g)
    del g.value_info[:]


def _toposort(graph: onnx.GraphProto) -> None:
    have = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    order: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                order.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ModelError(f"FP16 conversion left a graph that cannot be ordered (node {rest[0].name} lacks inputs)")
        pending = rest
    del graph.node[:]
    graph.node.extend(order)


LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Slice", "Squeeze", "Unsqueeze", "Flatten", "Identity"})


def cast_inputs_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """TensorRT lets a UINT8 tensor feed only a Cast: where the graph moves the uint8 `image`
    through layout ops (the exported model transposes NHWC -> NCHW before casting) and only then
    casts it to float, cast it right at the input instead. Exact: layout ops on small integers
    held as floats give the same numbers. Other graphs are returned unchanged (a copy)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    cons = _consumers(g)
    changed = False
    for inp in g.input:
        if inp.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        users = cons.get(inp.name, [])
        if not users or all(_is_cast(u, FLOAT) for u in users):
            continue
        casts, ok, stack, seen = [], True, list(users), set()
        while stack and ok:  # every path must run through layout ops into a Cast to float
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if _is_cast(n, FLOAT):
                casts.append(n)
            elif n.op_type in LAYOUT_OPS:
                stack.extend(c for c in cons.get(n.output[0], []))
                ok = len(n.output) == 1 and n.output[0] not in {o.name for o in g.output}
            else:
                ok = False
        if not ok or not casts:
            continue
        as_float = f"{inp.name}__float"
        for u in users:
            for k, i in enumerate(u.input):
                if i == inp.name:
                    u.input[k] = as_float
        g.node.insert(0, helper.make_node("Cast", [inp.name], [as_float], name=f"{inp.name}__to_float", to=FLOAT))
        for c in casts:  # now FLOAT -> FLOAT: bypass them
            _rewire(g, c.output[0], c.input[0])
            g.node.remove(c)
        changed = True
    if changed:
        del g.value_info[:]
        _toposort(g)
        onnx.checker.check_model(m, full_check=True)
    return m


# ---------------------------------------------------------------------------------------------
# Conversion


def convert_fp16(model: onnx.ModelProto, extra_fp32_nodes: Iterable[str] = (), source: str = "model") -> Conversion:
    """FP32 inspector ONNX -> mixed-precision ONNX (see the module docstring). The input is not modified."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise InspectorError("the FP16 conversion needs onnxconverter-common: pip install '.[engine]'") from None
    t0 = time.perf_counter()
    src = onnx.ModelProto()
    src.CopyFrom(model)
    g = src.graph
    meta = read_meta(src, source)
    if getattr(meta, "precision", "fp32") != "fp32":
        raise ModelError(f"{source}: the graph is already {meta.precision}; the FP16 conversion takes the FP32 model")
    if any(v.type.tensor_type.elem_type == FLOAT16 for v in list(g.input) + list(g.output)) or any(
        t.data_type == FLOAT16 for t in g.initializer
    ):
        raise ModelError(f"{source}: already holds FP16 tensors; give build-engine the FP32 model from `inspector train`")
    _name_nodes(g)
    head, inputs, other = fp32_region(g)
    ops = set(float16.DEFAULT_OP_BLOCK_LIST) | FP32_OPS
    by_op = {n.name for n in g.node if n.op_type in ops}
    fp32 = head | inputs | other | by_op | set(extra_fp32_nodes)
    original = [n.name for n in g.node]
    _split_shared_constants(g, fp32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns once per weight clamped to its FP16 range
        # min_positive_val: FP16's smallest subnormal (weights below flush to it, as the GPU would).
        out = float16.convert_float_to_float16(
            src, min_positive_val=2.0**-24, max_finite_val=65504.0, keep_io_types=True,
            op_block_list=sorted(ops), node_block_list=sorted(fp32),
        )
    _repair(out, model)
    if hasattr(meta, "precision"):  # the metadata says what the graph computes in
        for p in out.metadata_props:
            if p.key == META_KEY:
                p.value = replace(meta, precision="fp16").to_json()
    validate_mixed(out, model, source)
    return Conversion(out, [n for n in original if n in fp32], [n for n in original if n not in fp32],
                      sorted(head), sorted(inputs), time.perf_counter() - t0)


def validate_mixed(mixed: onnx.ModelProto, original: onnx.ModelProto, source: str = "model") -> None:
    """Valid ONNX, the original I/O signature and metadata, and FP16 actually present."""
    try:
        onnx.checker.check_model(mixed, full_check=True)
    except Exception as exc:
        raise ModelError(f"{source}: FP16 conversion produced an invalid graph ({str(exc).splitlines()[0][:200]})") from None
    if _io_signature(mixed) != _io_signature(original):
        raise ModelError(f"{source}: FP16 conversion changed the I/O signature: {_io_signature(mixed)} vs {_io_signature(original)}")
    def meta_of(m):
        meta = read_meta(m, source)
        return replace(meta, precision="fp32") if hasattr(meta, "precision") else meta

    if meta_of(mixed) != meta_of(original):
        raise ModelError(f"{source}: FP16 conversion lost the model metadata")
    types = _types(mixed)
    if not any(t == FLOAT16 for t in types.values()):
        raise ModelError(f"{source}: FP16 conversion left no FP16 tensor")


def convert_file(src: str | Path, dst: str | Path) -> Conversion:
    model = load_model(src)
    read_meta(model, str(src))
    conv = convert_fp16(model, source=str(src))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(conv.model, str(dst))
    return conv


# ---------------------------------------------------------------------------------------------
# CPU accuracy check


def emulate_fp16(mixed: onnx.ModelProto) -> onnx.ModelProto:
    """An all-FP32 graph computing what the mixed graph computes with FP16 storage: FP16 weights
    (exact values in FP32), and every tensor the mixed graph holds in FP16 rounded to FP16 right
    after the node that makes it (Cast to FP16 and back, which onnxruntime keeps)."""
    m = onnx.ModelProto()
    m.CopyFrom(mixed)
    g = m.graph
    types = _types(mixed)
    for t in g.initializer:
        if t.data_type == FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    new_nodes: list[onnx.NodeProto] = []
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT16:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
        new_nodes.append(n)
        for k, o in enumerate(n.output):
            if types.get(o) != FLOAT16:
                continue
            if _is_cast(n, FLOAT16):  # already rounds: keep it, add the way back
                n.output[k] = f"{o}__emu_f16"
                new_nodes.append(helper.make_node("Cast", [f"{o}__emu_f16"], [o], name=f"{o}__emu_up", to=FLOAT))
            else:
                raw = f"{o}__emu_f32"
                n.output[k] = raw
                new_nodes.append(helper.make_node("Cast", [raw], [f"{o}__emu_f16"], name=f"{o}__emu_down", to=FLOAT16))
                new_nodes.append(helper.make_node("Cast", [f"{o}__emu_f16"], [o], name=f"{o}__emu_up", to=FLOAT))
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    left = [name for name, t in _types(m).items() if t == FLOAT16 and not name.endswith("__emu_f16")]
    if left:
        raise ModelError(f"FP16 emulation: tensors still FP16 after rewriting: {left[:5]}")
    return m


def _session(model: onnx.ModelProto | str | Path, threads: int = 0):
    import os

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run_ort(model, images: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray, float]:
    """(scores, maps, ms per image) of an ONNX model on the CPU."""
    sess = _session(model)
    scores, maps = [], []
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        s, a = sess.run(["score", "anomaly_map"], {"image": images[i : i + batch]})
        scores.append(s)
        maps.append(a)
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(images))
    return np.concatenate(scores).astype(np.float32), np.concatenate(maps).astype(np.float32), ms


def relative_deviation(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    return np.abs(got64 - ref64) / np.maximum(np.abs(ref64), 1e-6)


def check_accuracy(fp32: onnx.ModelProto | str | Path, mixed: onnx.ModelProto, images: np.ndarray,
                   names: Sequence[str] | None = None, tolerance: float = TOLERANCE) -> Accuracy:
    """Scores of the mixed graph (as onnxruntime runs it, and with FP16 storage emulated) against
    the FP32 graph on the same images."""
    if len(images) == 0:
        raise InspectorError("accuracy check: no sample images")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    ref, ref_map, ms32 = run_ort(fp32, images)
    got, _, ms16 = run_ort(mixed, images)
    emu, emu_map, ms_emu = run_ort(emulate_fp16(mixed), images)
    rel, rel_emu = relative_deviation(ref, got), relative_deviation(ref, emu)
    worst = int(np.argmax(np.maximum(rel, rel_emu)))
    return Accuracy(
        n_images=len(images), max_rel=float(rel.max()), max_rel_emulated=float(rel_emu.max()),
        mean_rel=float(rel_emu.mean()), map_max_abs=float(np.abs(emu_map - ref_map).max()),
        worst_image=names[worst], tolerance=tolerance,
        seconds={"fp32_ms_per_image": ms32, "fp16_ms_per_image": ms16, "emulated_ms_per_image": ms_emu},
    )


def load_samples(folder: str | Path, meta: ModelMeta, limit: int = 32) -> tuple[list[Path], np.ndarray]:
    """Up to `limit` real images for a self-check, preprocessed as the model's metadata says.

    An MVTec category folder gives its test images (good and defective, spread evenly over the
    sorted list); a plain folder gives its images.
    """
    from inspector.dataset import list_images
    from inspector.images import read_image
    from inspector.preprocess import prepare

    folder = Path(folder)
    if not folder.is_dir():
        raise InspectorError(f"{folder}: sample folder not found")
    test = folder / "test"
    if test.is_dir():
        paths = sorted(p for d in sorted(test.iterdir()) if d.is_dir() for p in list_images(d))
    else:
        paths = list_images(folder)
        if not paths and (folder / "train" / "good").is_dir():
            paths = list_images(folder / "train" / "good")
    if not paths:
        raise InspectorError(f"{folder}: no images for the self-check (expected {folder}/test/*/*.png or images directly in it)")
    if len(paths) > limit:
        idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
        paths = [paths[i] for i in sorted(set(idx))]
    images = np.stack([prepare(read_image(p), meta.preprocess) for p in paths])
    return paths, images
