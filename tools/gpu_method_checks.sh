#!/usr/bin/env bash
# The GPU checks of the methods built after the shared ../shared/gpu/checks.sh was written (that file
# is read-only here): run on the GPU machine right after it, in the same call, so its wheels and the
# compiled ops are in place:
#   run(command="bash .gpu/checks.sh; bash tools/gpu_method_checks.sh", carry=[".gpu"], timeout_s=540)
# CHECKS="efficientvis_fps gmp_vis_fps" runs a subset. Each check prints the tail of its log; full
# logs go to $OUT. Targets: TeViT and EfficientVIS / GMP-VIS at least 2.5x the paper's FPS (TeViT
# 68.9, EfficientVIS 36, GMP-VIS 73.7); Video K-Net at least half of the backbone alone.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
t0=$(date +%s)
check() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  case " ${CHECKS:-all} " in *" all "*|*" $name "*) ;; *) return ;; esac
  local s=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name: rc $rc, $(( $(date +%s)-s )) s"; tail -12 "$OUT/$name.log"
}
FPS="python3 tools/benchmark_fps.py --device cuda --height 360 --width 640"
check tevit_fps 90 $FPS --config-file projects/TeViT/configs/youtubevis_2019/TeViT_MsgShifT.yaml MODEL.WEIGHTS ""
check efficientvis_fps 90 $FPS --frames 36 --config-file projects/EfficientVIS/configs/youtubevis_2019/EfficientVIS_R50.yaml MODEL.WEIGHTS ""
check video_knet_fps 90 $FPS --config-file projects/VideoKNet/configs/youtubevis_2019/VideoKNet_R50.yaml MODEL.WEIGHTS ""
check gmp_vis_fps 90 $FPS --frames 36 --config-file projects/GMP_VIS/configs/youtubevis_2019/GMP_VIS_R50.yaml MODEL.WEIGHTS ""
echo "== method checks done in $(( $(date +%s)-t0 )) s"
