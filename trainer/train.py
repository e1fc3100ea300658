"""The CSE training loop: one readable loop over contrastive pairs, then k-means and calibration.

Good images' backbone features are computed once and cached (the backbone is frozen); defected
images change every step, so their features are computed on the fly, without gradients.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inspector import __version__
from inspector.calibration import calibrate, score_stats
from inspector.dataset import train_images
from inspector.errors import InspectorError
from inspector.images import read_image
from inspector.modelmeta import ModelMeta, Preprocess
from inspector.preprocess import prepare

from .anomalies import AnomalySynth, TextureSource
from .backbones import create_backbone
from .config import TrainConfig
from .memory import kmeans_centers
from .model import CosineHead, Decoder, Embedder, InferenceModel, contrastive_loss, decoder_loss

FEATURE_BATCH = 16


@dataclass
class TrainResult:
    model: InferenceModel
    meta: ModelMeta
    history: list[dict[str, float]] = field(default_factory=list)
    val_images: list[Path] = field(default_factory=list)


def load_crops(paths: list[Path], pre: Preprocess) -> np.ndarray:
    """All images, preprocessed exactly as the agent will: uint8 [N, crop, crop, 3] BGR."""
    return np.stack([prepare(read_image(p), pre) for p in paths])


@torch.inference_mode()
def backbone_features(model: InferenceModel, crops: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    outs3, outs4 = [], []
    for i in range(0, len(crops), FEATURE_BATCH):
        f3, f4 = model.features(torch.from_numpy(crops[i : i + FEATURE_BATCH]).to(device))
        outs3.append(f3)
        outs4.append(f4)
    return torch.cat(outs3), torch.cat(outs4)


@torch.inference_mode()
def embed(model: InferenceModel, feats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    model.embedder.eval()
    return torch.cat([model.embedder(feats[0][i : i + 64], feats[1][i : i + 64])[1] for i in range(0, len(feats[0]), 64)])


def defect_batch(synth: AnomalySynth, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([synth(c, rng)[0] for c in crops])


def other_index(n: int, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each k, a uniformly drawn different index in [0, n)."""
    m = rng.integers(0, n - 1, size=len(k))
    return m + (m >= k)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def pair_loss(model: InferenceModel, decoder: Decoder, fk, fm, defected, alpha: float) -> tuple[torch.Tensor, float, float]:
    pre_k, e_k = model.embedder(*fk)
    _, e_m = model.embedder(*fm)
    rec = decoder_loss(fk, decoder(pre_k))
    con = contrastive_loss(e_k, e_m, defected)
    return rec + alpha * con, rec.item(), con.item()


