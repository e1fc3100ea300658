"""build-engine: the mixed-precision conversion and its accuracy on real images (onnxruntime, CPU),
the CLI's argument validation, the one-line message when TensorRT or a GPU is missing, and the real
build (plan, self-check, timing cache, raw engine) where TensorRT and a CUDA GPU exist (the
`tensorrt_gpu` fixture; elsewhere those tests skip with a reason naming what is missing)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from build_engine import fp16
from build_engine.builder import BuildOptions, build
from build_engine.cli import main
from build_engine.plan import BatchRange, read_plan
from build_engine.tiny import tiny_meta, tiny_model
from inspector.errors import ModelError

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
HEAD_OPS = {"ReduceSum", "Sqrt", "Reciprocal", "ReduceMean", "ReduceMin", "ArgMin", "Sub"}


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def real(model_path, piped):
    """The conftest's trained model, its FP16 conversion, and 32 real test images of its category."""
    model = fp16.load_model(model_path)
    meta = fp16.read_meta(model)
    paths, images = fp16.load_samples(piped, meta, limit=32)
    return model, fp16.convert_fp16(model), paths, images


@pytest.fixture(scope="session")
def real_accuracy(real):
    model, conv, paths, images = real
    acc = fp16.check_accuracy(model, conv.model, images, [p.name for p in paths])
    print(f"\n[fp16] {acc.line()} {json.dumps(acc.seconds)}")
    return acc


@pytest.fixture()
def tiny(tmp_path, piped):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_model(seed=1, meta=tiny_meta(data=str(piped))).SerializeToString())
    return path


# ---------------------------------------------------------------------------------------------
# The mixed-precision graph


def test_fp16_graph_keeps_io_metadata_and_fp32_scoring(real):
    model, conv, _, _ = real
    mixed = conv.model
    assert fp16._io_signature(mixed) == fp16._io_signature(model)  # uint8 image in, float32 score/map out
    meta, mixed_meta = fp16.read_meta(model), fp16.read_meta(mixed)
    assert mixed_meta.precision == "fp16" and dataclasses.replace(mixed_meta, precision="fp32") == meta
    types = fp16._types(mixed)
    by_name = {n.name: n for n in mixed.graph.node}
    convs = [n for n in mixed.graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == FLOAT16 and types[n.output[0]] == FLOAT16 for n in convs)
    head_ops = {by_name[n].op_type for n in conv.head}
    assert HEAD_OPS <= head_ops, head_ops  # L2 norm, cosine, 1 - cos, means, min, argmin
    for name in conv.head + conv.input_stage:
        node = by_name[name]
        floats = [t for t in list(node.input) + list(node.output) if types.get(t) in (FLOAT, FLOAT16)]
        assert all(types[t] == FLOAT for t in floats), (node.op_type, name, [(t, types[t]) for t in floats])
    for node in mixed.graph.node:  # every reduction anywhere runs in FP32
        if node.op_type.startswith("Reduce") or node.op_type in ("ArgMin", "ArgMax"):
            assert types[node.input[0]] == FLOAT, node.name
    prod = fp16._producers(mixed.graph)
    for node in mixed.graph.node:  # no FP32 -> FP16 -> FP32 round trip is left anywhere
        up = prod.get(node.input[0]) if node.input else None
        if fp16._is_cast(node, FLOAT) and fp16._is_cast(up, FLOAT16):
            assert types[up.input[0]] != FLOAT, node.name
    for out in ("score", "anomaly_map"):  # outputs come straight from FP32 nodes, not via a cast from FP16
        assert prod[out].op_type != "Cast", out
    assert 0.7 < len(conv.fp16_nodes) / (len(conv.fp16_nodes) + len(conv.fp32_nodes)) < 0.95


def test_fp16_conversion_adds_nothing_beyond_fp16_weights(real):
    """onnxruntime's CPU provider computes the FP16 nodes in FP32 from FP16 weights: the mixed graph
    must then equal the FP32 graph with those weights rounded to FP16, i.e. casts, head and I/O are right."""
    model, conv, _, images = real
    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    mixed_inits = {t.name: t.data_type for t in conv.model.graph.initializer}
    for t in rounded.graph.initializer:
        if mixed_inits.get(t.name) == FLOAT16 or mixed_inits.get(f"{t.name}__fp16") == FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16).astype(np.float32), t.name))
    sub = images[::4]
    want, _, _ = fp16.run_ort(rounded, sub)
    got, _, _ = fp16.run_ort(conv.model, sub)
    assert fp16.relative_deviation(want, got).max() < 3e-4


