"""Loading trained weights for inference, refusing files made for another architecture.

detectron2's checkpointer only warns about missing or mis-shaped parameters, which is right when a
training run starts from an ImageNet or COCO model, but turns a wrong file at test time into a model
with random heads that quietly scores zero. ``load_inference_weights`` raises instead.
"""

import logging
import pickle
import re
import zipfile
from typing import MutableMapping

from detectron2.checkpoint import DetectionCheckpointer

__all__ = [
    "VideoCheckpointer",
    "convert_mmdet_backbone_neck",
    "is_mmdet_detector_state_dict",
    "load_inference_weights",
    "rename_mmdet_backbone_neck",
    "rename_mmdet_resnet",
]

logger = logging.getLogger(__name__)


class VideoCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose unreadable files (truncated by an interrupted download or save,
    or not a checkpoint at all) raise an error that names the file, instead of torch's or pickle's
    message about a zip archive or an unexpected end of data.

    mmcv/mmdet checkpoints (the weights under ``state_dict``, next to ``meta``) are read as if
    saved by detectron2 (under ``model``); renaming their parameters is the model's business
    (e.g. :func:`rename_mmdet_backbone_neck` in its ``_load_from_state_dict``).
    """

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except (
            RuntimeError,
            OSError,
            EOFError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
        ) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise RuntimeError(
                f"The checkpoint {filename!r} cannot be read ({type(error).__name__}: {error}); it "
                "is probably truncated (an interrupted download or save). Download or copy it "
                "again, or, when resuming, delete it and point OUTPUT_DIR/last_checkpoint at the "
                "previous checkpoint."
            ) from error
        model = loaded.get("model")
        if isinstance(model, dict) and set(model) >= {"state_dict"} and set(model) <= _MMCV_KEYS:
            loaded = dict(loaded, model=model["state_dict"])  # detectron2 wrapped the mmcv dict
        return loaded


# Top-level keys of an mmcv checkpoint (mmcv.runner.save_checkpoint).
_MMCV_KEYS = {"state_dict", "meta", "optimizer"}


class _RecordingCheckpointer(VideoCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys of the last load."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_inference_weights(model, path: str, save_dir: str = "", resume: bool = False) -> None:
    """Load ``path`` (or, with ``resume``, the last checkpoint in ``save_dir``) into ``model``.

    Raises ValueError when no weights are given, or when any parameter outside the backbone is
    missing from the file or has another shape there (weights of another method, another number of
    classes, another head size). Missing backbone parameters only warn, as detectron2 does.
    """
    if not path and not resume:
        raise ValueError(
            f"No weights to evaluate {type(model).__name__}: set MODEL.WEIGHTS to a trained checkpoint"
        )
    checkpointer = _RecordingCheckpointer(model, save_dir=save_dir)
    checkpointer.resume_or_load(path, resume=resume)
    bad = checkpointer.incompatible
    if bad is None:
        return
    missing = [k for k in bad.missing_keys if not k.startswith("backbone.")]
    shapes = [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in bad.incorrect_shapes]
    if missing or shapes:
        raise ValueError(
            f"The weights {path!r} do not fit this {type(model).__name__} ({len(missing)} parameters "
            f"outside the backbone missing, e.g. {missing[:3]}; {len(shapes)} with another shape, "
            f"e.g. {shapes[:3]}). Are they from another method, or trained with another number of "
            "classes or head size than this config?"
        )


_MMDET_NECK = re.compile(r"neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$")


def is_mmdet_detector_state_dict(state_dict, prefix: str = "") -> bool:
    """Whether the keys under ``prefix`` are an mmdet detector's (``backbone.*`` and ``neck.*``,
    as the official TeViT and QueryInst checkpoints) rather than ours (``backbone.bottom_up.*``)."""
    neck, ours = prefix + "neck.", prefix + "backbone.bottom_up."
    return any(k.startswith(neck) for k in state_dict) and not any(
        k.startswith(ours) for k in state_dict
    )


def rename_mmdet_backbone_neck(
    state_dict: MutableMapping,
    prefix: str = "",
    bottom_up: str = "backbone.bottom_up.",
    fpn: str = "backbone.",
    first_level: int = 2,
) -> int:
    """Rename an mmdet detector's backbone and FPN parameters to a detectron2 FPN backbone's, in
    place; other keys (the heads) are left alone. Returns how many were renamed.

    ``backbone.X`` -> ``{bottom_up}X`` (the backbone inside detectron2's ``FPN``, same module
    names, e.g. vis_core's PVTv2); ``neck.lateral_convs.{i}.conv.*`` -> ``{fpn}fpn_lateral{i +
    first_level}.*`` and ``neck.fpn_convs.{i}.conv.*`` -> ``{fpn}fpn_output{i + first_level}.*``
    (mmdet counts FPN inputs from 0, detectron2 names them by log2 of their stride: 2 for stride 4).
    All names are taken under ``prefix``.

    Raises:
        ValueError: the keys are already ours (``{bottom_up}``), or a neck key that detectron2's
            FPN has no place for (normalised convs, extra levels beyond the inputs are not ours).
    """
    if any(k.startswith(prefix + bottom_up) for k in state_dict):
        raise ValueError(
            f"rename_mmdet_backbone_neck: the weights already have {prefix + bottom_up!r} keys; "
            "they are not an mmdet checkpoint"
        )
    renamed = {}
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.startswith("backbone."):
            renamed[prefix + bottom_up + name[len("backbone.") :]] = state_dict.pop(key)
        elif name.startswith("neck."):
            match = _MMDET_NECK.match(name)
            if match is None:
                raise ValueError(
                    f"mmdet weights: no counterpart for {name!r} in detectron2's FPN (only "
                    "neck.lateral_convs.i.conv.* and neck.fpn_convs.i.conv.* without norm)"
                )
            kind, index, param = match.groups()
            module = "fpn_lateral" if kind == "lateral_convs" else "fpn_output"
            renamed[f"{prefix}{fpn}{module}{int(index) + first_level}.{param}"] = state_dict.pop(
                key
            )
    state_dict.update(renamed)
    return len(renamed)


# mmdet/torchvision ResNet module names -> detectron2's (inside the ResNet).
_RESNET_STEM = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm"}
_RESNET_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(.+)$")


def rename_mmdet_resnet(state_dict: MutableMapping, prefix: str = "backbone.bottom_up.") -> int:
    """Rename mmdet (torchvision-style) ResNet parameters under ``prefix`` to detectron2's ResNet
    names, in place; returns how many were renamed.

    ``conv1`` / ``bn1`` -> ``stem.conv1`` / ``stem.conv1.norm``; ``layer{N}.{M}.conv{K}`` ->
    ``res{N+1}.{M}.conv{K}``, ``bn{K}`` -> ``conv{K}.norm``, ``downsample.0`` / ``downsample.1`` ->
    ``shortcut`` / ``shortcut.norm``. The layouts agree with ``MODEL.RESNETS.STRIDE_IN_1X1 False``
    (mmdet ``style='pytorch'``), RGB input and mmdet's mean/std.

    Raises:
        ValueError: a key under ``prefix`` that is no ResNet parameter.
    """
    renamed = 0
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix) :]
        module, _, rest = name.partition(".")
        if module in _RESNET_STEM:
            new = f"{_RESNET_STEM[module]}.{rest}"
        else:
            match = _RESNET_BLOCK.match(name)
            if match is None:
                raise ValueError(
                    f"mmdet ResNet weights: no counterpart for {key!r} in detectron2's ResNet"
                )
            stage, block, part, rest = match.groups()
            if part.startswith("bn"):
                part = f"conv{part[2:]}.norm"
            elif part.startswith("downsample"):
                part = "shortcut" if part.endswith("0") else "shortcut.norm"
            new = f"res{int(stage) + 1}.{block}.{part}.{rest}"
        state_dict[prefix + new] = state_dict.pop(key)
        renamed += 1
    return renamed


def convert_mmdet_backbone_neck(
    state_dict: MutableMapping, prefix: str = "", resnet: bool = True
) -> int:
    """An mmdet detector's backbone and FPN neck under detectron2's FPN names, in place (heads
    untouched): :func:`rename_mmdet_backbone_neck`, then, with ``resnet``,
    :func:`rename_mmdet_resnet` on ``backbone.bottom_up.`` (backbones that keep mmdet's module
    names, such as vis_core's PVTv2, need no more). Returns how many keys were renamed.
    """
    renamed = rename_mmdet_backbone_neck(state_dict, prefix)
    if resnet:
        rename_mmdet_resnet(state_dict, prefix + "backbone.bottom_up.")
    return renamed
