"""Training configuration: defaults here, then a YAML file, then command-line flags."""

from __future__ import annotations

from dataclasses import dataclass

from inspector.configfile import require
from trainer.backbones import REGISTRY

THRESHOLD_METHODS = ("frr", "max", "sigma")
SCORINGS = ("cse", "patch", "auto")


@dataclass
class TrainConfig:
    scoring: str = "cse"  # cse (the paper's), patch (memory bank of patches), auto (both, pick by validation)
    backbone: str = "efficientnet_lite2"
    weights: str | None = None  # a weights file; None -> the backbone's offline package (or timm online)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 4e-4  # Adam; the one-cycle peak is 10x this (reference code)
    weight_decay: float = 1e-5
    alpha: float = 10.0  # weight of the contrastive loss against the decoder loss
    cosine: str = "channels"  # contrastive cosine: over channels per position; "width" = the reference code's axis
    defect_prob: float = 0.5
    clusters: int = 1  # k-means centers of good embeddings (k = 1 in the paper: the mean)
    val_fraction: float = 0.3
    anomaly_source: str | None = None  # folder of texture images (e.g. DTD); None -> built-in generator
    device: str = "cpu"
    seed: int = 0
    category: str | None = None  # defaults to the data folder's name
    resize: int = 256
    crop: int = 224
    interpolation: str = "area"
    threshold_method: str = "frr"
    threshold_param: float = 0.01  # target false-reject rate for "frr"; margin for "max"; k for "sigma"
    threads: int = 0  # torch CPU threads; 0 = all cores
    bank_size: int = 0  # patch head: memory-bank entries; 0 = sized so scoring costs bank_budget x the backbone
    bank_budget: float = 0.25
    bank_dims: int = 128  # patch head: principal axes the patches are projected on; 0 (or >= the channels) = raw
    # patch head: "all" = the shipped bank holds every good image's patches, the held-out ones
    # included once they have set the threshold against the training split's bank; "train" = never them.
    bank_from: str = "all"
    map_sigma: float = 1.5  # patch head: Gaussian smoothing of the distance map before its max, in map positions; 0 = none

    def validate(self, source: str) -> None:
        require(self.scoring in SCORINGS, source, "scoring", f"must be one of {SCORINGS}")
        require(self.bank_size >= 0, source, "bank_size", "must be >= 0 (0 = sized by bank_budget)")
        require(0 < self.bank_budget <= 4, source, "bank_budget", "must be in (0, 4]")
        require(self.bank_dims >= 0, source, "bank_dims", "must be >= 0 (0 = the raw channels)")
        require(self.bank_from in ("all", "train"), source, "bank_from", "must be all or train")
        require(self.map_sigma == 0 or 0.05 <= self.map_sigma <= 8, source, "map_sigma",
                "must be 0 (no smoothing) or in [0.05, 8] map positions (below 0.05 the window is a single position)")
        require(self.backbone in REGISTRY, source, "backbone", f"{self.backbone!r} is not one of {sorted(REGISTRY)}")
        require(self.cosine in ("channels", "width"), source, "cosine", "must be channels or width")
        require(self.epochs >= 1, source, "epochs", "must be >= 1")
        require(self.batch_size >= 2, source, "batch_size", "must be >= 2")
        require(self.lr > 0, source, "lr", "must be > 0")
        require(self.weight_decay >= 0, source, "weight_decay", "must be >= 0")
        require(0 <= self.defect_prob <= 1, source, "defect_prob", "must be in [0, 1]")
        require(self.clusters >= 1, source, "clusters", "must be >= 1")
        require(0.05 <= self.val_fraction <= 0.9, source, "val_fraction", "must be in [0.05, 0.9]")
        require(self.device in ("cpu", "cuda"), source, "device", "must be cpu or cuda")
        require(32 <= self.crop <= self.resize, source, "crop", f"must be in [32, resize={self.resize}]")
        require(self.crop % 32 == 0, source, "crop", "must be a multiple of 32 (the backbone's stride)")
        require(self.interpolation in ("area", "linear", "cubic"), source, "interpolation", "must be area, linear or cubic")
        require(self.threshold_method in THRESHOLD_METHODS, source, "threshold_method", f"must be one of {THRESHOLD_METHODS}")
        if self.threshold_method == "frr":
            require(0 < self.threshold_param < 0.5, source, "threshold_param", "a target false-reject rate in (0, 0.5)")
        else:
            require(self.threshold_param >= 0, source, "threshold_param", "must be >= 0")
        require(self.threads >= 0, source, "threads", "must be >= 0")
