"""Finding images in an MVTec-AD layout category folder, or in a plain folder of good images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InspectorError
from .images import is_image_file


@dataclass(frozen=True)
class TestItem:
    path: Path
    defect: str  # "good" or the defect folder's name
    mask: Path | None

    @property
    def is_anomalous(self) -> bool:
        return self.defect != "good"


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def train_images(data: str | Path) -> list[Path]:
    """DATA/train/good/* for an MVTec category, else the images directly in DATA."""
    data = Path(data)
    if not data.exists():
        raise InspectorError(f"{data}: no such folder")
    if not data.is_dir():
        raise InspectorError(f"{data}: not a folder (expected an MVTec category or a folder of good images)")
    folder = data / "train" / "good"
    if not folder.is_dir():
        folder = data
    images = list_images(folder)
    if not images:
        raise InspectorError(f"{folder}: no images found (expected {data}/train/good/*.png or images directly in {data})")
    return images


def test_items(data: str | Path) -> list[TestItem]:
    """DATA/test/<defect>/*, with DATA/ground_truth/<defect>/<stem>_mask.png where present."""
    data = Path(data)
    test = data / "test"
    if not test.is_dir():
        raise InspectorError(f"{data}: no test/ folder (expected the MVTec layout test/good, test/<defect>)")
    items: list[TestItem] = []
    for folder in sorted(p for p in test.iterdir() if p.is_dir()):
        for img in list_images(folder):
            mask = data / "ground_truth" / folder.name / f"{img.stem}_mask.png"
            items.append(TestItem(img, folder.name, mask if mask.is_file() else None))
    if not items:
        raise InspectorError(f"{test}: no images found in its sub-folders")
    if not any(it.defect == "good" for it in items):
        raise InspectorError(f"{test}/good: missing or empty; evaluation needs good test images")
    return items


test_items.__test__ = False  # a library function, not a pytest test
