#!/usr/bin/env python
"""Generate synthvis, the synthetic YouTube-VIS-format data set (see vis_core/data/synthvis.py).

    python datasets/generate_synthvis.py                      # -> datasets/synthvis (the defaults)
    python datasets/generate_synthvis.py --num-train 200 --height 480 --width 854 --seed 1

Writes <root>/{train,valid}.json and <root>/{train,valid}/JPEGImages/<video>/<frame>.jpg. Does nothing
when <root> already holds a complete set made with the same parameters (its params.json stamp);
--force rewrites it. The registered splits synthvis_train / synthvis_val read
$DETECTRON2_DATASETS/synthvis (default ./datasets/synthvis).
"""

import argparse
import json
import logging
import sys

from vis_core.data.synthvis import default_synthvis_root, generate_synthvis


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        default=default_synthvis_root(),
        help="output folder (default: $DETECTRON2_DATASETS/synthvis, i.e. datasets/synthvis)",
    )
    parser.add_argument("--num-train", type=int, default=48, help="training videos")
    parser.add_argument("--num-val", type=int, default=12, help="validation videos")
    parser.add_argument("--height", type=int, default=360, help="frame height (pixels)")
    parser.add_argument("--width", type=int, default=640, help="frame width (pixels)")
    parser.add_argument("--min-frames", type=int, default=10, help="shortest video (frames)")
    parser.add_argument("--max-frames", type=int, default=60, help="longest video (frames)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same set)")
    parser.add_argument("--force", action="store_true", help="rewrite an existing complete set")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = generate_synthvis(
        args.root,
        num_train_videos=args.num_train,
        num_val_videos=args.num_val,
        height=args.height,
        width=args.width,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        seed=args.seed,
        force=args.force,
        progress=not args.quiet,
    )
    if result["skipped"]:
        print(f"synthvis: {args.root} is complete with these parameters; nothing to do (--force)")
    else:
        print(f"synthvis: wrote {args.root} in {result['seconds']:.1f} s")
    print(json.dumps(result["stats"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
