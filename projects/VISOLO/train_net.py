#!/usr/bin/env python
"""Train or evaluate VISOLO: ``python projects/VISOLO/train_net.py --config-file CONFIG [opts]``.

``--eval-only MODEL.WEIGHTS path.pth`` evaluates; ``--resume`` continues from the last checkpoint of
OUTPUT_DIR; ``--num-gpus``/``--num-machines`` scale out through detectron2's ``launch``.
"""

from visolo import add_visolo_config

from vis_core.engine import build_video_cfg, launch_train_net, train_or_evaluate


def setup_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` with ``opts`` applied and its DATASETS.YTVIS_JSON sets
    registered (the demo and the benchmark build their model from it through vis_core.engine.project).
    """
    return build_video_cfg(config_file, opts, add_visolo_config)


def main(args):
    return train_or_evaluate(setup_cfg(args.config_file, args.opts), args)


if __name__ == "__main__":
    launch_train_net(main)
