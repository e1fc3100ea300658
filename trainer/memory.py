"""Memory bank of good embeddings: k-means centers (k = 1 is the mean, as in the paper)."""

from __future__ import annotations

import torch
from sklearn.cluster import KMeans

from inspector.errors import ConfigError


def kmeans_centers(emb: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """emb [N, C, H, W] -> centers [k, C, H, W]."""
    if k == 1:
        return emb.mean(dim=0, keepdim=True)
    if k > len(emb):
        raise ConfigError(f"clusters: {k} centers asked for, but only {len(emb)} training images")
    flat = emb.flatten(1).double().numpy()
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(flat)
    return torch.from_numpy(km.cluster_centers_).float().view(k, *emb.shape[1:])
