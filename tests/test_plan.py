"""The .plan container: packing, unpacking, clear errors for foreign or damaged files, compatibility."""

from __future__ import annotations

import json
import struct

import pytest

from build_engine.plan import (
    MAGIC, BatchRange, PlanHeader, check_compatible, pack, read_plan, unpack, write_atomic,
)
from build_engine.tiny import tiny_meta
from inspector.errors import ModelError

ENGINE = bytes(range(256)) * 40 + b"tail"


def packed(**kw) -> bytes:
    args = dict(tensorrt="10.13.3.9", gpu_name="NVIDIA H200", compute_capability="9.0", precision="fp16",
                batch=BatchRange(1, 8, 32), self_check={"max_rel": 2e-4, "images": 32}, source={"onnx": "x.onnx"})
    args.update(kw)
    return pack(tiny_meta("m-1"), ENGINE, **args)


def test_roundtrip_keeps_engine_metadata_and_build_facts(tmp_path):
    path = write_atomic(tmp_path / "m.plan", packed())
    plan = read_plan(path)
    assert plan.engine == ENGINE
    assert plan.meta == tiny_meta("m-1")  # preprocessing, threshold, ids: all of it
    h = plan.header
    assert (h.tensorrt, h.gpu_name, h.compute_capability, h.precision) == ("10.13.3.9", "NVIDIA H200", "9.0", "fp16")
    assert h.batch == BatchRange(1, 8, 32) and h.profiles == 1
    assert h.self_check["max_rel"] == 2e-4 and h.source["onnx"] == "x.onnx" and h.built
    assert h.engine_bytes == len(ENGINE)
    assert not list(tmp_path.glob(".m.plan.*"))  # no temporary file left behind


def test_layout_is_magic_version_length_json_engine():
    data = packed()
    magic, version, reserved, hlen = struct.unpack_from("<8sHHI", data)
    assert (magic, version, reserved) == (MAGIC, 1, 0)
    header = json.loads(data[16 : 16 + hlen])
    assert header["format"] == "inspector.plan/1" and header["model"]["model_id"] == "m-1"
    assert data[16 + hlen :] == ENGINE


@pytest.mark.parametrize("data, words", [
    (b"", "only 0 bytes"),
    (b"\x08\x01\x12\x04onnx" * 10, "not an inspector plan"),  # an ONNX protobuf
    (b"ftrt" + bytes(200), "raw TensorRT engine"),  # a bare engine
])
def test_foreign_files_are_named(data, words):
    with pytest.raises(ModelError, match=words):
        unpack(data, "x.plan")


def test_truncated_and_corrupt_files_are_named():
    data = packed()
    hlen = struct.unpack_from("<I", data, 12)[0]
    with pytest.raises(ModelError, match="truncated"):
        unpack(data[:-10])
    with pytest.raises(ModelError, match="truncated"):
        unpack(data[: 16 + hlen // 2])
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF
    with pytest.raises(ModelError, match="checksum"):
        unpack(bytes(flipped))
    bad_json = bytearray(data)
    bad_json[16] = ord("!")
    with pytest.raises(ModelError, match="corrupt plan header"):
        unpack(bytes(bad_json))


def _rewrite_header(data: bytes, edit) -> bytes:
    hlen = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(data[16 : 16 + hlen])
    edit(header)
    text = json.dumps(header).encode()
    return data[:12] + struct.pack("<I", len(text)) + text + data[16 + hlen :]


def test_header_problems_are_named():
    data = packed()
    with pytest.raises(ModelError, match="newer"):
        unpack(data[:8] + struct.pack("<H", 7) + data[10:])
    with pytest.raises(ModelError, match="format"):
        unpack(_rewrite_header(data, lambda h: h.update(format="other/9")))
    with pytest.raises(ModelError, match="incomplete plan header"):
        unpack(_rewrite_header(data, lambda h: h.pop("gpu")))
    with pytest.raises(ModelError, match="schema"):
        unpack(_rewrite_header(data, lambda h: h["model"].update(schema="inspector.model/0")))


def header(tensorrt="10.13.3.9", name="NVIDIA H200", cc="9.0") -> PlanHeader:
    return PlanHeader(tensorrt, name, cc, "fp16", BatchRange(), 1, "0" * 64)


def test_compatible_plan_passes():
    check_compatible(header(), "10.13.3.9", "NVIDIA H200", "9.0")
    check_compatible(header(tensorrt="10.13.3.9"), "10.13.3.9.post1", "NVIDIA H200", "9.0")  # a wheel's tag is no ABI


@pytest.mark.parametrize("runtime, words", [
    (("10.14.1.48", "NVIDIA H200", "9.0"), r"TensorRT 10\.13\.3\.9 built it, this machine runs TensorRT 10\.14\.1\.48"),
    (("11.0.0.1", "NVIDIA H200", "9.0"), "TensorRT 11.0.0.1"),
    (("10.13.3.9", "NVIDIA L4", "8.9"), r"compute capability 9\.0 \(NVIDIA H200\), this GPU is 8\.9 \(NVIDIA L4\)"),
    (("10.13.3.9", "NVIDIA H100 80GB HBM3", "9.0"), "built for NVIDIA H200, this GPU is NVIDIA H100"),
])
def test_mismatched_plan_is_refused_naming_both_sides(runtime, words):
    with pytest.raises(ModelError, match=words) as exc:
        check_compatible(header(), *runtime, source="carpet.plan")
    assert "carpet.plan" in str(exc.value) and "rebuild" in str(exc.value)


def test_both_mismatches_are_reported_together():
    with pytest.raises(ModelError) as exc:
        check_compatible(header(), "11.0.0.1", "NVIDIA L4", "8.9")
    assert "TensorRT 11.0.0.1" in str(exc.value) and "8.9" in str(exc.value)


@pytest.mark.parametrize("text, want", [("1:8:32", (1, 8, 32)), ("4", (4, 4, 4)), (" 2:2:64 ", (2, 2, 64))])
def test_batch_parse(text, want):
    b = BatchRange.parse(text)
    assert (b.min, b.opt, b.max) == want


@pytest.mark.parametrize("text, words", [
    ("8:1:32", "MIN <= OPT <= MAX"), ("0:1:8", "1 <= MIN"), ("1:8:5000", "4096"), ("1:8", "not MIN:OPT:MAX"),
    ("a:b:c", "not MIN:OPT:MAX"), ("1:-2:8", "not MIN:OPT:MAX"), ("", "not MIN:OPT:MAX"),
])
def test_bad_batch_is_named(text, words):
    with pytest.raises(ModelError, match=words) as exc:
        BatchRange.parse(text)
    assert str(exc.value).startswith("--batch")


def test_pack_validates():
    with pytest.raises(ModelError, match="precision"):
        packed(precision="int4")
    with pytest.raises(ModelError, match="empty"):
        pack(tiny_meta(), b"", tensorrt="10", gpu_name="g", compute_capability="9.0", precision="fp16", batch=BatchRange())
