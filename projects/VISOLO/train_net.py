#!/usr/bin/env python
"""Train or evaluate VISOLO: ``python projects/VISOLO/train_net.py --config-file CONFIG [opts]``.

``--eval-only MODEL.WEIGHTS path.pth`` evaluates; ``--resume`` continues from the last checkpoint of
OUTPUT_DIR; ``--num-gpus``/``--num-machines`` scale out through detectron2's ``launch``.
"""

import os
import sys

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from visolo import add_visolo_config  # noqa: E402

from vis_core.config import add_vis_config  # noqa: E402
from vis_core.engine import VideoTrainer, load_inference_weights  # noqa: E402


def setup_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` with ``opts`` applied, without side effects (the demo
    and the benchmark build their model from it through vis_core.engine.project)."""
    cfg = get_cfg()
    add_vis_config(cfg)
    add_visolo_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = VideoTrainer.build_model(cfg)
        load_inference_weights(model, cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, resume=args.resume)
        return VideoTrainer.test(cfg, model)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
