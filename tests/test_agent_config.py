"""RunConfig: YAML < flags, and every bad key or value is a one-line error naming it (also through the CLI)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentkit import INSPECTOR, REPO, agent_model
from inspector.agent.config import RunConfig, resolve_run
from inspector.errors import ConfigError

BASE = "folder: /data/in\nmodel: m.onnx\n"


def write(tmp_path, text: str):
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, match", [
    (BASE + "batchsize: 4\n", r"agent.yaml: unknown key 'batchsize'"),
    (BASE + "batch: four\n", r"agent.yaml: batch: expected int, got 'four'"),
    (BASE + "batch: 0\n", r"agent.yaml: batch: must be in \[1, 1024\]"),
    (BASE + "station: line/3\n", r"station: 'line/3': letters, digits"),
    (BASE + "publish: localhost:5556\n", r"publish: 'localhost:5556' is not a ZeroMQ endpoint"),
    (BASE + "roi: [0, 0, 100]\n", r"roi: expected 4 values, got 3"),
    (BASE + "tile: [64, 64]\ntile_stride: [80, 32]\n", r"tile_stride: \[80, 32\] must not exceed tile"),
    (BASE + "tile_stride: [8, 8]\n", r"tile_stride: needs tile"),
    (BASE + "video: a.avi\n", r"source: give exactly one of camera, video or folder \(got video, folder\)"),
    ("model: m.onnx\n", r"source: give exactly one of camera, video or folder$"),
    ("folder: x\n", r"model: give exactly one of engine \(.plan\) or model \(.onnx\)"),
    ("folder: x\nengine: m.onnx\n", r"engine: m.onnx: expected a TensorRT .plan"),
    ("folder: x\nmodel: m.plan\n", r"model: m.plan: a TensorRT plan goes in engine:"),
    (BASE + "backend: tensorrt\n", r"backend: tensorrt runs .plan engines"),
    (BASE + "backend: openvino\n", r"backend: 'openvino' is not one of auto, onnxruntime, tensorrt"),
    (BASE + "watch: yes\nfast: true\n", r"fast: only applies to a video source"),
    ("video: a.avi\nmodel: m.onnx\nwatch: true\n", r"watch: only applies to a folder source"),
    (BASE + "infer_threads: 3\n", r"infer_threads: must be in \[1, in_flight=2\]"),
    (BASE + "threshold: -1\n", r"threshold: must be > 0"),
    (BASE + "log_level: loud\n", r"log_level: 'loud' is not one of"),
    ("- a\n- b\n", r"expected a mapping"),
    (BASE + "batch: [\n", r"not valid YAML at line"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        resolve_run(write(tmp_path, text), {})


def test_flags_override_the_file_and_replace_its_source_and_model(tmp_path):
    path = write(tmp_path, "video: cam.avi\nloop: true\nengine: a.plan\nbatch: 8\nstation: s1\nroi: [1, 2, 30, 40]\n")
    cfg = resolve_run(path, {})
    assert (cfg.video, cfg.engine, cfg.batch, cfg.station, cfg.roi) == ("cam.avi", "a.plan", 8, "s1", (1, 2, 30, 40))
    cfg = resolve_run(path, {"video": "other.avi", "model": "m.onnx", "batch": 2, "station": None})
    assert (cfg.video, cfg.engine, cfg.model, cfg.batch, cfg.station) == ("other.avi", None, "m.onnx", 2, "s1")
    with pytest.raises(ConfigError, match=r"loop: only applies to a video source"):
        resolve_run(path, {"folder": "/in"})  # the file's loop: no longer fits the source given on the command line
    cfg = resolve_run(write(tmp_path, "video: cam.avi\nengine: a.plan\n"), {"camera": 2})
    assert (cfg.camera, cfg.video, cfg.source_label, cfg.source_kind) == (2, None, "cam2", "camera")
    with pytest.raises(ConfigError, match=r"agent.yaml \+ flags: batch: must be"):
        resolve_run(path, {"batch": -3})


def test_source_names_and_kinds():
    assert RunConfig(video="rtsp://10.0.0.5/stream1", model="m.onnx").source_kind == "stream"
    assert RunConfig(video="rtsp://10.0.0.5/stream1", model="m.onnx").source_label == "stream"
    assert RunConfig(video="/v/Line 3 (top).avi", model="m.onnx").source_label == "Line_3__top_"
    assert RunConfig(folder="/data/in/", model="m.onnx").source_label == "in"
    assert RunConfig(folder="/x", model="m.onnx", source_name="top").source_label == "top"


def test_the_example_config_is_valid():
    cfg = resolve_run(REPO / "deploy" / "agent.yaml", {})
    assert cfg.engine and cfg.camera == 0 and cfg.publish == "tcp://*:5556"
    cfg = resolve_run(REPO / "deploy" / "agent.yaml", {"folder": "/in", "model": "m.onnx"})
    assert cfg.folder == "/in" and cfg.camera is None and cfg.engine is None


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(INSPECTOR), "run", *args], capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_cli_errors_are_one_line(tmp_path, agent_model):
    bad = write(tmp_path, f"folder: {tmp_path}\nmodel: {agent_model}\nqueue_size: 0\n")
    assert "queue_size: must be in [1, 100000]" in one_line_error(cli("--config", str(bad)))
    assert "no such folder" in one_line_error(cli("--folder", str(tmp_path / "nope"), "--model", str(agent_model)))
    msg = one_line_error(cli("--folder", str(tmp_path), "--model", str(tmp_path / "missing.onnx")))
    assert "missing.onnx: model file not found" in msg
    assert "--roi: expected 4 integers" in one_line_error(cli("--folder", str(tmp_path), "--model", str(agent_model), "--roi", "1,2,3"))
    plan = tmp_path / "carpet.plan"
    plan.write_bytes(b"not a real engine")
    msg = one_line_error(cli("--engine", str(plan), "--camera", "0"))
    assert "carpet.plan" in msg  # (whatever the backend finds wrong with it, one line naming the file)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01garbage")
    assert "garbage.onnx: not a loadable ONNX model" in one_line_error(cli("--folder", str(tmp_path), "--model", str(garbage)))


def test_incompatible_model_metadata_is_a_clear_error(tmp_path, agent_model):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(agent_model))
    meta = {p.key: p for p in proto.metadata_props}
    meta["inspector"].value = meta["inspector"].value.replace('"inspector.model/1"', '"inspector.model/0"')
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    assert "metadata schema 'inspector.model/0'" in one_line_error(cli("--folder", str(tmp_path), "--model", str(old)))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    assert "not an inspector model" in one_line_error(cli("--folder", str(tmp_path), "--model", str(plain)))


def test_port_in_use_is_a_clear_error(tmp_path, agent_model):
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        msg = one_line_error(cli("--folder", str(tmp_path), "--model", str(agent_model), "--publish", f"tcp://127.0.0.1:{port}",
                                 "--log-db", str(tmp_path / "r.db")))
        assert f"publish: cannot bind tcp://127.0.0.1:{port}" in msg and "in use" in msg
    finally:
        sock.close()
        ctx.term()


def test_the_runtime_never_imports_torch_or_timm(agent_model, piped, tmp_path):
    code = f"""
import sys
from inspector.cli import app
from inspector.agent.agent import Agent
from inspector.agent.config import RunConfig
cfg = RunConfig(folder={str(piped / 'test' / 'good')!r}, model={str(agent_model)!r}, publish="tcp://127.0.0.1:*",
                recovery="tcp://127.0.0.1:*", log_db={str(tmp_path / 'r.db')!r}, max_frames=2, linger_s=0)
summary = Agent(cfg).run()
assert summary["published"] == 2, summary
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision", "trainer"))
print("IMPORTED", bad)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORTED []" in proc.stdout
