#!/usr/bin/env bash
# The main job, end to end on a fresh machine (CPU; 10 min 6 s measured on 2 cores after set-up, which
# takes about 12 minutes the first time):
#   set up the environment (install.sh), generate the synthetic data set synthvis, train VISOLO on
#   synthvis_train, evaluate it on synthvis_val (temporal mAP table, results.json), and draw its tracks
#   on a validation video (mp4 + contact sheet).
# Environment variables: OUTPUT (default output/visolo_synthvis), CONFIG (another project's synthvis
# config), and any extra arguments are config overrides passed to train_net.py (KEY VALUE ...).
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
PY=$(bash install.sh --print-python)
CONFIG=${CONFIG:-projects/VISOLO/configs/synthvis/VISOLO_R18.yaml}
OUTPUT=${OUTPUT:-output/visolo_synthvis}
PROJECT=$(dirname "$(dirname "$(dirname "$CONFIG")")")

echo "== 1/3 generating synthvis (datasets/synthvis; skipped if already there)"
"$PY" datasets/generate_synthvis.py

echo "== 2/3 training $CONFIG and evaluating on synthvis_val (output in $OUTPUT)"
"$PY" "$PROJECT/train_net.py" --config-file "$CONFIG" --resume OUTPUT_DIR "$OUTPUT" "$@"

echo "== 3/3 drawing the tracks of one validation video"
VIDEO=$(ls datasets/synthvis/valid/JPEGImages | head -n 1)
"$PY" tools/demo.py --config-file "$CONFIG" --input "datasets/synthvis/valid/JPEGImages/$VIDEO" \
  --output "$OUTPUT/demo/$VIDEO.mp4" MODEL.WEIGHTS "$OUTPUT/model_final.pth" "$@"

cat <<DONE
== done
  metrics:        $OUTPUT/log.txt (the table after training), $OUTPUT/inference/synthvis_val/metrics.json
  results.json:   $OUTPUT/inference/synthvis_val/results.json (+ results.zip, the servers' format)
  visualisation:  $OUTPUT/demo/$VIDEO.mp4 and $OUTPUT/demo/${VIDEO}_sheet.png
  model:          $OUTPUT/model_final.pth
DONE
