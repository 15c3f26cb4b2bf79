#!/usr/bin/env python
"""Train or evaluate GMP-VIS: detectron2's launcher with vis_core's VideoTrainer.

    python projects/GMP_VIS/train_net.py \
        --config-file projects/GMP_VIS/configs/synthvis_quick/GMP_VIS_R18.yaml
    python projects/GMP_VIS/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
"""

from gmp_vis import add_gmp_vis_config

from vis_core.engine import build_video_cfg, launch_train_net, train_or_evaluate


def setup_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` with ``opts`` applied and its DATASETS.YTVIS_JSON sets
    registered (the demo and the benchmark build their model from it through vis_core.engine.project).
    """
    return build_video_cfg(config_file, opts, add_gmp_vis_config)


def main(args):
    return train_or_evaluate(setup_cfg(args.config_file, args.opts), args)


if __name__ == "__main__":
    launch_train_net(main)
