"""What every project's train_net.py does, once: build the config, then train or evaluate under
detectron2's ``launch`` (--num-gpus, --num-machines, --resume, --eval-only, opts)."""

import difflib
import re

import torch
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from vis_core.config import add_vis_config
from vis_core.data import register_ytvis_from_config

from .checkpoint import load_inference_weights
from .trainer import VideoTrainer

__all__ = [
    "UnknownConfigKeyError",
    "build_video_cfg",
    "close_process_group",
    "launch_train_net",
    "setup_loggers",
    "train_or_evaluate",
]


def build_video_cfg(config_file, opts, add_method_config):
    """The frozen config of ``config_file`` with ``opts`` applied: detectron2's defaults, vis_core's
    shared keys, then the method's own keys (``add_method_config(cfg)``). Its one side effect: the
    data sets of ``DATASETS.YTVIS_JSON`` are registered (again: a no-op), so that everything built
    from the config (trainer, evaluator, demo, benchmark) finds them in the catalog."""
    cfg = get_cfg()
    add_vis_config(cfg)
    add_method_config(cfg)
    with _suggest_known_key(cfg, config_file):
        cfg.merge_from_file(config_file)
    with _suggest_known_key(cfg, "the command-line opts"):
        cfg.merge_from_list(list(opts))
    cfg.freeze()
    register_ytvis_from_config(cfg.DATASETS.YTVIS_JSON)
    return cfg


class UnknownConfigKeyError(KeyError):
    """A config file or opts name a key that no config function added; says the nearest known."""

    def __str__(self):
        return str(self.args[0])


def _config_keys(node, prefix=""):
    for name, value in node.items():
        key = f"{prefix}{name}"
        yield key
        if isinstance(value, dict):
            yield from _config_keys(value, key + ".")


class _suggest_known_key:
    """Turns yacs's "Non-existent key" errors (KeyError from a file, AssertionError from opts) into
    :class:`UnknownConfigKeyError` naming the source and the nearest known keys (difflib)."""

    def __init__(self, cfg, source):
        self.cfg, self.source = cfg, source

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind not in (KeyError, AssertionError):
            return False
        found = re.search(r"Non-existent (?:config )?key: (\S+)", str(error))
        if found is None:
            return False
        key = found.group(1).strip("'\"")
        close = difflib.get_close_matches(key, list(_config_keys(self.cfg)), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "no known key is close."
        raise UnknownConfigKeyError(
            f"{self.source}: unknown config key {key!r}; {hint} Keys come from detectron2's "
            "get_cfg, vis_core.config.add_vis_config and the method's add_<method>_config."
        ) from error


def setup_loggers(cfg):
    """Log vis_core and the method's package (the meta-architecture's) to the console and to
    OUTPUT_DIR/log.txt, as ``default_setup`` does for detectron2: the evaluator's metric tables,
    checkpoint conversions and data warnings are logged under those names."""
    method = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).__module__.split(".")[0]
    for name in dict.fromkeys(["vis_core", method]):
        if name != "detectron2":  # default_setup's own
            setup_logger(cfg.OUTPUT_DIR, comm.get_rank(), name=name, abbrev_name=name)


def train_or_evaluate(cfg, args):
    """``--eval-only``: load MODEL.WEIGHTS (or the last checkpoint with ``--resume``), refusing weights
    that do not fit the model, and evaluate on DATASETS.TEST; otherwise train (resuming with
    ``--resume``) and evaluate at the end."""
    default_setup(cfg, args)
    setup_loggers(cfg)
    if args.eval_only:
        model = VideoTrainer.build_model(cfg)
        load_inference_weights(model, cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, resume=args.resume)
        return VideoTrainer.test(cfg, model)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def close_process_group():
    """Where several processes run: wait for all of them, then close the process group, as PyTorch
    asks of every process (gloo's threads left to interpreter shutdown can abort it, SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        comm.synchronize()
        torch.distributed.destroy_process_group()


def _run_then_close(main, args):
    """``main(args)``, then :func:`close_process_group`."""
    result = main(args)
    close_process_group()
    return result


def launch_train_net(main, argv=None):
    """Parse detectron2's standard train_net arguments and run ``main(args)`` on every process."""
    args = default_argument_parser().parse_args(argv)
    launch(
        _run_then_close,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(main, args),
    )
