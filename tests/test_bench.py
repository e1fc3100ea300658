"""`inspector bench`, `inspector quantize` and the peers' PatchCore/PaDiM, on real data and a real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend, OrtOptions
from inspector.dataset import test_items, train_images
from inspector.errors import ModelError
from inspector.images import read_image
from inspector.preprocess import prepare

INSPECTOR = Path(sys.executable).with_name("inspector")


def ranks(v: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(v))


@pytest.fixture(scope="module")
def bench_json(model_path, piped, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run([str(INSPECTOR), "bench", "--model", str(model_path), "--batch", "1,2", "--seconds", "0.2",
                           "--folder", str(piped / "test" / "good"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    res["_stdout"] = proc.stdout
    return res


def test_bench_json_has_every_figure(bench_json):
    res = bench_json
    names = [b["backend"] for b in res["backends"]]
    assert "onnxruntime-cpu" in names
    pytest.importorskip("torch")
    assert "pytorch-eager-cpu" in names
    for b in res["backends"]:
        lat = b["latency_ms"]
        assert lat["batch"] == 1 and lat["n"] >= 5
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert [t["batch"] for t in b["throughput"]] == [1, 2]
        assert all(t["fps"] > 0 and t["ms_per_frame"] > 0 for t in b["throughput"])
        assert b["precision"] == "fp32"
    pre = res["preprocess"]
    assert pre["files"] == 16 and 0 < pre["read_ms"]["p50"] and 0 < pre["resize_crop_ms"]["p50"]
    assert pre["total_ms"]["p50"] >= pre["read_ms"]["p50"]
    for mode in ("throughput", "latency"):
        e = res["end_to_end"][mode]
        assert e["frames"] == 16 and e["errors"] == 0 and e["throughput_fps"] > 0
        assert e["latency_ms"]["p50"] > 0 and e["agent_latency_ms"]["infer"]["p50"] > 0
    assert res["end_to_end"]["latency"]["pipeline"]["batch"] == 1
    assert res["end_to_end"]["latency"]["pipeline"]["frame_period_ms"] > 0
    hw = res["hardware"]
    assert hw["cpu"]["logical_cores"] >= 1 and hw["cpu"]["model"]
    assert "onnxruntime" in hw["versions"] and "numpy" in hw["versions"]
    assert len(res["load_average"]["before"]) == 3 and len(res["load_average"]["after"]) == 3
    assert res["settings"]["seed"] == 0 and res["settings"]["sync"]
    assert res["paper"]["rows"][0]["latency_ms"] == 18.0 and res["target_ms"] == 18.0


def test_bench_prints_table_beside_the_paper(bench_json):
    text = bench_json["_stdout"]
    assert "onnxruntime-cpu" in text and "paper: CSE, EfficientNet-B3" in text
    assert "hardware:" in text and "host preprocessing per frame" in text and "end to end, latency" in text
    assert "best CPU batch-1 p50" in text


def test_bench_needs_a_model(tmp_path):
    proc = subprocess.run([str(INSPECTOR), "bench"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--model" in proc.stderr
    proc = subprocess.run([str(INSPECTOR), "bench", "--model", str(tmp_path / "none.onnx")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_ort_options_reach_the_session(model_path):
    be = OnnxRuntimeBackend(model_path, device="cpu", options=OrtOptions(intra_op_threads=1, allow_spinning=False,
                                                                        graph_optimization="basic"))
    so = be.session.get_session_options()
    assert so.intra_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert be.meta.precision == "fp32"
    with pytest.raises(ModelError, match="graph_optimization"):
        OnnxRuntimeBackend(model_path, options=OrtOptions(graph_optimization="max"))


@pytest.fixture(scope="module")
def quantized(model_path, piped, tmp_path_factory):
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("q") / "piped.int8.onnx"
    # --max-auroc-loss 100: this 2-epoch test model's INT8 cost is whatever it is; the gate is tested below.
    proc = subprocess.run([str(INSPECTOR), "quantize", str(model_path), "-o", str(out), "--calib", str(piped),
                           "--calib-images", "16", "--max-auroc-loss", "100"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "points lost" in proc.stderr
    return out


def test_quantize_makes_a_valid_int8_model(quantized, model_path, piped):
    import onnx

    q = OnnxRuntimeBackend(quantized, device="cpu")
    f = OnnxRuntimeBackend(model_path, device="cpu")
    assert q.meta.precision == "int8" and q.meta.model_id == f.meta.model_id + "-int8"
    info = q.meta.training["quantization"]
    assert info["calib_images"] == 16 and info["nodes_kept_fp32"] > 0 and info["fmt"] == "qdq"
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The threshold was re-set on the trainer's own held-out goods, scored in INT8.
    assert q.meta.threshold.n_images == f.meta.threshold.n_images and q.meta.threshold.value != f.meta.threshold.value
    # Scores follow FP32 on real images: defects rank like FP32's, and the INT8 model still separates them.
    items = test_items(piped)
    x = np.stack([prepare(read_image(it.path), f.meta.preprocess) for it in items])
    y = np.array([it.is_anomalous for it in items])
    sf, sq = f.infer(x)[0], q.infer(x)[0]
    assert np.corrcoef(ranks(sf), ranks(sq))[0, 1] > 0.8
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, sq) > roc_auc_score(y, sf) - 0.05
    # The recorded AUROC cost is the one measured here, on the same test/ images.
    check = info["auroc_check"]
    assert check["images"] == len(items) and check["max_loss_points"] == 100
    assert check["image_auroc_fp32"] == pytest.approx(roc_auc_score(y, sf), abs=1e-4)
    assert check["image_auroc_int8"] == pytest.approx(roc_auc_score(y, sq), abs=1e-4)


def test_quantize_refuses_a_model_that_loses_too_much_auroc(quantized, model_path, piped, tmp_path):
    """An allowance just under the measured loss: refused, and the file already at -o is left as it was."""
    from inspector.quantize import QuantConfig, quantize_model

    loss = OnnxRuntimeBackend(quantized).meta.training["quantization"]["auroc_check"]["loss_points"]
    dst = tmp_path / "q.onnx"
    dst.write_bytes(b"an earlier file")
    with pytest.raises(ModelError, match=r"q.onnx: not written: INT8 image AUROC .* more than --max-auroc-loss .*blocks\.1\)"):
        quantize_model(model_path, dst, piped, QuantConfig(images=16, max_auroc_loss=loss - 0.02))
    assert dst.read_bytes() == b"an earlier file" and sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]


def test_a_refusal_names_the_next_block_to_keep_in_fp32():
    from inspector.quantize import QuantConfig, next_keep_fp32

    default = QuantConfig().keep_fp32
    assert next_keep_fp32(default) == default + ("backbone.features.blocks.1",)
    assert next_keep_fp32(("head.",)) == ("head.", "backbone.features.blocks.0")


def test_quantize_refuses_an_int8_model(quantized, piped, tmp_path):
    proc = subprocess.run([str(INSPECTOR), "quantize", str(quantized), "-o", str(tmp_path / "x.onnx"), "--calib",
                           str(piped)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already int8" in proc.stderr


@pytest.mark.parametrize("model, args, message", [
    ("{model}", ["--max-auroc-loss", "nan"], "--max-auroc-loss: nan"),
    ("{model}", ["--check", "{good}"], "--check"),
    ("{model}", ["-o", "{model}"], "would overwrite the FP32 model"),
    ("{junk}", [], "junk.onnx: not a loadable ONNX model"),
])
def test_quantize_rejects_bad_options(model_path, piped, tmp_path, model, args, message):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not an onnx model")
    names = {"good": piped / "train" / "good", "model": model_path, "junk": junk}
    model, args = model.format(**names), [a.format(**names) for a in args]
    out = [] if "-o" in args else ["-o", str(tmp_path / "x.onnx")]
    proc = subprocess.run([str(INSPECTOR), "quantize", model, *out, "--calib", str(piped), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def peer_features(piped):
    pytest.importorskip("torch")
    from benchmarks.peer_methods import MultiLevel
    from inspector.modelmeta import Preprocess

    pre = Preprocess()
    ml = MultiLevel()
    tr = np.stack([prepare(read_image(p), pre) for p in train_images(piped)])
    items = test_items(piped)
    te = np.stack([prepare(read_image(it.path), pre) for it in items])
    y = np.array([it.is_anomalous for it in items])
    return ml.batched(tr, (1, 2, 3)), ml.batched(te, (1, 2, 3)), y


def test_peers_patchcore_and_padim_detect_real_defects(peer_features):
    from sklearn.metrics import roc_auc_score

    from benchmarks.peer_methods import PaDiM, PatchCore

    ftr, fte, y = peer_features
    assert ftr[1].shape[1:] == (24, 56, 56) and ftr[2].shape[1:] == (48, 28, 28) and ftr[3].shape[1:] == (120, 14, 14)
    pc = PatchCore(coreset_ratio=0.02).fit({lv: ftr[lv] for lv in PatchCore.levels})
    assert len(pc.bank) == round(0.02 * pc.patches)
    s_pc, m_pc = pc.score({lv: fte[lv] for lv in PatchCore.levels})
    pd = PaDiM().fit({lv: ftr[lv] for lv in PaDiM.levels})
    s_pd, m_pd = pd.score({lv: fte[lv] for lv in PaDiM.levels})
    assert m_pc.shape == (len(y), 28, 28) and m_pd.shape == (len(y), 224, 224)
    assert roc_auc_score(y, s_pc) > 0.9 and roc_auc_score(y, s_pd) > 0.9
    # Scores are distances to what was seen in training: a training image's own patches score ~0.
    s_tr, _ = pc.score({lv: ftr[lv][:2] for lv in PatchCore.levels})
    assert s_tr.max() < np.median(s_pc)