def train(data: str | Path, cfg: TrainConfig, log=print) -> TrainResult:
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InspectorError("device: cuda was asked for, but torch sees no CUDA GPU here")
    dev = cfg.device
    rng = np.random.default_rng(cfg.seed)

    paths = train_images(data)
    if len(paths) < 6:
        raise InspectorError(f"{data}: only {len(paths)} good images; training needs at least 6 (4 to train, 2 to validate)")
    category = cfg.category or Path(data).resolve().name
    pre = Preprocess(cfg.resize, cfg.resize, cfg.crop, cfg.crop, cfg.interpolation)
    log(f"[train] {category}: {len(paths)} good images, backbone {cfg.backbone}, {cfg.epochs} epochs")

    backbone, weights_id = create_backbone(cfg.backbone, cfg.weights, cfg.crop)
    c3, c4 = backbone.channels
    model = InferenceModel(backbone, Embedder(c3 + c4), CosineHead(torch.zeros(1, 64, cfg.crop // 32, cfg.crop // 32))).to(dev)
    decoder = Decoder(c3, c4).to(dev)
    textures = TextureSource.from_folder(cfg.anomaly_source) if cfg.anomaly_source else TextureSource.builtin()
    synth = AnomalySynth(textures)

    crops = load_crops(paths, pre)
    tr, va = split(len(paths), cfg.val_fraction, cfg.seed)
    t0 = time.time()
    f3, f4 = backbone_features(model, crops, dev)
    log(f"[train] cached backbone features of {len(crops)} images in {time.time() - t0:.1f}s "
        f"({len(tr)} train / {len(va)} validation)")

    # Fixed validation pairs, defects drawn once: a stable yardstick for picking the checkpoint.
    vrng = np.random.default_rng(cfg.seed + 1)
    v_k = np.arange(len(va))
    v_m = other_index(len(va), v_k, vrng)
    v_def = vrng.random(len(va)) < cfg.defect_prob
    vf3, vf4 = f3[va], f4[va]
    vm3, vm4 = vf3[v_m].clone(), vf4[v_m].clone()
    if v_def.any():
        d3, d4 = backbone_features(model, defect_batch(synth, crops[va][v_m[v_def]], vrng), dev)
        vm3[torch.from_numpy(v_def)], vm4[torch.from_numpy(v_def)] = d3, d4
    v_def_t = torch.from_numpy(v_def).to(dev)

    steps = math.ceil(len(tr) / cfg.batch_size)
    opt = torch.optim.Adam(model.embedder.parameters(), lr=cfg.lr, betas=(0.5, 0.999), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=10 * cfg.lr, total_steps=cfg.epochs * steps)
    best = (math.inf, -1, None)
    history: list[dict[str, float]] = []
    bar = tqdm(total=cfg.epochs * steps, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True,
               disable=os.environ.get("INSPECTOR_NO_PROGRESS") == "1")
    for epoch in range(1, cfg.epochs + 1):
        model.embedder.train()  # every epoch: validation left it in eval mode (the reference code's bug)
        order = rng.permutation(len(tr))
        sums = np.zeros(3)
        for s in range(steps):
            k = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            if len(k) < 2:  # BatchNorm needs at least two samples
                continue
            m = other_index(len(tr), k, rng)
            defected = rng.random(len(k)) < cfg.defect_prob
            gk, gm = tr[k], tr[m]
            fm3, fm4 = f3[gm].clone(), f4[gm].clone()
            if defected.any():
                d3, d4 = backbone_features(model, defect_batch(synth, crops[gm[defected]], rng), dev)
                fm3[torch.from_numpy(defected)], fm4[torch.from_numpy(defected)] = d3, d4
            loss, rec, con = pair_loss(model, decoder, (f3[gk], f4[gk]), (fm3, fm4), torch.from_numpy(defected).to(dev), cfg.alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += (loss.item(), rec, con)
            bar.update(1)
        model.embedder.eval()
        with torch.no_grad():
            val, _, _ = pair_loss(model, decoder, (vf3, vf4), (vm3, vm4), v_def_t, cfg.alpha)
        val = float(val)
        row = {"epoch": epoch, "loss": sums[0] / steps, "rec": sums[1] / steps, "con": sums[2] / steps, "val_loss": val}
        history.append(row)
        if val < best[0]:
            best = (val, epoch, copy.deepcopy(model.embedder.state_dict()))
        bar.set_postfix(epoch=f"{epoch}/{cfg.epochs}", loss=f"{row['loss']:.4f}", val=f"{val:.4f}", best=best[1])
    bar.close()
    model.embedder.load_state_dict(best[2])
    model.embedder.eval()
    t_train = time.time() - t_start

    # Memory bank from the training split; threshold from the held-out validation goods only.
    emb_tr = embed(model, (f3[tr], f4[tr]))
    model.head = CosineHead(kmeans_centers(emb_tr, cfg.clusters, cfg.seed)).to(dev)
    with torch.inference_mode():
        val_scores = model.head(embed(model, (vf3, vf4)))[0].cpu().numpy()
    thr = calibrate(val_scores, cfg.threshold_method, cfg.threshold_param)

    meta = ModelMeta(
        model_id=f"{category}-{cfg.backbone}-cse-{time.strftime('%Y%m%dT%H%M%S')}",
        category=category,
        head="cse",
        backbone=cfg.backbone,
        weights_id=weights_id,
        preprocess=pre,
        threshold=thr,
        map_h=cfg.crop // 32,
        map_w=cfg.crop // 32,
        good_scores=score_stats(val_scores),
        training={**asdict(cfg), "data": str(data), "train_images": int(len(tr)), "val_images": int(len(va)),
                  "best_epoch": best[1], "best_val_loss": best[0], "seconds": round(t_train, 1)},
        software=software_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    log(f"[train] done in {t_train:.0f}s: best epoch {best[1]} (val loss {best[0]:.4f}); "
        f"threshold {thr.value:.5f} ({thr.method}, {thr.param:g}, on {thr.n_images} held-out goods); "
        f"held-out good scores mean {meta.good_scores['mean']:.5f} max {meta.good_scores['max']:.5f}")
    return TrainResult(model.cpu().eval(), meta, history, [paths[i] for i in va])


def software_versions() -> dict[str, str]:
    import timm

    return {"inspector": __version__, "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__}
