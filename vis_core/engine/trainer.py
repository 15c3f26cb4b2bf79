"""VideoTrainer: detectron2's DefaultTrainer with video data, the YTVIS evaluator and the shared optimizer."""

import contextlib
import logging
import os
import weakref

import detectron2.engine.defaults
import torch
from detectron2.engine import DefaultTrainer
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..config import get_num_classes
from ..data import (
    YTVISDatasetMapper,
    build_video_test_loader,
    build_video_train_loader,
    check_num_classes,
)
from .checkpoint import VideoCheckpointer

__all__ = ["VideoTrainer", "build_video_optimizer", "create_video_ddp_model"]

logger = logging.getLogger(__name__)


_NORM_TYPES = (
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.GroupNorm,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)
_EMBED_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def video_param_groups(cfg, model):
    """Parameter groups: learning rate x ``SOLVER.BACKBONE_MULTIPLIER`` under
    ``SOLVER.BACKBONE_MULTIPLIER_MODULE`` (default ``backbone``); weight decay
    ``WEIGHT_DECAY_NORM`` for norm layers, ``WEIGHT_DECAY_EMBED`` for embeddings (nn.Embedding such as
    query and level embeddings, position tables), ``WEIGHT_DECAY_BIAS`` for biases, else ``WEIGHT_DECAY``.
    """
    scope = cfg.SOLVER.get("BACKBONE_MULTIPLIER_MODULE", "backbone")
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            if isinstance(module, _NORM_TYPES):
                decay = cfg.SOLVER.WEIGHT_DECAY_NORM
            elif isinstance(module, torch.nn.Embedding) or param_name in _EMBED_NAMES:
                decay = cfg.SOLVER.WEIGHT_DECAY_EMBED
            elif param_name == "bias" and cfg.SOLVER.WEIGHT_DECAY_BIAS is not None:
                decay = cfg.SOLVER.WEIGHT_DECAY_BIAS
            else:
                decay = cfg.SOLVER.WEIGHT_DECAY
            lr = cfg.SOLVER.BASE_LR
            if module_name == scope or module_name.startswith(scope + "."):
                lr *= cfg.SOLVER.BACKBONE_MULTIPLIER
            groups.append({"params": [param], "lr": lr, "weight_decay": decay})
    return reduce_param_groups(groups)


def build_video_optimizer(cfg, model):
    """SGD or AdamW (``SOLVER.OPTIMIZER``) with the backbone's learning rate scaled by
    ``SOLVER.BACKBONE_MULTIPLIER``, norm/embedding weight decay from the config, and detectron2's
    gradient clipping (``SOLVER.CLIP_GRADIENTS``; CLIP_TYPE "full_model" clips the norm of all
    gradients together, as the query-based methods do).
    """
    params = video_param_groups(cfg, model)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        optimizer_cls = torch.optim.SGD
        kwargs = {
            "lr": cfg.SOLVER.BASE_LR,
            "momentum": cfg.SOLVER.MOMENTUM,
            "nesterov": cfg.SOLVER.NESTEROV,
        }
    elif name == "ADAMW":
        optimizer_cls = torch.optim.AdamW
        kwargs = {"lr": cfg.SOLVER.BASE_LR}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER = {cfg.SOLVER.OPTIMIZER!r}; expected 'SGD' or 'ADAMW'")

    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        max_norm = clip.CLIP_VALUE

        class FullModelGradientClipping(optimizer_cls):
            def step(self, closure=None):
                all_params = [p for g in self.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(all_params, max_norm)
                return super().step(closure=closure)

        return FullModelGradientClipping(params, **kwargs)
    return maybe_add_gradient_clipping(cfg, optimizer_cls)(params, **kwargs)


def create_video_ddp_model(model, *, find_unused_parameters=False, **kwargs):
    """``model`` wrapped in DistributedDataParallel where there are several processes, on the device
    its parameters are on: ``device_ids`` only for a GPU model (detectron2's ``create_ddp_model``
    always passes them, which DDP refuses for a CPU model, so ``--num-gpus 2`` fails on the CPU);
    a CPU model is reduced over gloo, which ``launch`` picks where there is no GPU."""
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        kwargs.setdefault("device_ids", [index])
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **kwargs)


