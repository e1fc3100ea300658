"""Patch head: image AUROC against memory-bank size (and feature projection), on one category.

    .venv/bin/python benchmarks/bank_sweep.py ../shared/data/magnetic_tile \
        --dims 0,128 --sizes 1500,budget,10000,0 --sigmas 0,1.5 --json benchmarks/results/bank_sweep.json

Uses the trainer's own pieces (same backbone, preprocessing, split, fused 3x3-averaged patches,
principal axes, greedy coreset), so each row is what `inspector train --scoring patch` scores with
`bank_size: N` and `bank_dims: D` in its config, without exporting a model per row. Size 0 = the
whole bank (every patch). Dims 0 = the raw channels; D > 0 projects the patches onto their D
leading principal axes first (a MatMul in the graph), which buys C/D more bank entries for the same
scoring cost. --bank-from all (the trainer's default) banks every good image, train the training
split only. --sigmas: the distance-map smoothing (`map_sigma`) of each row. The scoring cost of
each row is given as a fraction of the backbone's FLOPs. Writes a PNG of AUROC against that cost.
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

from inspector.bench.hardware import load_average  # noqa: E402
from inspector.dataset import test_items, train_images  # noqa: E402
from inspector.modelmeta import Preprocess  # noqa: E402
from trainer.backbones import create_backbone  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.coreset import backbone_flops, bank_size_for_budget, greedy_coreset  # noqa: E402
from trainer.model import PatchHead, gaussian_smoothing, principal_axes  # noqa: E402
from trainer.train import backbone_features, head_scores, load_crops, patch_rows, split  # noqa: E402


def log(msg: str) -> None:
    print(f"[bank_sweep {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--backbone", default="efficientnet_lite2")
    ap.add_argument("--sizes", default="1500,budget,10000,0", help="bank sizes; 0 = every patch, budget = the trainer's default (bank_budget)")
    ap.add_argument("--dims", default="0,128", help="principal axes to project on; 0 = the raw channels")
    ap.add_argument("--sigmas", default="0,1.5", help="distance-map smoothing, in map positions; 0 = none")
    ap.add_argument("--bank-from", choices=("all", "train"), default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    pre = Preprocess(256, 256, 224, 224, "area")
    backbone, weights_id = create_backbone(args.backbone)
    goods = train_images(args.data)
    tr = np.arange(len(goods)) if args.bank_from == "all" else split(len(goods), 0.3, args.seed)[0]
    items = test_items(args.data)
    labels = np.array([it.is_anomalous for it in items], dtype=int)
    t0 = time.time()
    all_train = patch_rows(backbone_features(backbone, load_crops([goods[i] for i in tr], pre), "cpu"), np.arange(len(tr)))
    test_feats = backbone_features(backbone, load_crops([it.path for it in items], pre), "cpu")
    log(f"features of {len(tr)} good images for the bank and {len(items)} test images in {time.time() - t0:.0f}s")
    flops = backbone_flops(backbone, 224)
    positions, channels = len(all_train) // len(tr), all_train.shape[1]
    h, w = test_feats[0].shape[-2:]
    sigmas = [float(x) for x in args.sigmas.split(",")]

    spaces = []
    for d in (int(x) for x in args.dims.split(",")):
        spaces.append((channels, None) if d <= 0 or d >= channels else (d, principal_axes(all_train, d)))

    rows = []
    for dim, pca in spaces:
        tr_x = all_train if pca is None else (all_train - pca[0]) @ pca[1]
        for token in args.sizes.split(","):
            size = (bank_size_for_budget(backbone, 224, channels, positions, TrainConfig.bank_budget, dim if pca else 0)
                    if token == "budget" else int(token))
            m = len(tr_x) if size <= 0 or size >= len(tr_x) else size
            t0 = time.time()
            idx = torch.arange(len(tr_x)) if m == len(tr_x) else greedy_coreset(tr_x, m, args.seed)
            t_core = time.time() - t0
            cost = 2 * positions * (m * dim + (channels * dim if pca else 0)) / flops
            for sigma in sigmas:
                # the product's own head; one image at a time: a whole bank x 32 images would not fit in memory
                head = PatchHead(tr_x[idx], *((pca[1], pca[0]) if pca else (None, None)), gaussian_smoothing(h, w, sigma))
                auroc = float(roc_auc_score(labels, head_scores(head, test_feats, batch=1)))
                rows.append({"dims": dim, "pca": pca is not None, "bank": m, "of": len(tr_x), "map_sigma": sigma,
                             "image_auroc": round(auroc, 4), "cost_vs_backbone": round(cost, 3), "coreset_s": round(t_core, 1)})
                log(f"dims {dim:4d} bank {m:6d} sigma {sigma:g}: AUROC {auroc:.4f}, scoring {100 * cost:.0f}% of the backbone, "
                    f"coreset {t_core:.0f}s")

    print("| features | bank entries | scoring FLOPs vs backbone | " + " | ".join(f"AUROC, map_sigma {s:g}" for s in sigmas) + " |")
    print("|---|---|---|" + "---|" * len(sigmas))
    for k in range(0, len(rows), len(sigmas)):  # one line per bank: its rows, one per sigma, are consecutive
        r, same = rows[k], rows[k : k + len(sigmas)]
        feat = f"PCA {r['dims']}" if r["pca"] else f"raw {r['dims']}"
        bank = f"{r['bank']} (all)" if r["bank"] == r["of"] else str(r["bank"])
        print(f"| {feat} | {bank} | {100 * r['cost_vs_backbone']:.0f}% | " + " | ".join(f"{q['image_auroc']:.4f}" for q in same) + " |")
    result = {"data": str(args.data), "backbone": args.backbone, "weights": weights_id, "bank_from": args.bank_from, "bank_images": int(len(tr)),
              "test_images": len(items), "backbone_gflops": round(flops / 1e9, 3), "load_average": load_average(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    png = args.png or (args.json.with_suffix(".png") if args.json else None)
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for dim, pca in spaces:
            for sigma in sigmas:
                rs = [r for r in rows if r["dims"] == dim and r["pca"] == (pca is not None) and r["map_sigma"] == sigma]
                ax.plot([100 * r["cost_vs_backbone"] for r in rs], [r["image_auroc"] for r in rs], "o-",
                        label=(f"PCA {dim}" if pca else f"raw {dim}") + f", map_sigma {sigma:g}")
        ax.set_xscale("log")
        ax.set_xlabel("scoring FLOPs, % of the backbone")
        ax.set_ylabel("image AUROC")
        ax.set_title(f"patch head bank size, {Path(args.data).name}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        log(f"wrote {png}")


if __name__ == "__main__":
    main()
