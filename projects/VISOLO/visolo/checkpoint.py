"""Loading VISOLO weights for evaluation, refusing files made for another architecture."""

import logging

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["load_visolo_weights"]

logger = logging.getLogger(__name__)


class _RecordingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys of the last load."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_visolo_weights(model, path: str, save_dir: str = "", resume: bool = False) -> None:
    """Load ``path`` (or the last checkpoint of ``save_dir`` with ``resume``) into a VISOLO model for
    inference; raise if any head parameter is missing or has the wrong shape (weights of another
    method, another number of classes or another grid)."""
    if not path and not resume:
        raise ValueError("--eval-only needs MODEL.WEIGHTS: the checkpoint of a trained VISOLO")
    checkpointer = _RecordingCheckpointer(model, save_dir=save_dir)
    checkpointer.resume_or_load(path, resume=resume)
    bad = checkpointer.incompatible
    if bad is None:
        return
    missing = [k for k in bad.missing_keys if not k.startswith("backbone.")]
    shapes = [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in bad.incorrect_shapes]
    if missing or shapes:
        raise ValueError(
            f"The weights {path!r} do not fit this VISOLO model ({len(missing)} head parameters "
            f"missing, e.g. {missing[:3]}; {len(shapes)} with another shape, e.g. {shapes[:3]}). "
            "Are they from another method, or trained with another MODEL.VISOLO.NUM_CLASSES, "
            "GRID_NUM or HIDDEN_DIM than this config?"
        )
