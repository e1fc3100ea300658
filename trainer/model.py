"""The CSE networks: embedder, frozen random decoder, cosine scoring head, and the fused inference model."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import Backbone, fuse

EMBED_DIM = 64


def _block(cin: int, cout: int) -> list[nn.Module]:
    # The paper's order: 1x1 conv (no bias) -> ReLU -> BatchNorm.
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]


class Embedder(nn.Module):
    """Fused features (C3 + C4) x 14 x 14 -> 64 x 14 x 14 (pre-pool) -> 64 x 7 x 7 (pooled)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.convs = nn.Sequential(*_block(in_ch, in_ch // 2), *_block(in_ch // 2, in_ch // 4), *_block(in_ch // 4, EMBED_DIM))
        self.pool = nn.AvgPool2d(2)

    def forward(self, f3: torch.Tensor, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.convs(fuse(f3, f4))
        return pre, self.pool(pre)


class Decoder(nn.Module):
    """Random, frozen, never trained: reconstructing the backbone maps from the embedding stops the
    embedding collapsing to a constant (paper section 3.4)."""

    def __init__(self, c3: int, c4: int):
        super().__init__()
        self.to3 = nn.Sequential(*_block(EMBED_DIM, c3 // 2), *_block(c3 // 2, c3))
        self.to4 = nn.Sequential(*_block(EMBED_DIM, c4 // 2), nn.MaxPool2d(2), *_block(c4 // 2, c4))
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "Decoder":
        return super().train(False)  # frozen, BatchNorm included

    def forward(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to3(pre), self.to4(pre)


def decoder_loss(feats: tuple[torch.Tensor, torch.Tensor], recon: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per level: 0.5 * ||normalize(F) - normalize(R)||^2 over channels, mean over positions; summed over levels."""
    total = torch.zeros((), device=feats[0].device)
    for f, r in zip(feats, recon):
        total = total + 0.5 * (F.normalize(f, dim=1) - F.normalize(r, dim=1)).pow(2).sum(1).mean()
    return total


def channel_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine over channels at each position, averaged over positions: [N, C, H, W] x2 -> [N].
    The same cosine the scoring head uses, so training optimises what inference measures."""
    return F.cosine_similarity(a, b, dim=1).mean(dim=(1, 2))


def width_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reference code's variant, along the image-width axis; kept only to measure it (README)."""
    return F.cosine_similarity(a, b, dim=3).mean(dim=(1, 2))


COSINES = {"channels": channel_cosine, "width": width_cosine}


def contrastive_loss(e_k: torch.Tensor, e_m: torch.Tensor, defected: torch.Tensor, cosine: str = "channels") -> torch.Tensor:
    """1 - cos for a good pair, 1 + cos for a (good, defected) pair (paper's form)."""
    cos = COSINES[cosine](e_k, e_m)
    return torch.where(defected, 1 + cos, 1 - cos).mean()


def l2_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """F.normalize without its shape-dependent Expand, so the exported graph stays static."""
    return x * torch.rsqrt((x * x).sum(dim=dim, keepdim=True).clamp_min(eps * eps))


class CosineHead(nn.Module):
    """Score = min over centers of the mean over positions of (1 - cosine over channels)."""

    def __init__(self, centers: torch.Tensor):
        super().__init__()
        # Normalised once here so the graph holds a single dot product per position.
        self.register_buffer("centers", l2_normalize(centers.float()))  # [K, 64, 7, 7]
        self.register_buffer("center_ids", torch.arange(len(centers)))

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = 1.0 - (l2_normalize(emb).unsqueeze(1) * self.centers.unsqueeze(0)).sum(dim=2)  # [N, K, 7, 7]
        per_center = dist.mean(dim=(2, 3))  # [N, K]
        score = per_center.min(dim=1).values
        # The nearest center's map via a one-hot product: static ops only (no Gather on dynamic shapes).
        nearest = (per_center.argmin(dim=1, keepdim=True) == self.center_ids).to(dist.dtype)  # [N, K]
        amap = (dist * nearest[:, :, None, None]).sum(dim=1)
        return score, amap


class CSEHead(nn.Module):
    """The paper's head: embedder, 2x2 pooling, cosine distance to the nearest k-means center."""

    def __init__(self, embedder: Embedder, centers: torch.Tensor):
        super().__init__()
        self.embedder, self.cosine = embedder, CosineHead(centers)

    def forward(self, f3: torch.Tensor, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cosine(self.embedder(f3, f4)[1])


def patch_features(f3: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
    """Fused backbone features, each position averaged with its 3x3 neighbourhood: [N, C3 + C4, 14, 14]."""
    return F.avg_pool2d(fuse(f3, f4), 3, stride=1, padding=1, count_include_pad=False)


class PatchHead(nn.Module):
    """Distance of every position to its nearest memory-bank patch, smoothed; score = the largest (the worst spot).

    Patches are first projected onto their leading principal axes (`proj` [C, D], `mean` [C]), a
    MatMul that lets a bank of the same scoring cost hold C/D times more entries, and drops the
    low-variance directions that carry mostly noise (benchmarks/bank_sweep.py measures both).
    The distance map is then smoothed (`smooth` [h*w, h*w], see gaussian_smoothing) before its
    maximum is taken: a lone far patch is more often noise on a good surface than a defect, which
    covers neighbouring positions too. Plain MatMul + ReduceMin with static shapes, so TensorRT
    takes it as is; the smoothing is a MatMul too, not a Conv, so it stays in the FP32 head region
    (build_engine/fp16.py). Distances stay FP32.
    """

    def __init__(self, bank: torch.Tensor, proj: torch.Tensor | None = None, mean: torch.Tensor | None = None,
                 smooth: torch.Tensor | None = None):
        super().__init__()
        bank = bank.float()
        if proj is None:
            self.proj = None
        else:  # (x - mean) @ proj == x @ proj - mean @ proj: one MatMul and a constant
            self.register_buffer("proj", proj.float().contiguous())  # [C, D]
            self.register_buffer("proj_bias", -(mean.float() @ proj.float()))  # [D]
        self.register_buffer("bank_t", bank.t().contiguous())  # [D, M]
        self.register_buffer("bank_sq", (bank * bank).sum(1))  # [M]
        if smooth is None:
            self.smooth_t = None
        else:
            self.register_buffer("smooth_t", smooth.float().t().contiguous())  # [h*w, h*w]

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        return flat if self.proj is None else flat @ self.proj + self.proj_bias

    def forward(self, f3: torch.Tensor, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = patch_features(f3, f4)
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        flat = self.project(x.permute(0, 2, 3, 1).reshape(-1, c))  # [N*h*w, D]
        # ||x - b||^2 = ||x||^2 - 2 x.b + ||b||^2, nearest over the bank
        d2 = (flat * flat).sum(1, keepdim=True) - 2.0 * (flat @ self.bank_t) + self.bank_sq
        dist = d2.min(dim=1).values.clamp_min(0.0).sqrt().reshape(-1, h * w)
        if self.smooth_t is not None:
            if self.smooth_t.shape[0] != h * w:
                raise ValueError(f"smoothing built for {self.smooth_t.shape[0]} positions, the map has {h}x{w}")
            dist = dist @ self.smooth_t
        amap = dist.reshape(-1, h, w)
        return amap.amax(dim=(1, 2)), amap


def gaussian_smoothing(h: int, w: int, sigma: float) -> torch.Tensor | None:
    """[h*w, h*w]: row p holds the Gaussian weights (sigma in map positions) of every position
    around p, renormalised to sum 1 where the window leaves the map, so border positions are not
    pulled down. None for sigma 0 (no smoothing)."""
    if sigma <= 0:
        return None

    def axis(n: int) -> torch.Tensor:
        r = torch.arange(n, dtype=torch.float64)
        g = torch.exp(-((r[:, None] - r[None, :]) ** 2) / (2.0 * sigma * sigma))
        return g / g.sum(1, keepdim=True)

    return torch.kron(axis(h), axis(w)).float()  # separable: the 2-D window's sum is the product of the 1-D sums


def principal_axes(x: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [C] and the `dims` leading principal axes [C, dims] of rows x [N, C] (exact, in float64)."""
    mean = x.double().mean(0)
    xc = x.double() - mean
    _, vecs = torch.linalg.eigh(xc.t() @ xc)  # ascending eigenvalues
    axes = vecs.flip(1)[:, :dims]
    axes = axes * torch.where(axes.sum(0) < 0, -1.0, 1.0)  # a fixed sign per axis: the same model every run
    return mean.float(), axes.float()


class InferenceModel(nn.Module):
    """The one exported graph: uint8 BGR [N, H, W, 3] -> score [N], anomaly_map [N, h, w].

    Channel order, scaling and normalisation live here, not on the host, so every runtime
    (onnxruntime, TensorRT) feeds the same bytes OpenCV delivers. The head (CSEHead or PatchHead)
    takes the backbone's two feature maps.
    """

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, image_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backbone(bgr_u8_to_rgb01(image_u8))

    def forward(self, image_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(*self.features(image_u8))


def bgr_u8_to_rgb01(image_u8: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] uint8 BGR -> [N, 3, H, W] float RGB in [0, 1]."""
    x = image_u8.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    return torch.flip(x, dims=[1])
