#!/usr/bin/env python
"""Train or evaluate VISOLO: ``python projects/VISOLO/train_net.py --config-file CONFIG [opts]``.

``--eval-only MODEL.WEIGHTS path.pth`` evaluates; ``--resume`` continues from the last checkpoint of
OUTPUT_DIR; ``--num-gpus``/``--num-machines`` scale out through detectron2's ``launch``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from visolo import add_visolo_config  # noqa: E402

from vis_core.engine import build_video_cfg, launch_train_net, train_or_evaluate  # noqa: E402


def setup_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` with ``opts`` applied, without side effects (the demo
    and the benchmark build their model from it through vis_core.engine.project)."""
    return build_video_cfg(config_file, opts, add_visolo_config)


def main(args):
    return train_or_evaluate(setup_cfg(args.config_file, args.opts), args)


if __name__ == "__main__":
    launch_train_net(main)
