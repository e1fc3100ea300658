"""Lay out the elpv-dataset package's real solar-cell images as an MVTec-style category for the demo.

Monocrystalline cells only; defect probability 0 -> good, 1 -> defective (real defects, no masks).
Usage: python deploy/demo_data.py OUT_DIR [--train 150 --test 60]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=150, help="good training images")
    ap.add_argument("--test", type=int, default=60, help="good and defective test images (each)")
    args = ap.parse_args()
    try:
        import elpv_dataset
    except ImportError:
        print("error: the demo needs the elpv-dataset package: pip install elpv-dataset", file=sys.stderr)
        return 2
    root = Path(elpv_dataset.__file__).parent / "data"
    with open(root / "labels.csv") as f:
        rows = [r for r in csv.reader(f, delimiter=" ", skipinitialspace=True) if len(r) == 3 and r[2] == "mono"]
    good = sorted(r[0] for r in rows if float(r[1]) == 0.0)
    bad = sorted(r[0] for r in rows if float(r[1]) == 1.0)
    if len(good) < args.train + args.test or len(bad) < args.test:
        print(f"error: elpv has {len(good)} good / {len(bad)} defective mono cells; asked for more", file=sys.stderr)
        return 2
    split = {
        "train/good": good[: args.train],
        "test/good": good[args.train : args.train + args.test],
        "test/defect": bad[: args.test],
    }
    for sub, names in split.items():
        folder = args.out / sub
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(root / name, folder / Path(name).name)
    print(f"demo data: {args.out} ({args.train} train/good, {args.test} test/good, {args.test} test/defect, real EL images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
