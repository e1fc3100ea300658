"""--scoring auto: which head ships, judged on held-out goods against probe defects on them.

With 10 held-out images (a 32-image category) the two heads' probe AUROCs often differ by less
than the validation can resolve, and picking the higher one then picks by noise (on PIPED it was
wrong on 4 of 8 classes). So the difference is bootstrapped over the held-out images (each image
with its probes, paired across the heads), and it decides only when its 90 % interval excludes
0. Otherwise the patch head ships: it has no trained part that can go wrong, and its 14x14 map
localises more finely than CSE's 7x7.
"""

from __future__ import annotations

import numpy as np

METHOD = "held-out goods vs probe defects on them (scratch, spot, cut-paste), image AUROC"
UNDECIDED = "patch"  # the head that ships when the probes cannot tell the two apart


def auroc(good: np.ndarray, bad: np.ndarray) -> float:
    """P(a bad image scores above a good one), ties counting half (Mann-Whitney)."""
    g = np.sort(good)
    below = np.searchsorted(g, bad, side="left")
    not_above = np.searchsorted(g, bad, side="right")
    return float((below + not_above).sum() / (2.0 * len(g) * len(bad)))


def choose(good: dict[str, np.ndarray], bad: dict[str, np.ndarray], draws: int = 2000, seed: int = 0) -> dict:
    """good[head]: scores of the n held-out goods; bad[head]: of their probes, family-major
    (k * n + i is image i's k-th probe, as probe_batch makes them). Returns the metadata record."""
    a, b = "cse", "patch"
    n = len(good[a])
    families = len(bad[a]) // n
    figures = {h: auroc(good[h], bad[h]) for h in sorted(good)}
    rng = np.random.default_rng(seed)
    diffs = np.empty(draws)
    for k in range(draws):
        idx = rng.integers(0, n, n)
        probes = (np.arange(families)[:, None] * n + idx[None, :]).ravel()
        diffs[k] = auroc(good[a][idx], bad[a][probes]) - auroc(good[b][idx], bad[b][probes])
    lo, hi = (float(v) for v in np.quantile(diffs, [0.05, 0.95]))
    if lo > 0 or hi < 0:
        chosen = a if lo > 0 else b
        reason = f"{chosen} is better on the probes (90 % interval of cse - patch: {lo:+.3f} .. {hi:+.3f})"
    else:
        chosen = UNDECIDED
        reason = (f"the probes cannot tell them apart (90 % interval of cse - patch: {lo:+.3f} .. {hi:+.3f}, "
                  f"over {n} held-out images): {UNDECIDED}, the head without a trained part")
    return {"method": METHOD, "synthetic_auroc": figures, "cse_minus_patch_90": [round(lo, 4), round(hi, 4)],
            "chosen": chosen, "reason": reason}