def test_fp16_accuracy_on_real_images_is_measured(real_accuracy):
    acc = real_accuracy
    assert acc.n_images == 32
    # A healthy mixed graph: FP16-level deviations, not a broken cast (which gives O(1)).
    assert 0 < acc.max_rel < 5e-2 and 0 < acc.max_rel_emulated < 5e-2
    assert acc.map_max_abs < 5e-2
    assert acc.ok == (max(acc.max_rel, acc.max_rel_emulated) <= 1e-3)


@pytest.mark.xfail(strict=True, reason=(
    "spec target not met: FP16 rounding of the frozen EfficientNet-Lite backbone's weights alone moves this "
    "model's scores ~1e-2 relative (measured, docs/tensorrt.md); the FP32 head and I/O add < 3e-4"))
def test_fp16_scores_within_1e_3_of_fp32_on_real_images(real_accuracy):
    assert real_accuracy.max_rel <= 1e-3 and real_accuracy.max_rel_emulated <= 1e-3


def test_accuracy_check_passes_a_model_that_tolerates_fp16(piped):
    model = tiny_model(seed=1)
    paths, images = fp16.load_samples(piped, fp16.read_meta(model), limit=16)
    acc = fp16.check_accuracy(model, fp16.convert_fp16(model).model, images)
    assert acc.ok and acc.max_rel < 1e-3 and acc.max_rel_emulated < 1e-3


