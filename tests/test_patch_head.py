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
    lo, hi = sel["cse_minus_patch_90"]
    assert sel["chosen"] == chosen["head"] == ("cse" if lo > 0 else "patch")  # patch unless cse is resolvably better
    assert sel["reason"]
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
        # test images: the held-out goods are in the shipped bank (bank_from: all), distances ~0 there
        items = sorted((piped / "test" / "defect").iterdir())[:6] + sorted((piped / "test" / "good").iterdir())[:4]
        crops = load_crops(items, res.meta.preprocess)
        score, amap = ort.InferenceSession(str(path)).run(None, {"image": crops})
        with torch.no_grad():
            ts, tm = res.model(torch.from_numpy(crops))
        assert np.abs(score - ts.numpy()).max() <= 1e-5 * np.abs(ts.numpy()).max() + 1e-4
        assert np.abs(amap - tm.numpy()).max() <= 1e-5 * np.abs(tm.numpy()).max() + 1e-4
    finally:
        path.unlink()


def test_auto_decides_only_on_a_difference_the_held_out_images_resolve():
    from sklearn.metrics import roc_auc_score

    from trainer.selection import auroc, choose

    rng = np.random.default_rng(0)
    good, bad = rng.normal(0, 1, 10).round(1), rng.normal(1, 1, 30).round(1)  # rounded: ties count half
    assert auroc(good, bad) == pytest.approx(roc_auc_score(np.r_[np.zeros(10), np.ones(30)], np.r_[good, bad]))
    n = 10  # held-out goods, each with 3 probes (family-major: probe k * n + i is on image i)
    # cse separates every probe, patch none: resolvable even on 10 images
    clear = choose({"cse": rng.normal(0, 0.1, n), "patch": rng.normal(0, 1, n)},
                   {"cse": rng.normal(5, 0.1, 3 * n), "patch": rng.normal(0, 1, 3 * n)})
    assert clear["chosen"] == "cse" and clear["cse_minus_patch_90"][0] > 0.2
    # the same scores but one probe apart: not resolvable, the patch head ships
    worst = np.zeros(3 * n, bool)
    worst[np.argmax(bad)] = True
    close = choose({"cse": good, "patch": good}, {"cse": bad, "patch": np.where(worst, -9.0, bad)})
    lo, hi = close["cse_minus_patch_90"]
    assert close["chosen"] == "patch" and lo <= 0 <= hi and "cannot tell" in close["reason"]
    assert close["synthetic_auroc"]["cse"] > close["synthetic_auroc"]["patch"]  # the higher figure alone would pick cse