@contextlib.contextmanager
def _video_ddp(cfg):
    """DefaultTrainer.__init__ wraps its model with detectron2.engine.defaults.create_ddp_model;
    within this block that name is :func:`create_video_ddp_model` with the config's
    ``MODEL.DDP_FIND_UNUSED_PARAMETERS``."""
    original = detectron2.engine.defaults.create_ddp_model

    def create(model, **kwargs):
        kwargs.setdefault("find_unused_parameters", cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS)
        return create_video_ddp_model(model, **kwargs)

    detectron2.engine.defaults.create_ddp_model = create
    try:
        yield
    finally:
        detectron2.engine.defaults.create_ddp_model = original


class VideoTrainer(DefaultTrainer):
    """DefaultTrainer for video models: clip loaders with the video mapper, YTVISEvaluator, and
    :func:`build_video_optimizer`. Everything else (checkpointing, ``--resume``, hooks, evaluation
    period, ``launch``) is detectron2's; DDP works on the CPU too (:func:`create_video_ddp_model`).
    With ``SOLVER.CHECK_FINITE_LOSSES`` a loss term that becomes NaN or infinite stops training with
    an error naming the term and the iteration.
    The method's class count (:func:`vis_core.config.register_num_classes_key`) is compared with the
    ``thing_classes`` of every training set before the first iteration, and of every test set
    before inference.
    """

    def __init__(self, cfg):
        with _video_ddp(cfg):  # DDP on the CPU (gloo) as on GPUs, see create_video_ddp_model
            super().__init__(cfg)  # builds the train loader, which fills the sets' metadata
        num_classes = get_num_classes(cfg)
        if num_classes is not None:
            for name in cfg.DATASETS.TRAIN:
                check_num_classes(*num_classes, name, "training")
        if cfg.SOLVER.CHECK_FINITE_LOSSES:
            model = self.model.module if hasattr(self.model, "module") else self.model
            model.register_forward_hook(self._check_finite_losses)

    def _check_finite_losses(self, module, inputs, output):
        if not module.training or not isinstance(output, dict):
            return
        bad = {
            k: float(v.detach())
            for k, v in output.items()
            if torch.is_tensor(v) and v.numel() == 1 and not torch.isfinite(v).item()
        }
        if bad:
            raise FloatingPointError(
                f"Loss term(s) {sorted(bad)} became non-finite ({bad}) at iteration {self.iter}; "
                "lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS, or check the inputs of that loss."
            )

    def build_hooks(self):
        # Called by DefaultTrainer.__init__ right after it made its DetectionCheckpointer: use one
        # whose load errors name the file (resume_or_load and the checkpoint hook share it).
        old = self.checkpointer
        self.checkpointer = VideoCheckpointer(
            old.model, old.save_dir, save_to_disk=old.save_to_disk, trainer=weakref.proxy(self)
        )
        return super().build_hooks()

    def run_step(self):
        try:
            super().run_step()
        except RuntimeError as error:
            if "find_unused_parameters" not in str(error):
                raise
            raise RuntimeError(
                f"DDP at iteration {self.iter}: some parameters of "
                f"{self.cfg.MODEL.META_ARCHITECTURE} got no gradient (a module this config leaves "
                "unused); set MODEL.DDP_FIND_UNUSED_PARAMETERS True."
            ) from error

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model, in channels-last memory order with ``MODEL.CHANNELS_LAST``."""
        model = super().build_model(cfg)
        if cfg.MODEL.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return build_video_train_loader(cfg, YTVISDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name, YTVISDatasetMapper(cfg, is_train=False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        from ..evaluation import YTVISEvaluator

        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        key, value = get_num_classes(cfg) or ("num_classes", None)
        return YTVISEvaluator(
            dataset_name, output_dir=output_folder, num_classes=value, num_classes_key=key
        )

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_video_optimizer(cfg, model)