def test_accuracy_check_catches_a_deviating_graph(piped):
    model = tiny_model(seed=1)
    paths, images = fp16.load_samples(piped, fp16.read_meta(model), limit=8)
    mixed = fp16.convert_fp16(model).model
    w = next(t for t in mixed.graph.initializer if t.name == "w3")
    a = numpy_helper.to_array(w).copy()
    a[: len(a) // 2] *= np.float16(1.05)  # a few channels 5% off: the embedding's direction changes
    w.CopyFrom(numpy_helper.from_array(a, "w3"))
    assert not fp16.check_accuracy(model, mixed, images).ok


def test_uint8_input_is_cast_before_any_other_op(real):
    """TensorRT's UINT8 tensors may only feed a Cast; the export transposes the uint8 image first."""
    model, _, _, images = real
    assert fp16._consumers(model.graph)["image"][0].op_type == "Transpose"
    ready = fp16.cast_inputs_first(model)
    users = fp16._consumers(ready.graph)["image"]
    assert [u.op_type for u in users] == ["Cast"]
    assert fp16._io_signature(ready) == fp16._io_signature(model)
    a, am, _ = fp16.run_ort(model, images[:4])
    b, bm, _ = fp16.run_ort(ready, images[:4])
    assert np.array_equal(a, b) and np.array_equal(am, bm)
    from build_engine.builder import engine_graph

    for precision in ("fp16", "fp32"):
        graph, _ = engine_graph(model, precision)
        assert [u.op_type for u in fp16._consumers(graph.graph)["image"]] == ["Cast"]


def test_fp16_refuses_an_fp16_or_int8_model():
    mixed = fp16.convert_fp16(tiny_model()).model
    with pytest.raises(ModelError, match="already fp16"):
        fp16.convert_fp16(mixed)
    int8 = tiny_model(meta=dataclasses.replace(tiny_meta(), precision="int8"))
    with pytest.raises(ModelError, match="already int8"):
        fp16.convert_fp16(int8)


def test_emulation_rounds_every_fp16_tensor():
    mixed = fp16.convert_fp16(tiny_model()).model
    emu = fp16.emulate_fp16(mixed)
    mixed_types, emu_types = fp16._types(mixed), fp16._types(emu)
    assert not any(t.data_type == FLOAT16 for t in emu.graph.initializer)
    prod = fp16._producers(emu.graph)
    low = [o for n in mixed.graph.node for o in n.output if mixed_types.get(o) == FLOAT16]
    assert low
    for name in low:  # each FP16 tensor: computed in FP32, rounded to FP16, back to FP32 under its own name
        up = prod[name]
        assert fp16._is_cast(up, FLOAT) and emu_types[name] == FLOAT, name
        down = prod[up.input[0]]
        assert emu_types[up.input[0]] == FLOAT16 and (fp16._is_cast(down, FLOAT16)), name
    assert all(t in (FLOAT, FLOAT16, onnx.TensorProto.UINT8, onnx.TensorProto.INT64, onnx.TensorProto.BOOL)
               for t in emu_types.values())
    assert {emu_types[o.name] for o in emu.graph.output} == {FLOAT}


# ---------------------------------------------------------------------------------------------
# The build (a GPU machine with TensorRT)


def test_build_fp16_writes_a_self_describing_plan(tensorrt_gpu, tmp_path, tiny):
    trt, _, gpu = tensorrt_gpu
    cache = tmp_path / "timing.cache"
    opts = BuildOptions(batch=BatchRange(1, 4, 16), workspace_mb=512, timing_cache=cache, max_samples=12)
    result = build(tiny, None, opts, log=print)
    assert result.output == tmp_path / "tiny.plan"
    plan = read_plan(result.output)
    assert plan.header.tensorrt == trt.__version__ and plan.header.gpu_name == gpu.name
    assert plan.header.compute_capability == gpu.compute_capability and plan.header.precision == "fp16"
    assert plan.header.batch == BatchRange(1, 4, 16) and plan.header.self_check["images"] == 12
    assert plan.header.self_check["max_rel"] <= 1e-3 and result.self_check["max_rel"] <= 1e-3
    assert plan.header.source["conversion"] and plan.header.engine_bytes == len(plan.engine) == result.engine_bytes
    assert plan.meta.model_id == tiny_meta().model_id and plan.meta.threshold == tiny_meta().threshold
    assert plan.meta.precision == "fp16"  # precision comes from the graph
    size = cache.stat().st_size
    assert size > 0
    build(tiny, tmp_path / "again.plan", opts, log=print)  # the cache is read back (and maybe extended)
    assert cache.stat().st_size >= size and read_plan(tmp_path / "again.plan").header.precision == "fp16"


def test_build_fp32_takes_the_graph_as_is(tensorrt_gpu, tmp_path, tiny):
    from inspector.backends import open_backend

    result = build(tiny, tmp_path / "t.plan", BuildOptions(precision="fp32", max_samples=4, profiles=2), log=lambda m: None)
    header = read_plan(result.output).header
    assert header.precision == "fp32" and header.source["conversion"] == "" and header.profiles == 2
    with open_backend(result.output, streams=2) as be:
        assert be.engine.num_optimization_profiles == 2 and len(be._contexts) == 2


def test_build_refuses_an_engine_that_fails_its_self_check(tensorrt_gpu, tmp_path, tiny):
    """A real FP32 engine differs from onnxruntime's CPU FP32 in the last bits (other kernels, other
    summation order): under a tolerance of 1e-12 its self-check fails for real."""
    with pytest.raises(ModelError, match="self-check failed.*no engine written"):
        build(tiny, tmp_path / "t.plan", BuildOptions(precision="fp32", max_samples=8, tolerance=1e-12), log=lambda m: None)
    assert not (tmp_path / "t.plan").exists()


def test_build_refuses_fp16_of_the_real_model_early(tensorrt_gpu, tmp_path, model_path, piped):
    """With the measured ~1e-2 deviation, the FP16 build stops before TensorRT is even called."""
    with pytest.raises(ModelError, match="already deviates .* over the tolerance 1e-03; no engine written"):
        build(model_path, tmp_path / "m.plan", BuildOptions(samples=piped, max_samples=8), log=lambda m: None)
    assert not (tmp_path / "m.plan").exists()


def test_raw_engine_extract_and_info(tensorrt_gpu, tmp_path, tiny, capsys):
    trt, _, gpu = tensorrt_gpu
    code, out, err = run([str(tiny), "--raw", "--precision", "fp32", "--max-samples", "4"], capsys)
    assert code == 0, err
    raw = (tmp_path / "tiny.engine").read_bytes()
    assert "wrote" in out
    assert trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(raw) is not None  # a bare TensorRT engine
    code, out, err = run([str(tiny), "--precision", "fp32", "--max-samples", "4", "-o", str(tmp_path / "p.plan")], capsys)
    assert code == 0, err
    code, out, err = run(["extract", str(tmp_path / "p.plan"), "-o", str(tmp_path / "x.engine")], capsys)
    assert code == 0, err
    assert (tmp_path / "x.engine").read_bytes() == read_plan(tmp_path / "p.plan").engine
    code, out, err = run(["info", str(tmp_path / "p.plan")], capsys)
    assert code == 0 and f"TensorRT {trt.__version__}, {gpu.name} (compute capability {gpu.compute_capability})" in out
    code, out, err = run(["info", "--json", str(tmp_path / "p.plan")], capsys)
    assert json.loads(out)["model"]["model_id"] == tiny_meta().model_id
    code, out, err = run(["extract", str(tmp_path / "tiny.engine")], capsys)
    assert code == 2 and "not an inspector plan" in err


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("args, words", [
    (["--batch", "8:1:32"], "--batch '8:1:32': must satisfy 1 <= MIN <= OPT <= MAX"),
    (["--batch", "1:8"], "--batch '1:8': not MIN:OPT:MAX"),
    (["--batch", "0:1:1"], "--batch '0:1:1'"),
    (["--precision", "int8"], "--precision: 'int8' is not one of fp16, fp32"),
    (["--workspace", "0"], "--workspace: 0 MB"),
    (["--tolerance", "0"], "--tolerance"),
    (["--profiles", "0"], "--profiles"),
    (["--samples", "/nonexistent/folder"], "--samples: /nonexistent/folder: no such folder"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, tiny, capsys, args, words):
    code, out, err = run([str(tiny), *args], capsys)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_missing_model_file(tmp_path, capsys):
    code, out, err = run([str(tmp_path / "nope.onnx")], capsys)
    assert code == 2 and f"{tmp_path / 'nope.onnx'}: model file not found" in err


def test_not_an_onnx_file(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00garbage" * 10)
    code, out, err = run([str(bad), "--samples", str(tmp_path)], capsys)
    assert code == 2 and "not a readable ONNX file" in err


def test_non_numeric_workspace_is_a_usage_error(tiny, capsys):
    code, out, err = run([str(tiny), "--workspace", "lots"], capsys)
    assert code == 2 and "workspace" in err


def test_without_tensorrt_or_gpu_one_message_names_what_is_missing(tmp_path, tiny, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    code, out, err = run([str(tiny), "-o", str(tmp_path / "t.plan")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: cannot build a TensorRT engine on this machine: TensorRT is not installed")
    assert "GPU" in err and not (tmp_path / "t.plan").exists()


def test_no_gpu_but_tensorrt_names_the_gpu(tensorrt_gpu, tmp_path, tiny):
    """TensorRT installed and the GPU really hidden from CUDA (CUDA_VISIBLE_DEVICES='')."""
    code = ("from build_engine.builder import BuildOptions, build\n"
            "from inspector.errors import InspectorError\n"
            f"try:\n    build({str(tiny)!r}, {str(tmp_path / 't.plan')!r}, BuildOptions(max_samples=2), log=lambda m: None)\n"
            "except InspectorError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("cannot build a TensorRT engine on this machine: no usable CUDA GPU ("), out.stdout + out.stderr
    assert "cudaGetDeviceCount" in out.stdout and "TensorRT is not installed" not in out.stdout
    assert not (tmp_path / "t.plan").exists()


def test_samples_are_required_when_the_training_data_is_absent(tensorrt_gpu, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_model(meta=tiny_meta(data="/not/here")).SerializeToString())
    code, out, err = run([str(path)], capsys)
    assert code == 2 and "--samples DIR is needed" in err


def test_fp16_command_writes_the_graph_and_reports(tmp_path, tiny, capsys):
    code, out, err = run(["fp16", str(tiny), "--max-samples", "8", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["images"] == 8 and report["max_rel_emulated"] < 1e-3
    mixed = onnx.load(str(tmp_path / "tiny.fp16.onnx"))
    assert any(t.data_type == FLOAT16 for t in mixed.graph.initializer)
