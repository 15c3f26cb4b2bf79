#!/usr/bin/env python
"""Train or evaluate Mask2Former-VIS: detectron2's launcher with vis_core's VideoTrainer.

    python projects/Mask2Former_VIS/train_net.py \
        --config-file projects/Mask2Former_VIS/configs/synthvis/Mask2Former_VIS_R18.yaml
    python projects/Mask2Former_VIS/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mask2former_vis import add_mask2former_vis_config  # noqa: E402

from vis_core.engine import build_video_cfg, launch_train_net, train_or_evaluate  # noqa: E402


def setup_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` with ``opts`` applied, without side effects (the demo
    and the benchmark build their model from it through vis_core.engine.project)."""
    return build_video_cfg(config_file, opts, add_mask2former_vis_config)


def main(args):
    return train_or_evaluate(setup_cfg(args.config_file, args.opts), args)


if __name__ == "__main__":
    launch_train_net(main)
