"""benchmarks/device_check.py: its JSON report where TensorRT is missing (it says what is missing), and
its whole flow for real where TensorRT and a CUDA GPU exist (elsewhere that test skips, naming what is missing)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = {"batch1_p50_ms", "batch1_p99_ms", "batch8_fps", "batch32_fps", "max_deviation"}


def load():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "benchmarks" / "device_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_prints_one_json_line_naming_what_is_missing(tmp_path):
    try:
        import tensorrt  # noqa: F401
        import pytest

        pytest.skip("TensorRT is installed here: the real check runs on the device")
    except ImportError:
        pass
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), "--frames", "4", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout + out.stderr
    report = json.loads(lines[0])
    assert any(m.startswith("TensorRT:") for m in report["missing"]) and not KEYS & set(report)


def test_full_flow_on_the_gpu(tensorrt_gpu, monkeypatch, tmp_path, capsys, piped):
    trt, _, gpu = tensorrt_gpu
    mod = load()
    monkeypatch.setattr(sys, "argv", ["device_check.py", "--frames", "40", "--out", str(tmp_path), "--samples", str(piped)])
    assert mod.main() == 0
    report = json.loads(capsys.readouterr().out.strip())
    assert report["ran"] == ["cuda_copies", "build_fp16", "build_fp32", "backend"], report
    assert KEYS <= set(report) and report["errors"] == [] and report["missing"] == []
    assert report["tensorrt"] == trt.__version__ and report["gpu"]["name"] == gpu.name
    assert report["cuda_copies"]["batch32_roundtrip_ok"] is True
    assert report["precision_timed"] == "fp16" and report["max_deviation"] <= 1e-3  # the tiny model tolerates FP16
    assert report["backend_max_rel_dev"] <= 1e-3 and report["frames"] == 40
    assert (tmp_path / "model.fp16.plan").is_file()
