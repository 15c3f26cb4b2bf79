#!/usr/bin/env python
"""Generate synthvis, the synthetic YouTube-VIS-format data set (see vis_core/data/synthvis.py).

    python datasets/generate_synthvis.py                      # -> datasets/synthvis (the hard set)
    python datasets/generate_synthvis.py --quick              # -> datasets/synthvis_quick
    python datasets/generate_synthvis.py --num-train 200 --height 480 --width 854 --seed 1

The hard set (the default) is the long-run benchmark: 7 classes told apart only by shape and
texture, textured panning backgrounds. --quick (same as --variant quick) writes the quick set: 4 classes of
distinct shapes and solid colours on a plain static background, 96x160 frames, short videos, with
the same crossings, occlusions, exits and late entries; a small model learns it in minutes.

Writes <root>/{train,valid}.json and <root>/{train,valid}/JPEGImages/<video>/<frame>.jpg. Does nothing
when <root> already holds a complete set made with the same parameters (its params.json stamp);
--force rewrites it. The registered splits synthvis_train / synthvis_val read
$DETECTRON2_DATASETS/synthvis, synthvis_quick_train / synthvis_quick_val read
$DETECTRON2_DATASETS/synthvis_quick (default ./datasets/...).
"""

import argparse
import json
import logging
import sys

from vis_core.data.synthvis import SYNTHVIS_VARIANTS, default_synthvis_root, generate_synthvis


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        choices=sorted(SYNTHVIS_VARIANTS),
        default="hard",
        help="which set: hard (default, the benchmark) or quick (learnt in minutes)",
    )
    parser.add_argument(
        "--quick", action="store_const", const="quick", dest="variant", help="--variant quick"
    )
    parser.add_argument(
        "--root",
        default=None,
        help="output folder (default: $DETECTRON2_DATASETS/synthvis or .../synthvis_quick)",
    )
    parser.add_argument("--num-train", type=int, help="training videos (default: the variant's)")
    parser.add_argument("--num-val", type=int, help="validation videos")
    parser.add_argument("--height", type=int, help="frame height (pixels)")
    parser.add_argument("--width", type=int, help="frame width (pixels)")
    parser.add_argument("--min-frames", type=int, help="shortest video (frames)")
    parser.add_argument("--max-frames", type=int, help="longest video (frames)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same set)")
    parser.add_argument("--force", action="store_true", help="rewrite an existing complete set")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = default_synthvis_root(args.variant)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = generate_synthvis(
        args.root,
        variant=args.variant,
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
