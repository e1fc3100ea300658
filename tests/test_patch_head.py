"""The patch head and auto selection: same ONNX contract, agrees with PyTorch, auto explained by evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
import onnxruntime as ort  # noqa: E402

from trainer.coreset import greedy_coreset  # noqa: E402
from trainer.train import load_crops  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def auto_models(piped, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "piped.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.cli", "train", str(piped), "-o", str(out), "--scoring", "auto",
         "--backbone", "efficientnet_lite0", "--epochs", "2"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "INSPECTOR_NO_PROGRESS": "1"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def meta_of(path: Path) -> dict:
    return json.loads(ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map["inspector"])


def test_auto_writes_both_heads_in_one_contract(auto_models, piped):
    out, proc = auto_models
    chosen = meta_of(out)
    sel = chosen["training"]["selection"]
    other = "patch" if chosen["head"] == "cse" else "cse"
    alt = out.with_name(sel["alternative"])
    assert alt.name == f"piped.{other}.onnx" and alt.is_file()
    assert set(sel["synthetic_auroc"]) == {"cse", "patch"}
    assert sel["chosen"] == chosen["head"] == max(sel["synthetic_auroc"], key=lambda k: (sel["synthetic_auroc"][k], k == "cse"))
    crops = load_crops(sorted((piped / "test" / "defect").iterdir())[:4], _pre(chosen))
    for path, meta in ((out, chosen), (alt, meta_of(alt))):
        s = ort.InferenceSession(str(path))
        assert [i.name for i in s.get_inputs()] == ["image"] and [o.name for o in s.get_outputs()] == ["score", "anomaly_map"]
        score, amap = s.run(None, {"image": crops})
        assert score.shape == (4,) and amap.shape == (4, meta["map_h"], meta["map_w"])
        if meta["head"] == "patch":
            assert amap.shape[1:] == (14, 14)
            assert np.allclose(score, amap.max(axis=(1, 2)))  # the worst position decides


def _pre(meta: dict):
    from inspector.modelmeta import Preprocess

    return Preprocess(**meta["preprocess"])


def test_evaluate_reports_both_heads(auto_models, piped):
    out, _ = auto_models
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", "evaluate", str(out), str(piped)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "auto chose the" in proc.stdout and "on these real defects" in proc.stdout


def test_patch_head_matches_pytorch(piped):
    from trainer.config import TrainConfig
    from trainer.export import export_onnx
    from trainer.train import train

    res = train(piped, TrainConfig(backbone="efficientnet_lite0", scoring="patch", bank_size=500), log=lambda m: None)
    assert res.meta.head == "patch" and res.meta.training["bank_size"] == 500
    path = export_onnx(res.model, res.meta, Path(os.environ.get("TMPDIR", "/tmp")) / f"patch_{os.getpid()}.onnx")
    try:
        crops = load_crops(res.val_images, res.meta.preprocess)
        score, amap = ort.InferenceSession(str(path)).run(None, {"image": crops})
        with torch.no_grad():
            ts, tm = res.model(torch.from_numpy(crops))
        assert np.abs(score - ts.numpy()).max() <= 1e-5 * np.abs(ts.numpy()).max() + 1e-4
        assert np.abs(amap - tm.numpy()).max() <= 1e-5 * np.abs(tm.numpy()).max() + 1e-4
    finally:
        path.unlink()


def test_greedy_coreset_covers_the_points():
    g = torch.Generator().manual_seed(0)
    # 5 tight clusters far apart: 5 coreset picks must land one in each
    centers = torch.randn(5, 16, generator=g) * 100
    x = (centers[:, None, :] + torch.randn(5, 50, 16, generator=g)).reshape(-1, 16)
    picks = greedy_coreset(x, 5, proj_dim=16)
    assert sorted((picks // 50).tolist()) == [0, 1, 2, 3, 4]
    assert len(greedy_coreset(x, 1000)) == len(x)
