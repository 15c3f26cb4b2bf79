#!/usr/bin/env bash
# The main job, end to end on a fresh machine (CPU; times measured on 2 cores in README.md; set-up
# takes about 12 minutes the first time):
#   set up the environment (install.sh), generate the quick synthetic data set synthvis_quick (4
#   classes, 96x160 frames, with same-class crossings, occlusions, exits and late entries), train
#   VISOLO on synthvis_quick_train, evaluate it on synthvis_quick_val (temporal mAP table,
#   results.json), and draw its tracks on a validation video (mp4 + contact sheet).
# Environment variables: OUTPUT (default output/visolo_synthvis_quick), CONFIG (another project's
# synthvis_quick config, or a configs/synthvis/ config for the hard set synthvis), VIDEO (the
# validation video to draw; default vid0003: 4 objects, two pairs of same-class twins, a crossing, a
# full occlusion and an exit with re-entry), OMP_NUM_THREADS (default: the machine's cores; alone on
# 2 cores, 2 threads train VISOLO's quick config at 0.36 s an iteration; set 1 when other jobs share
# the cores: 0.59 s an iteration with 1 thread beside another run), and any extra arguments are
# config overrides passed to train_net.py (KEY VALUE ...).
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
PY=$(bash install.sh --print-python)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
CONFIG=${CONFIG:-projects/VISOLO/configs/synthvis_quick/VISOLO_R18.yaml}
PROJECT=$(dirname "$(dirname "$(dirname "$CONFIG")")")
case "$CONFIG" in
  */synthvis/*) DATA=synthvis; GENERATE=() ;;
  *) DATA=synthvis_quick; GENERATE=(--quick) ;;
esac
OUTPUT=${OUTPUT:-output/visolo_$DATA}
VIDEO=${VIDEO:-vid0003}

echo "== 1/3 generating $DATA (datasets/$DATA; skipped if already there)"
"$PY" datasets/generate_synthvis.py "${GENERATE[@]}" --quiet > /dev/null

echo "== 2/3 training $CONFIG and evaluating on ${DATA}_val (output in $OUTPUT)"
"$PY" "$PROJECT/train_net.py" --config-file "$CONFIG" --resume OUTPUT_DIR "$OUTPUT" "$@"

echo "== 3/3 drawing the tracks of the validation video $VIDEO"
"$PY" tools/demo.py --config-file "$CONFIG" --input "datasets/$DATA/valid/JPEGImages/$VIDEO" \
  --output "$OUTPUT/demo/$VIDEO.mp4" MODEL.WEIGHTS "$OUTPUT/model_final.pth" "$@"

echo "== result on ${DATA}_val (percent; per-category AP in $OUTPUT/log.txt)"
"$PY" -c 'import json, sys
m = json.load(open(sys.argv[1]))
keys = ["AP", "AP50", "AP75", "AR1", "AR10"]
print("| " + " | ".join(keys) + " |")
print("|" + "---|" * len(keys))
print("| " + " | ".join("%.1f" % m[k] for k in keys) + " |")' "$OUTPUT/inference/${DATA}_val/metrics.json"

cat <<DONE
== done
  metrics:        $OUTPUT/log.txt (the table after training), $OUTPUT/inference/${DATA}_val/metrics.json
  results.json:   $OUTPUT/inference/${DATA}_val/results.json (+ results.zip, the servers' format)
  visualisation:  $OUTPUT/demo/$VIDEO.mp4 and $OUTPUT/demo/${VIDEO}_sheet.png
  model:          $OUTPUT/model_final.pth
DONE
