"""Memory bank for the patch head: greedy coreset subsampling, sized by a compute budget."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def greedy_coreset(x: torch.Tensor, m: int, seed: int = 0, proj_dim: int = 128, log=None) -> torch.Tensor:
    """Indices of m rows of x [N, C] chosen by greedy k-center (each pick the farthest from those
    picked so far), on a random projection to proj_dim dimensions as PatchCore does, for speed."""
    n = len(x)
    if m >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    if x.shape[1] > proj_dim:
        x = x @ (torch.randn(x.shape[1], proj_dim, generator=g) / proj_dim**0.5)
    picked = torch.empty(m, dtype=torch.long)
    picked[0] = torch.randint(n, (1,), generator=g)
    nearest = torch.cdist(x, x[picked[:1]]).squeeze(1)
    for i in range(1, m):
        picked[i] = torch.argmax(nearest)
        nearest = torch.minimum(nearest, torch.cdist(x, x[picked[i : i + 1]]).squeeze(1))
        if log and i % 1000 == 0:
            log(f"[coreset] {i}/{m}")
    return picked


@torch.no_grad()
def bank_size_for_budget(backbone: torch.nn.Module, crop: int, channels: int, positions: int, fraction: float) -> int:
    """The bank size whose nearest-neighbour MatMul costs `fraction` of the backbone's FLOPs."""
    counter = FlopCounterMode(display=False)
    with counter:
        backbone(torch.zeros(1, 3, crop, crop))
    per_entry = 2 * positions * channels  # multiply-adds of one bank column against every position
    return max(64, int(fraction * counter.get_total_flops() / per_entry))
