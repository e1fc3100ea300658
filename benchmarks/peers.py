"""Peers side by side: image AUROC and per-frame latency of this project's CSE, PatchCore and PaDiM.

    .venv/bin/python benchmarks/peers.py --cse-models runs/ --json benchmarks/results/peers.json

Same data (../shared/data: magnetic_tile and the 8 piped classes), same splits (train/good to fit,
test/* to score), same backbone weights (trainer.backbones.create_backbone("efficientnet_lite2")),
same preprocessing (inspector.preprocess.prepare: resize 256, centre crop 224). PatchCore and PaDiM
are benchmarks/peer_methods.py (faithful implementations; why not anomalib: docs/bench.md).
CSE: the ONNX models found in --cse-models (matched by their metadata's category), else trained
here with the product's trainer (--cse-epochs) and kept in --cse-out for the next run.
Latency: batch 1, one frame at a time from its uint8 crop to its image score, on this machine's
CPU threads: PatchCore and PaDiM in PyTorch eager; CSE both through onnxruntime (the product's
path) and in PyTorch eager (same runtime as the peers). Progress goes to stderr; the markdown
table to stdout; every figure to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.peer_methods import MultiLevel, PaDiM, PatchCore  # noqa: E402
from inspector.bench.hardware import describe, hardware, load_average  # noqa: E402
from inspector.bench.timing import summarize  # noqa: E402
from inspector.dataset import test_items, train_images  # noqa: E402
from inspector.images import read_image  # noqa: E402
from inspector.modelmeta import Preprocess  # noqa: E402
from inspector.preprocess import prepare  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PRE = Preprocess(256, 256, 224, 224, "area")
PIPED = ("PA_BDP01_TL", "PA_BFT01_TL", "PA_BRG01_RL", "PA_BRG02_RL", "PA_BTN01_RL", "PA_FLR01_TL", "PA_FLR02_TL", "PA_FVN01_TL")


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def crops_of(paths) -> np.ndarray:
    return np.stack([prepare(read_image(p), PRE) for p in paths])


def find_cse_models(folder: Path | None) -> dict[str, list[tuple[str, Path]]]:
    """category -> [(created, path)] of lite2 models in folder (any depth), newest first."""
    out: dict[str, list[tuple[str, Path]]] = {}
    if folder is None or not folder.is_dir():
        return out
    import onnx

    from inspector.modelmeta import META_KEY, ModelMeta

    for path in sorted(folder.rglob("*.onnx")):
        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            meta = ModelMeta.from_json(props[META_KEY], str(path))
        except Exception:
            continue
        if meta.backbone != "efficientnet_lite2" or meta.precision != "fp32" or meta.category == "timing-only":
            continue
        out.setdefault(f"{meta.category}/{meta.head}", []).append((meta.created, path))
    for v in out.values():
        v.sort(reverse=True)
    return out


def latency(fn, crops: np.ndarray, frames: int) -> dict:
    for i in range(3):
        fn(crops[i % len(crops)][None])
    ms = []
    for i in range(frames):
        x = np.ascontiguousarray(crops[i % len(crops)][None])
        t0 = time.perf_counter()
        fn(x)
        ms.append((time.perf_counter() - t0) * 1e3)
    return summarize(ms)


def run_category(name: str, data: Path, ml: MultiLevel, args, cse_models: dict, cse_eager) -> dict:
    t_cat = time.time()
    tr_paths, items = train_images(data), test_items(data)
    y = np.array([it.is_anomalous for it in items])
    tr, te = crops_of(tr_paths), crops_of([it.path for it in items])
    log(f"{name}: {len(tr)} train / {len(te)} test ({int(y.sum())} defective); extracting features")
    t0 = time.time()
    ftr, fte = ml.batched(tr, (1, 2, 3)), ml.batched(te, (1, 2, 3))
    row: dict = {"category": name, "train": len(tr), "test": len(te), "defective": int(y.sum()),
                 "feature_seconds": round(time.time() - t0, 1), "methods": {}}

    for label, method in (("PatchCore", PatchCore(args.coreset_ratio, args.coreset_max, seed=args.seed)),
                          ("PaDiM", PaDiM(seed=args.seed))):
        t0 = time.time()
        method.fit({lv: ftr[lv] for lv in method.levels}, log=lambda m: log(f"{name}: {label} {m}"))
        fit_s = time.time() - t0
        scores, _ = method.score({lv: fte[lv] for lv in method.levels})
        auc = float(roc_auc_score(y, scores))
        lat = latency(lambda x: method.score(ml(x, method.levels)), te, args.latency_frames)
        info = {"image_auroc": auc, "fit_seconds": round(fit_s, 1), "latency_ms": lat, "runtime": "pytorch eager CPU"}
        if label == "PatchCore":
            info.update(bank=int(len(method.bank)), patches=int(method.patches))
        row["methods"][label] = info
        log(f"{name}: {label} AUROC {auc:.4f} (fit {fit_s:.0f}s), {lat['p50']:.1f} ms per frame")

    for key in (f"{name}/cse", f"{name}/patch"):
        found = cse_models.get(key)
        path = found[0][1] if found else None
        if path is None and key.endswith("/cse") and args.train_cse:
            path = train_cse(name, data, args)
        if path is None:
            continue
        from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend
        from inspector.evaluate import evaluate

        with OnnxRuntimeBackend(path, device="cpu") as be:
            res = evaluate(be, data)
            lat = latency(be.infer, te, args.latency_frames)
            head = be.meta.head
            label = "CSE" if head == "cse" else f"this project's {head} head"
            info = {"image_auroc": res["image_auroc"], "pixel_auroc": res["pixel_auroc"], "model": str(path),
                    "model_id": be.meta.model_id, "epochs": be.meta.training.get("epochs"),
                    "latency_ms": lat, "runtime": "onnxruntime CPU (the product's path)"}
        if head == "cse" and cse_eager is not None:
            info["latency_ms_pytorch_eager"] = latency(cse_eager.infer, te, args.latency_frames)
        row["methods"][label] = info
        log(f"{name}: {label} AUROC {info['image_auroc']:.4f} ({path}), {lat['p50']:.1f} ms per frame (onnxruntime)")
    row["seconds"] = round(time.time() - t_cat, 1)
    return row


def train_cse(name: str, data: Path, args) -> Path:
    from trainer.config import TrainConfig
    from trainer.export import export_onnx
    from trainer.train import train

    out = args.cse_out / f"{name}.onnx"
    log(f"{name}: training CSE ({args.cse_epochs} epochs) -> {out}")
    result = train(data, TrainConfig(backbone="efficientnet_lite2", epochs=args.cse_epochs, seed=args.seed), log=log)
    export_onnx(result.model, result.meta, out)
    return out


def markdown(res: dict) -> list[str]:
    methods = ["CSE", "PatchCore", "PaDiM"]
    extra = sorted({m for r in res["categories"] for m in r["methods"]} - set(methods))
    methods += extra

    def auc(r, m):
        v = r["methods"].get(m, {}).get("image_auroc")
        return "-" if v is None else f"{v:.3f}"

    lines = ["| category | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    piped = [r for r in res["categories"] if r["category"] in PIPED]
    for r in res["categories"]:
        lines.append(f"| {r['category']} | " + " | ".join(auc(r, m) for m in methods) + " |")
    if piped:
        means = []
        for m in methods:
            vals = [r["methods"][m]["image_auroc"] for r in piped if m in r["methods"]]
            means.append(f"{np.mean(vals):.3f}" if len(vals) == len(piped) else "-")
        lines.append(f"| piped, mean of {len(piped)} | " + " | ".join(means) + " |")
    lines += ["", "Per-frame latency, batch 1, ms p50 (2-core CPU; " + res["hardware_line"] + "):", "",
              "| method | runtime | magnetic_tile | piped (median of classes) |", "|---|---|---|---|"]
    for m in methods:
        for key, runtime in (("latency_ms", None), ("latency_ms_pytorch_eager", "pytorch eager CPU (untrained twin)")):
            cells = {}
            for group, rows in (("mt", [r for r in res["categories"] if r["category"] == "magnetic_tile"]), ("piped", piped)):
                vals = [r["methods"][m][key]["p50"] for r in rows if key in r["methods"].get(m, {})]
                cells[group] = f"{np.median(vals):.1f}" if vals else "-"
            if cells["mt"] == "-" and cells["piped"] == "-":
                continue
            rt = runtime or next(r["methods"][m]["runtime"] for r in res["categories"] if m in r["methods"])
            lines.append(f"| {m} | {rt} | {cells['mt']} | {cells['piped']} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--categories", default="magnetic_tile," + ",".join(f"piped/{c}" for c in PIPED))
    ap.add_argument("--cse-models", type=Path, default=None, help="folder of trained CSE .onnx files to reuse")
    ap.add_argument("--train-cse", action=argparse.BooleanOptionalAction, default=True,
                    help="train a CSE model where --cse-models has none (default: yes)")
    ap.add_argument("--cse-epochs", type=int, default=30)
    ap.add_argument("--cse-out", type=Path, default=REPO / "runs" / "peers")
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--coreset-max", type=int, default=4000, help="bank size cap (greedy selection is O(patches x bank))")
    ap.add_argument("--latency-frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "peers.json")
    ap.add_argument("--merge", action="store_true", help="keep the other categories already in --json")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    args.cse_out.mkdir(parents=True, exist_ok=True)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    missing = [c for c in cats if not (args.data / c / "train").is_dir()]
    if missing:
        sys.exit(f"data not found: {', '.join(str(args.data / c) for c in missing)}")
    hw = hardware()
    res = {"schema": "inspector.peers/1", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "load_average": {"before": load_average()}, "hardware": hw, "hardware_line": describe(hw),
           "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "preprocess": "inspector.preprocess.prepare: resize 256x256 (area), centre crop 224x224", "categories": []}
    log(f"{len(cats)} categories; {res['hardware_line']}; load {res['load_average']['before']}")
    ml = MultiLevel()
    res["weights_id"] = ml.weights_id
    kept = []
    if args.merge and args.json.is_file():
        kept = [r for r in json.loads(args.json.read_text()).get("categories", []) if r["category"] not in {Path(c).name for c in cats}]
        res["categories"] = list(kept)
    from trainer.torch_eager import TorchEager
    from inspector.modelmeta import ModelMeta, Threshold

    twin = ModelMeta("twin", "-", "cse", "efficientnet_lite2", "untrained", PRE, Threshold(1, "max", 0, 0), 7, 7)
    cse_eager = TorchEager(twin, "cpu", args.threads, args.seed)
    for c in cats:
        cse_models = find_cse_models(args.cse_models)  # again for each category: models may be arriving
        if args.cse_models:
            log(f"CSE models in {args.cse_models}: {', '.join(k for k in sorted(cse_models) if k.startswith(Path(c).name + '/')) or 'none'}")
        res["categories"].append(run_category(Path(c).name, args.data / c, ml, args, cse_models, cse_eager))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))  # after every category: a partial run keeps its figures
    res["load_average"]["after"] = load_average()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    order = {"magnetic_tile": -1, **{k: i for i, k in enumerate(PIPED)}}
    res["categories"].sort(key=lambda r: order.get(r["category"], 99))
    res["markdown"] = markdown(res)
    args.json.write_text(json.dumps(res, indent=2))
    print("\n".join(res["markdown"]))
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