def test_greedy_coreset_covers_the_points():
    g = torch.Generator().manual_seed(0)
    # 5 tight clusters far apart: 5 coreset picks must land one in each
    centers = torch.randn(5, 16, generator=g) * 100
    x = (centers[:, None, :] + torch.randn(5, 50, 16, generator=g)).reshape(-1, 16)
    picks = greedy_coreset(x, 5, proj_dim=16)
    assert sorted((picks // 50).tolist()) == [0, 1, 2, 3, 4]
    assert len(greedy_coreset(x, 1000)) == len(x)


def test_held_out_goods_join_the_bank_only_after_setting_the_threshold(piped):
    """bank_from=all: the threshold comes from held-out goods scored against a bank without them (so it
    is well above 0), while the shipped bank holds every good patch (a good image then scores ~0)."""
    from trainer.config import TrainConfig
    from trainer.train import train

    cfg = TrainConfig(backbone="efficientnet_lite0", scoring="patch", bank_size=100_000)  # > every patch: exact bank
    shipped = train(piped, cfg, log=lambda m: None)
    held_out = train(piped, TrainConfig(**{**cfg.__dict__, "bank_from": "train"}), log=lambda m: None)
    t = shipped.meta.training
    assert t["bank_from"] == "all" and t["bank_images"] == t["train_images"] + t["val_images"]
    assert t["shipped_bank_size"] == t["shipped_patches"] > t["bank_size"] == t["patches"]
    # the same threshold either way: it was set before the held-out goods joined the bank
    assert shipped.meta.threshold.value == held_out.meta.threshold.value > 0.5
    crops = torch.from_numpy(load_crops(shipped.val_images, shipped.meta.preprocess))
    with torch.no_grad():
        in_bank, not_in_bank = shipped.model(crops)[0], held_out.model(crops)[0]
    assert float(in_bank.max()) < 1e-2 * shipped.meta.threshold.value
    assert float(not_in_bank.min()) > 0.1 * held_out.meta.threshold.value


def test_principal_axes_and_projected_bank():
    from trainer.model import PatchHead, principal_axes

    g = torch.Generator().manual_seed(0)
    # 3 strong directions in 16 channels, plus small noise: 3 axes keep almost all distances
    basis = torch.linalg.qr(torch.randn(16, 3, generator=g))[0]
    x = 5 + torch.randn(2000, 3, generator=g) * torch.tensor([9.0, 5.0, 3.0]) @ basis.T + 0.01 * torch.randn(2000, 16, generator=g)
    mean, axes = principal_axes(x, 3)
    assert axes.shape == (16, 3) and torch.allclose(axes.T @ axes, torch.eye(3), atol=1e-5)
    assert torch.allclose(mean, x.mean(0), atol=1e-4)
    assert torch.allclose((basis @ basis.T) @ axes, axes, atol=1e-3)  # the axes span the strong directions
    head = PatchHead((x[:500] - mean) @ axes, axes, mean)
    q = x[1000:1010]
    exact = torch.cdist(q, x[:500]).min(1).values
    assert torch.allclose(head.project(q), (q - mean) @ axes, atol=1e-4)
    assert torch.allclose(torch.cdist(head.project(q), head.bank_t.T).min(1).values, exact, atol=0.05)


def test_quantize_carries_the_threshold_of_a_bank_holding_the_held_out_goods(auto_models, piped, tmp_path):
    """Re-setting it on images that are in the bank would put it near 0 and reject every frame; kept
    as is, INT8's noisier distances would reject more goods. It moves by the shift measured near it."""
    from inspector.dataset import test_items
    from inspector.quantize import carried_threshold, model_scores

    out, _ = auto_models
    chosen = meta_of(out)
    patch = out if chosen["head"] == "patch" else out.with_name(chosen["training"]["selection"]["alternative"])
    q = tmp_path / "patch.int8.onnx"
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", "quantize", str(patch), "-o", str(q), "--calib", str(piped),
                           "--calib-images", "8", "--max-auroc-loss", "100"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "in this patch model's memory bank" in proc.stderr and "moved by INT8's score shift" in proc.stderr
    fp32_thr, qmeta = meta_of(patch)["threshold"], meta_of(q)
    paths = [it.path for it in test_items(piped)]
    expected = carried_threshold(fp32_thr["value"], model_scores(patch, paths), model_scores(q, paths))
    assert qmeta["threshold"]["value"] == pytest.approx(expected, rel=1e-6) and expected != fp32_thr["value"]
    assert qmeta["threshold"]["method"] == fp32_thr["method"] and qmeta["precision"] == "int8"
    assert qmeta["training"]["quantization"]["threshold_fp32"] == fp32_thr["value"]


def test_map_smoothing_keeps_levels_and_spreads_a_lone_spike():
    """Renormalised at the borders: a uniform map stays uniform (border positions are not pulled
    down); a lone far patch is spread and lowered, an extended far region much less."""
    from trainer.model import gaussian_smoothing

    assert gaussian_smoothing(14, 14, 0) is None
    s = gaussian_smoothing(14, 14, 1.5)
    assert s.shape == (196, 196) and torch.allclose(s.sum(1), torch.ones(196), atol=1e-6)
    flat = torch.full((1, 196), 3.0)
    assert torch.allclose(flat @ s.T, flat, atol=1e-5)
    spike = torch.zeros(14, 14)
    spike[0, 0] = 1.0  # a corner: renormalisation must not inflate it
    region = torch.zeros(14, 14)
    region[4:10, 4:10] = 1.0
    ss, sr = (spike.reshape(1, -1) @ s.T).max(), (region.reshape(1, -1) @ s.T).max()
    assert ss < 0.25 and sr > 0.85


def test_patch_model_smooths_its_map_in_the_fp32_head(auto_models):
    """The smoothing is a MatMul after the distances: in the graph, and kept FP32 by the FP16 conversion."""
    from build_engine import fp16

    out, _ = auto_models
    chosen = meta_of(out)
    patch = out if chosen["head"] == "patch" else out.with_name(chosen["training"]["selection"]["alternative"])
    assert meta_of(patch)["training"]["map_sigma"] == 1.5
    model = fp16.load_model(patch)
    inits = {t.name: t for t in model.graph.initializer}
    smooth = [n for n in model.graph.node if n.op_type == "MatMul" and any(
        i in inits and tuple(inits[i].dims) == (196, 196) for i in n.input)]
    assert len(smooth) == 1
    conv = fp16.convert_fp16(model)
    assert smooth[0].name in conv.head


def test_agent_runs_the_patch_model_unchanged(auto_models, piped, tmp_path):
    """Folder in, verdicts out over real ZeroMQ: the agent needs nothing of the head but the contract."""
    from agentkit import config, link_images, run_agent
    from inspector import dataset
    from inspector.backends import open_backend
    from inspector.evaluate import score_items

    out, _ = auto_models
    chosen = meta_of(out)
    patch = out if chosen["head"] == "patch" else out.with_name(chosen["training"]["selection"]["alternative"])
    folder = tmp_path / "frames"
    files = link_images(piped / "test" / "good", folder, 4) + link_images(piped / "test" / "defect", folder, 4)
    summary, col, _ = run_agent(config(tmp_path, patch, folder=str(folder), batch=3))
    col.close()
    with open_backend(patch) as be:
        ref = score_items(be, [dataset.TestItem(p, "good", None) for p in sorted(files)])
        threshold = be.meta.threshold.value
        assert be.meta.head == "patch"
    got = {r["frame_id"]: r for r in col.results}
    assert sorted(got) == sorted(p.name for p in files) and summary["published"] == len(files)
    for p, s in zip(sorted(files), ref.scores):
        assert got[p.name]["score"] == pytest.approx(float(s), abs=1e-5)
        assert got[p.name]["verdict"] == ("fail" if s >= threshold else "pass")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "inspector.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env={**os.environ, "INSPECTOR_NO_PROGRESS": "1"})


def test_evaluate_of_an_auto_model_without_defects_or_without_its_alternative(auto_models, piped, tmp_path):
    out, _ = auto_models
    alt = out.with_name(meta_of(out)["training"]["selection"]["alternative"])
    goods_only = tmp_path / "goods_only"  # MVTec layout, but no defective test images
    (goods_only / "test").mkdir(parents=True)
    (goods_only / "train").mkdir()
    (goods_only / "test" / "good").symlink_to(piped / "test" / "good")
    (goods_only / "train" / "good").symlink_to(piped / "train" / "good")
    proc = _cli("evaluate", out, goods_only)
    assert proc.returncode == 0, proc.stderr
    assert "on these real defects:" in proc.stdout and "n/a" in proc.stdout
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / out.name).symlink_to(out)  # the chosen head without the other one beside it
    proc = _cli("evaluate", lone / out.name, piped)
    assert proc.returncode == 0, proc.stderr
    assert "auto chose the" in proc.stdout and f"{lone / alt.name} is not there" in proc.stdout
    # the chosen model itself put where the other head should be: refused, one line
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / out.name).symlink_to(out)
    (wrong / alt.name).symlink_to(out)
    proc = _cli("evaluate", wrong / out.name, piped)
    assert proc.returncode == 2 and "not the alternative of" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("evaluate", out, piped, "--threshold", "nan")
    assert proc.returncode == 2 and "--threshold" in proc.stderr


def test_train_refuses_a_folder_as_output_before_training(piped, tmp_path):
    proc = _cli("train", piped, "-o", tmp_path, "--backbone", "efficientnet_lite0", "--epochs", "1", timeout=120)
    assert proc.returncode == 2 and "is a folder" in proc.stderr and "[train]" not in proc.stderr
