"""PatchCore and PaDiM, written faithfully to their papers, on this project's EfficientNet-Lite2 features.

Both use trainer.backbones.create_backbone("efficientnet_lite2") (the same ImageNet weights, the
same normalisation inside the model, the same frozen BatchNorm as CSE), fed the same uint8 BGR
crops that inspector.preprocess.prepare makes (resize 256, centre crop 224). What is taken from
the backbone follows each paper's choice of levels, mapped from ResNet to EfficientNet-Lite2 by
stride (the features at the end of each stride level, timm's feature_info):

    stride 4 (ResNet layer1) -> blocks.1, 24 ch, 56x56
    stride 8 (layer2)        -> blocks.2, 48 ch, 28x28
    stride 16 (layer3)       -> blocks.4, 120 ch, 14x14

PatchCore (Roth et al., CVPR 2022): layer2 + layer3; each map averaged over a 3x3 neighbourhood
(stride 1), layer3 upsampled bilinearly to layer2's 28x28 and concatenated (168 dims); memory bank
of every training patch reduced by greedy k-center coreset selection on a random (Johnson-
Lindenstrauss) projection to 128 dims; a test patch's score is the L2 distance to its nearest
bank patch; the image score is the max over patches (the paper's optional re-weighting by the
neighbours' density is not applied).

PaDiM (Defard et al., ICPR 2020): layer1 + layer2 + layer3 upsampled (nearest) to 56x56 and
concatenated (192 dims), 100 of them kept at random (seeded; the paper keeps 100 of ResNet18's
448); per position a Gaussian: mean and covariance of the training images' embeddings plus
0.01 I; a test position's score is its Mahalanobis distance; the map is upsampled to the crop
(bilinear) and smoothed (Gaussian, sigma 4); the image score is its max.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainer.backbones import Backbone, create_backbone  # noqa: E402
from trainer.coreset import greedy_coreset  # noqa: E402  (the product's own, same algorithm)
from trainer.model import bgr_u8_to_rgb01  # noqa: E402

# feature_info index -> the block after which it is taken (tf_efficientnet_lite*: blocks.0,1,2,4,6)
LEVEL_BLOCK = {1: 1, 2: 2, 3: 4, 4: 6}
BATCH = 16


class MultiLevel:
    """The lite2 backbone run block by block, keeping the levels asked for (and stopping after the last)."""

    def __init__(self, backbone: Backbone | None = None, name: str = "efficientnet_lite2"):
        if backbone is None:
            backbone, self.weights_id = create_backbone(name)
        else:
            self.weights_id = ""
        self.bb = backbone.eval()

    @torch.inference_mode()
    def __call__(self, crops_u8: np.ndarray | torch.Tensor, levels: tuple[int, ...]) -> dict[int, torch.Tensor]:
        x = torch.as_tensor(crops_u8)
        f = self.bb.features
        x = (bgr_u8_to_rgb01(x) - self.bb.mean) / self.bb.std
        x = f.bn1(f.conv_stem(x))
        want = {LEVEL_BLOCK[lv]: lv for lv in levels}
        out: dict[int, torch.Tensor] = {}
        for i, block in enumerate(f.blocks):
            x = block(x)
            if i in want:
                out[want[i]] = x
                if len(out) == len(want):
                    break
        return out

    def batched(self, crops: np.ndarray, levels: tuple[int, ...]) -> dict[int, torch.Tensor]:
        parts: dict[int, list[torch.Tensor]] = {lv: [] for lv in levels}
        for i in range(0, len(crops), BATCH):
            for lv, t in self(crops[i : i + BATCH], levels).items():
                parts[lv].append(t)
        return {lv: torch.cat(v) for lv, v in parts.items()}


# ---------------------------------------------------------------------------------------- PatchCore
def patchcore_embed(feats: dict[int, torch.Tensor]) -> torch.Tensor:
    """Levels 2 and 3 -> [N, 168, 28, 28] locally aware patch features."""
    f2 = F.avg_pool2d(feats[2], 3, stride=1, padding=1)
    f3 = F.avg_pool2d(feats[3], 3, stride=1, padding=1)
    f3 = F.interpolate(f3, size=f2.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([f2, f3], dim=1)


class PatchCore:
    levels = (2, 3)

    def __init__(self, coreset_ratio: float = 0.1, coreset_max: int = 4000, proj_dim: int = 128, seed: int = 0):
        self.coreset_ratio, self.coreset_max, self.proj_dim, self.seed = coreset_ratio, coreset_max, proj_dim, seed
        self.bank: torch.Tensor | None = None

    def fit(self, feats: dict[int, torch.Tensor], log=None) -> "PatchCore":
        e = patchcore_embed(feats)
        flat = e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]).contiguous()
        n = max(1, min(int(round(len(flat) * self.coreset_ratio)), self.coreset_max, len(flat)))
        self.patches = len(flat)
        idx = greedy_coreset(flat, n, self.seed, self.proj_dim, log) if n < len(flat) else torch.arange(len(flat))
        self.bank = flat[idx].contiguous()
        self.bank_sq = (self.bank * self.bank).sum(1)
        return self

    @torch.inference_mode()
    def score(self, feats: dict[int, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """-> image scores [N], patch maps [N, 28, 28]."""
        e = patchcore_embed(feats)
        n, c, h, w = e.shape
        q = e.permute(0, 2, 3, 1).reshape(-1, c)
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ self.bank.T) + self.bank_sq
        amap = d2.min(dim=1).values.clamp_min(0).sqrt().reshape(n, h, w)
        return amap.amax(dim=(1, 2)).numpy(), amap.numpy()


# -------------------------------------------------------------------------------------------- PaDiM
def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = int(4 * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class PaDiM:
    levels = (1, 2, 3)

    def __init__(self, dims: int = 100, seed: int = 0, eps: float = 0.01, sigma: float = 4.0, out_size: int = 224):
        self.dims, self.seed, self.eps, self.sigma, self.out_size = dims, seed, eps, sigma, out_size
        self.kernel = _gaussian_kernel(sigma)

    def embed(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        size = feats[1].shape[-2:]
        e = torch.cat([feats[1]] + [F.interpolate(feats[lv], size=size, mode="nearest") for lv in (2, 3)], dim=1)
        return e[:, self.idx]

    def fit(self, feats: dict[int, torch.Tensor], log=None) -> "PaDiM":
        total = sum(feats[lv].shape[1] for lv in self.levels)
        g = torch.Generator().manual_seed(self.seed)
        self.idx = torch.randperm(total, generator=g)[: min(self.dims, total)].sort().values
        e = self.embed(feats)  # [N, d, H, W]
        n, d, h, w = e.shape
        x = e.permute(2, 3, 0, 1).reshape(h * w, n, d)  # [P, N, d]
        means, invs = [], []
        eye = self.eps * torch.eye(d, dtype=torch.float64)
        for i in range(0, h * w, 256):  # in chunks of positions: float64 covariances stay small
            c = x[i : i + 256].double()
            mu = c.mean(dim=1)
            cc = c - mu[:, None, :]
            cov = torch.bmm(cc.transpose(1, 2), cc) / max(n - 1, 1) + eye
            means.append(mu.float())
            invs.append(torch.linalg.inv(cov).float())
        self.mean, self.inv = torch.cat(means), torch.cat(invs)  # [P, d], [P, d, d]
        self.hw = (h, w)
        return self

    @torch.inference_mode()
    def score(self, feats: dict[int, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """-> image scores [N], smoothed maps [N, out_size, out_size]."""
        e = self.embed(feats)
        n, d, h, w = e.shape
        diff = e.permute(2, 3, 0, 1).reshape(h * w, n, d) - self.mean[:, None, :]  # [P, N, d]
        m2 = (torch.bmm(diff, self.inv) * diff).sum(-1).clamp_min(0)  # [P, N]: Mahalanobis squared
        amap = m2.sqrt().T.reshape(n, 1, h, w)
        amap = F.interpolate(amap, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
        k = self.kernel
        amap = F.conv2d(F.pad(amap, (len(k) // 2,) * 4, mode="reflect"), k.view(1, 1, 1, -1))
        amap = F.conv2d(amap, k.view(1, 1, -1, 1))[:, 0]
        return amap.amax(dim=(1, 2)).numpy(), amap.numpy()
