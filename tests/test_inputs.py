"""Bad input gets one clear line naming the file or key; odd-but-valid images get documented conversions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.configfile import resolve
from inspector.dataset import test_items, train_images
from inspector.errors import ConfigError, ImageError, InspectorError
from inspector.images import read_image
from inspector.modelmeta import Preprocess
from inspector.preprocess import prepare

REPO = Path(__file__).resolve().parents[1]
INSPECTOR = [sys.executable, "-m", "inspector.cli"]


def test_conversions_to_bgr8(tmp_path, piped):
    src = cv2.imread(str(next((piped / "train" / "good").iterdir())))
    gray = cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "deep.png"), gray.astype(np.uint16) * 257)  # 16-bit
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(src, cv2.COLOR_BGR2BGRA))
    for name in ("gray.png", "deep.png"):
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == src.shape
        assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), src)


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"\x89PNG\r\n\x1a\n garbage", "not a decodable image")])
def test_bad_image_files(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as exc:
        read_image(path)
    assert str(path) in str(exc.value)


def test_missing_image():
    with pytest.raises(ImageError, match="no such file"):
        read_image("/nonexistent/x.png")


def test_small_image_is_upsampled_to_the_model_size():
    tiny = np.full((40, 60, 3), 128, np.uint8)
    out = prepare(tiny, Preprocess())
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and (out == 128).all()


def test_layouts(tmp_path, piped):
    assert len(train_images(piped)) == 32
    items = test_items(piped)
    assert {it.defect for it in items} == {"good", "defect"}
    assert all(it.mask is not None for it in items if it.is_anomalous)
    plain = tmp_path / "plain"
    plain.mkdir()
    for p in list((piped / "train" / "good").iterdir())[:3]:
        (plain / p.name).write_bytes(p.read_bytes())
    assert len(train_images(plain)) == 3  # a plain folder of good images
    with pytest.raises(InspectorError, match="no images found"):
        train_images(_empty(tmp_path))
    with pytest.raises(InspectorError, match="no such folder"):
        train_images(tmp_path / "missing")
    with pytest.raises(InspectorError, match="no test/ folder"):
        test_items(plain)


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_config_file_errors_name_the_key(tmp_path):
    pytest.importorskip("torch")
    from trainer.config import TrainConfig

    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 5\nlr: 0.001\n")
    got = resolve(TrainConfig, cfg, {"epochs": 7, "lr": None})
    assert got.epochs == 7 and got.lr == 0.001  # flags > file > defaults
    for text, key in [("epoch: 5\n", "epoch"), ("epochs: many\n", "epochs"), ("clusters: 0\n", "clusters"),
                      ("threshold_method: median\n", "threshold_method"), ("crop: 300\n", "crop"),
                      ("map_sigma: -1\n", "map_sigma"), ("map_sigma: .nan\n", "map_sigma"), ("map_sigma: 1.0e-200\n", "map_sigma"),
                      ("bank_from: some\n", "bank_from")]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=key) as exc:
            resolve(TrainConfig, cfg, {})
        assert str(cfg) in str(exc.value)
    cfg.write_text("epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(TrainConfig, cfg, {})


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INSPECTOR_NO_PROGRESS": "1"}
    return subprocess.run([*INSPECTOR, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_cli_user_mistakes_are_one_line_errors(tmp_path, model_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lr: -1\n")
    zero = tmp_path / "zero.onnx"
    zero.write_bytes(b"")
    cases = [
        (("train", str(tmp_path / "nowhere")), "nowhere: no such folder"),
        (("train", str(_empty(tmp_path)), "--config", str(bad_yaml)), "lr: must be > 0"),
        (("train", str(tmp_path), "--backbone", "resnet9"), "resnet9"),
        (("evaluate", str(tmp_path / "missing.onnx"), str(tmp_path)), "missing.onnx: model file not found"),
        (("evaluate", str(zero), str(tmp_path)), "zero.onnx: not a loadable ONNX model"),
        (("evaluate", str(model_path), str(tmp_path)), "no test/ folder"),
    ]
    for args, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_example_train_config_is_the_defaults():
    pytest.importorskip("torch")
    from trainer.config import TrainConfig

    assert resolve(TrainConfig, REPO / "deploy" / "train.yaml", {}) == TrainConfig()
